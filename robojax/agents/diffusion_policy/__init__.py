"""Diffusion Policy (Chi et al. 2023) with Real-Time-Iteration warm-start inference (RTI-DP, Duan et al. 2025).

Modules: `config` (DiffusionPolicyConfig, InferenceConfig, TrainConfig), `networks` (denoiser
backbones), `losses`, `learner` (TrainState, init, update, normalisers), `receding_horizon`
(make_policy: the DDPM / DDIM / RTI receding-horizon `robojax.policy.Policy` with a carry, used by
training's evaluator, saved-policy evaluation and export), `rti` (pure warm-start functions on
action chunks), `train` (the loop on `robojax.runs.Run`: `train.train(TrainConfig(...))`, saved
policies and their evaluation through `robojax.evaluation`), `export` (policy artifacts).
"""

from robojax.agents.diffusion_policy.config import DiffusionPolicyConfig, InferenceConfig, TrainConfig

__all__ = ["DiffusionPolicyConfig", "InferenceConfig", "TrainConfig"]
