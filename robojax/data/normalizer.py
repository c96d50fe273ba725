"""Running mean and variance of observations, carried in a learner's train state."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class RunningMeanStd:
    """Mean, variance and sample count, merged batch by batch (Chan et al. 1979 parallel update)."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, shape: tuple[int, ...]) -> "RunningMeanStd":
        """Statistics of zero samples: normalising is the identity until the first update."""
        return cls(jnp.zeros(shape, jnp.float32), jnp.ones(shape, jnp.float32), jnp.zeros((), jnp.float32))


def update(stats: RunningMeanStd, batch: jax.Array) -> RunningMeanStd:
    """Merge a batch (any leading axes, trailing axes = the statistics' shape)."""
    batch = jnp.asarray(batch, jnp.float32).reshape((-1,) + stats.mean.shape)
    n = jnp.asarray(batch.shape[0], jnp.float32)
    batch_mean = batch.mean(axis=0)
    batch_var = batch.var(axis=0)
    total = stats.count + n
    delta = batch_mean - stats.mean
    mean = stats.mean + delta * n / total
    m2 = stats.var * stats.count + batch_var * n + jnp.square(delta) * stats.count * n / total
    return RunningMeanStd(mean=mean, var=m2 / total, count=total)


def normalize(stats: RunningMeanStd, x: jax.Array, clip: float = 10.0, eps: float = 1e-6) -> jax.Array:
    """(x - mean) / std, clipped to [-clip, clip]; the identity while no sample has been seen."""
    normalized = jnp.clip((x - stats.mean) / jnp.sqrt(stats.var + eps), -clip, clip)
    return jnp.where(stats.count > 0, normalized, x)
