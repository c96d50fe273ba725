"""Diffusion Policy (Chi et al. 2023) with Real-Time-Iteration warm-start inference (RTI-DP, Duan et al. 2025).

Modules: `config` (DiffusionPolicyConfig, InferenceConfig, TrainConfig), `networks` (denoiser
backbones), `losses`, `learner` (TrainState, init, update, make_policy: DDPM / DDIM / RTI
receding-horizon policy with a carry), `rti` (pure warm-start functions on action chunks), `train`
(the loop: `train.train(TrainConfig(...))`, saved policies).
"""

from robojax.agents.diffusion_policy.config import DiffusionPolicyConfig, InferenceConfig, TrainConfig

__all__ = ["DiffusionPolicyConfig", "InferenceConfig", "TrainConfig"]
