"""Proximal policy optimisation on batched jittable envs: one jitted iteration, vmappable over seeds.

Modules: `config` (PPOConfig), `networks` (Gaussian policy, value, action mapping), `losses`
(truncation-correct GAE, clipped surrogate, value loss, Gaussian NLL), `learner` (TrainState,
init, make_iteration, make_train, bc_init, deterministic_action, make_evaluator).
"""

from robojax.agents.ppo.config import PPOConfig

__all__ = ["PPOConfig"]
