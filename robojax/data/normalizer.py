"""Observation and action normalisers: every learner's, in one module.

- `RunningMeanStd`: running mean and variance of observations, updated online in a learner's
  train state (SAC), applied as (x - mean) / std, clipped.
- `ObsNormalizer`: (obs - offset) / scale per dim, fitted once on a dataset: min/max to [-1, 1],
  mean/std, or none (Diffusion Policy's observations).
- `MinMaxNormalizer`: each continuous action dim's [min, max] over the dataset affinely onto
  [-1, 1]; discrete dims (`discrete_dims`, e.g. robojax's gripper, already -1 closed / +1 open)
  pass through unchanged, so a sampler's clipping to [-1, 1] keeps them intact and RTI-DP's
  gripper scaling/clipping sees the raw values (Diffusion Policy's actions).

Both fitted min/max maps share `min_max_affine`: a dim whose range is (near) constant in the data
is only centred, mapped to 0 and back, with no division by ~0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


@struct.dataclass
class RunningMeanStd:
    """Mean, variance and sample count, merged batch by batch (Chan et al. 1979 parallel update)."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, shape: tuple[int, ...]) -> RunningMeanStd:
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


def running_stats_record(stats: RunningMeanStd, clip: float = 10.0, eps: float = 1e-6) -> dict | None:
    """How `normalize` applies `stats`, as JSON for a policy artifact's sidecar; None while they are traced."""
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(stats)):
        return None
    count = float(np.asarray(stats.count))
    return {
        "observation": {
            "mean": np.asarray(stats.mean).tolist(),
            "std": np.sqrt(np.asarray(stats.var, np.float64) + eps).tolist(),
            "count": count,
            "clip": clip,
            "formula": "clip((obs - mean) / std, -clip, clip); identity while count == 0",
            "applied": count > 0,
        }
    }


# ---- fitted on a dataset ---------------------------------------------------------------------------


def _xp(x):
    return jnp if isinstance(x, jax.Array) else np


def min_max_affine(low, high, min_half_range: float, xp=np):
    """(center, half range) mapping [low, high] onto [-1, 1] by (x - center) / half range.

    Dims whose half range is at most `min_half_range` keep a half range of 1 (only centred).
    """
    low, high = xp.asarray(low, xp.float32), xp.asarray(high, xp.float32)
    half = (high - low) / 2.0
    return (high + low) / 2.0, xp.where(half > min_half_range, half, 1.0)


def _finite_rows(values, what: str) -> np.ndarray:
    values = np.asarray(values, np.float32)
    if values.ndim < 1 or values.size == 0:
        raise ValueError(f"fitting a normaliser needs {what} [N, D] with N > 0; got shape {values.shape}")
    values = values.reshape(-1, values.shape[-1])
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what} contain NaN/inf; clean the dataset before fitting the normaliser")
    return values


@struct.dataclass
class ObsNormalizer:
    """(obs - offset) / scale per dim, fitted on the dataset (min/max to [-1, 1], or mean/std)."""

    offset: jax.Array
    scale: jax.Array

    @classmethod
    def fit(cls, observations, method: str = "min_max", eps: float = 1e-4) -> ObsNormalizer:
        """method: min_max, mean_std or none; dims with a scale <= eps are only centred."""
        obs = _finite_rows(observations, "observations")
        if method == "min_max":
            offset, scale = min_max_affine(obs.min(0), obs.max(0), eps)
        elif method == "mean_std":
            offset, scale = obs.mean(0), obs.std(0)
            scale = np.where(scale > eps, scale, 1.0)
        elif method == "none":
            offset, scale = np.zeros(obs.shape[-1]), np.ones(obs.shape[-1])
        else:
            raise ValueError(f"unknown observation normalisation {method!r}; use min_max, mean_std or none")
        return cls(jnp.asarray(offset, jnp.float32), jnp.asarray(scale, jnp.float32))

    def normalize(self, obs: jax.Array) -> jax.Array:
        return (obs - self.offset) / self.scale


@struct.dataclass
class MinMaxNormalizer:
    """Per-dim affine map of [low, high] onto [-1, 1]; discrete and constant dims as in the module docstring.

    A pytree (low/high are leaves; discrete_dims and range_eps are static), so it can live in a
    train state and be used inside jit. Works on numpy and jax arrays with any leading dims. A dim
    whose range is at most `range_eps` is only shifted.
    """

    low: Any  # [A]
    high: Any  # [A]
    discrete_dims: tuple[int, ...] = struct.field(pytree_node=False, default=())
    range_eps: float = struct.field(pytree_node=False, default=1e-4)

    @classmethod
    def fit(cls, actions, discrete_dims: Sequence[int] = (), range_eps: float = 1e-4) -> MinMaxNormalizer:
        actions = _finite_rows(actions, "actions")
        dims = tuple(sorted(int(d) for d in discrete_dims))
        if any(not 0 <= d < actions.shape[-1] for d in dims):
            raise ValueError(f"discrete_dims {dims} out of range for {actions.shape[-1]} action dims")
        return cls(actions.min(0), actions.max(0), dims, float(range_eps))

    def _center_scale(self, xp):
        center, half = min_max_affine(self.low, self.high, self.range_eps / 2.0, xp)
        if self.discrete_dims:
            mask = np.zeros(np.shape(self.low), bool)
            mask[list(self.discrete_dims)] = True
            half = xp.where(mask, 1.0, half)
            center = xp.where(mask, 0.0, center)
        return center, half

    def normalize(self, x):
        """Continuous dims: [low, high] -> [-1, 1]. Discrete dims: unchanged."""
        xp = _xp(x)
        center, half = self._center_scale(xp)
        return ((xp.asarray(x) - center) / half).astype(xp.float32)

    def unnormalize(self, x):
        """Inverse of `normalize`."""
        xp = _xp(x)
        center, half = self._center_scale(xp)
        return (xp.asarray(x) * half + center).astype(xp.float32)

    def to_dict(self) -> dict:
        return {
            "type": "minmax",
            "low": np.asarray(self.low, np.float32).tolist(),
            "high": np.asarray(self.high, np.float32).tolist(),
            "discrete_dims": list(self.discrete_dims),
            "range_eps": self.range_eps,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MinMaxNormalizer:
        if d.get("type", "minmax") != "minmax":
            raise ValueError(f"not a MinMaxNormalizer dict (type {d.get('type')!r})")
        return cls(
            np.asarray(d["low"], np.float32),
            np.asarray(d["high"], np.float32),
            tuple(int(i) for i in d.get("discrete_dims", ())),
            float(d.get("range_eps", 1e-4)),
        )


def binarize_discrete(actions, discrete_dims: Sequence[int]):
    """Executed gripper commands are sign-binarised to +-1 (RTI-DP: `where(a > 0, 1, -1)`)."""
    if not discrete_dims:
        return actions
    mask = np.zeros(actions.shape[-1], bool)
    mask[list(discrete_dims)] = True
    return jnp.where(mask, jnp.where(actions > 0, 1.0, -1.0).astype(actions.dtype), actions)


@struct.dataclass
class ChunkNormalizers:
    """The observation and action normalisers of an action-chunking policy (Diffusion Policy, EBT-Policy).

    Observations through `ObsNormalizer`, actions through `MinMaxNormalizer` to [-1, 1] (discrete
    dims left at +-1). A pytree, so it lives in a train state and may be a jit argument.
    """

    obs: ObsNormalizer
    action: MinMaxNormalizer

    @property
    def discrete_dims(self) -> tuple[int, ...]:
        return tuple(self.action.discrete_dims)

    @classmethod
    def fit(
        cls, observations, actions, obs_method: str = "min_max", discrete_dims: Sequence[int] = ()
    ) -> ChunkNormalizers:
        """Fit both on a dataset's raw observations [N, obs_dim] and actions [N, A]."""
        action = MinMaxNormalizer.fit(actions, discrete_dims=tuple(discrete_dims))
        action = action.replace(low=jnp.asarray(action.low), high=jnp.asarray(action.high))
        return cls(ObsNormalizer.fit(observations, obs_method), action)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for a saved policy (discrete dims go in its metadata)."""
        return {
            "obs_offset": np.asarray(self.obs.offset),
            "obs_scale": np.asarray(self.obs.scale),
            "action_low": np.asarray(self.action.low),
            "action_high": np.asarray(self.action.high),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any], discrete_dims: Sequence[int]) -> ChunkNormalizers:
        action = MinMaxNormalizer(
            jnp.asarray(arrays["action_low"], jnp.float32),
            jnp.asarray(arrays["action_high"], jnp.float32),
            tuple(int(d) for d in discrete_dims),
        )
        obs = ObsNormalizer(
            jnp.asarray(arrays["obs_offset"], jnp.float32), jnp.asarray(arrays["obs_scale"], jnp.float32)
        )
        return cls(obs, action)
