"""A tiny EBT-Policy config and data shared by the EBT tests (tiny nets keep compiles short)."""

import jax
import jax.numpy as jnp
import numpy as np

from robojax.agents.ebt_policy import learner
from robojax.agents.ebt_policy.config import EBTPolicyConfig

OBS_DIM, ACTION_DIM = 3, 2


def tiny_config(**overrides) -> EBTPolicyConfig:
    base = dict(
        width=16,
        obs_layers=1,
        action_layers=1,
        num_heads=2,
        pred_horizon=4,
        action_horizon=2,
        train_steps_min=2,
        train_steps_max=3,
        warmup_steps=10,
        total_grad_steps=200,
        batch_size=16,
        step_size=100.0,
    )
    return EBTPolicyConfig(**{**base, **overrides})


def tiny_state(config: EBTPolicyConfig, seed: int = 0) -> learner.TrainState:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(200, OBS_DIM)).astype(np.float32)
    actions = rng.uniform(-1, 1, size=(200, ACTION_DIM)).astype(np.float32)
    return learner.init(
        jax.random.key(seed), OBS_DIM, ACTION_DIM, config, learner.fit_normalizers(obs, actions, config)
    )


def tiny_batch(config: EBTPolicyConfig, batch: int = 8, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "obs": jnp.asarray(rng.normal(size=(batch, config.obs_horizon, OBS_DIM)), jnp.float32),
        "actions": jnp.asarray(rng.uniform(-1, 1, size=(batch, config.pred_horizon, ACTION_DIM)), jnp.float32),
    }
