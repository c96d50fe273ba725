"""Soft actor-critic in the style of SERL / RLPD / REDQ: jitted, vectorised, resumable.

Modules: `config` (SACConfig, TrainConfig, HostTrainConfig), `networks`, `losses`, `learner` (TrainState, init, policy,
act, update), `train` (the on-device loop: `train.train(config)`), `host_loop` (actor and learner
threads for host-side envs such as gymnasium ids or a robot: `host_loop.train(HostTrainConfig(...))`),
`interventions` (scripted, keyboard and SpaceMouse sources whose actions replace the policy's).
"""

from robojax.agents.sac.config import SACConfig, TrainConfig

__all__ = ["SACConfig", "TrainConfig"]
