"""Soft actor-critic in the style of SERL / RLPD / REDQ: jitted, vectorised, resumable.

Modules: `config` (SACConfig, TrainConfig), `networks`, `losses`, `learner` (TrainState, init,
act, update), `train` (the on-device loop: `train.train(config)`).
"""

from robojax.agents.sac.config import SACConfig, TrainConfig

__all__ = ["SACConfig", "TrainConfig"]
