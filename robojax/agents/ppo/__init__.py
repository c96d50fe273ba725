"""Proximal policy optimisation on batched jittable envs: one jitted iteration, vmappable over seeds.

Modules: `config` (PPOConfig), `networks` (Gaussian policy, value, action mapping), `losses`
(truncation-correct GAE, clipped surrogate, value loss, Gaussian NLL), `learner` (TrainState,
init, make_iteration, make_train, bc_init, deterministic_action, policy, make_evaluator), `train`
(TrainConfig runs on runs.Run: seeds vmapped, checkpoints, exact resume, saved policies), `export`
(policy artifacts of one seed).
"""

from robojax.agents.ppo.config import PPOConfig, TrainConfig

__all__ = ["PPOConfig", "TrainConfig"]
