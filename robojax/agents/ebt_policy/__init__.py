"""EBT-Policy (Davies et al. 2025): an energy-based transformer over action chunks, few-step energy descent.

Modules: `config` (EBTPolicyConfig with the authors' / S1 / S2 presets, InferenceConfig),
`networks` (the energy model on `robojax.nets.transformer`), `descent` (the training unroll and
the fixed / adaptive / while-loop / best-of-N inference rules), `losses`, `learner` (TrainState,
init, update, plan).
"""

from robojax.agents.ebt_policy.config import EBTPolicyConfig, InferenceConfig

__all__ = ["EBTPolicyConfig", "InferenceConfig"]
