"""Training windows for action-chunking policies, and min/max action normalisation.

`make_windows` cuts every episode of an `EpisodeDataset` into one sample per step t:

    obs     = observations[t-To+1 .. t]     (To steps of history, oldest first)
    actions = actions[t .. t+Tp-1]          (the chunk to predict, starting with the action taken at t)

At the episode edges the indices are clamped into [0, T-1], i.e. padded by repeating the edge
element, as in Chi et al.'s `SequenceSampler`: history before the first step repeats
observations[0]; a chunk running past the end repeats the last action. So the first window of an
episode has obs = [o0, ..., o0, o0] and the last has actions = [a_{T-1}, ..., a_{T-1}].
(Chi et al.'s sampler aligns a horizon that includes the observed steps and drops windows with
more than Ta-1 padded actions; here the chunk starts at the current step and every step of
every episode yields a window, so the end-of-episode "hold still" behaviour is also learned.)

`MinMaxNormalizer` maps each continuous action dim's [min, max] (over the dataset) affinely
onto [-1, 1]. Discrete dims (`discrete_dims`, e.g. robojax's gripper, already -1 closed / +1
open) pass through unchanged, so a sampler's clipping to [-1, 1] keeps them intact and RTI-DP's
gripper scaling/clipping sees the raw values. A dim whose range is below `range_eps` (constant
in the data) is only shifted: its value maps to 0 and back, with no division by the range.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from robojax.data.episodes import EpisodeDataset

__all__ = ["MinMaxNormalizer", "make_windows"]


def _xp(x):
    return jnp if isinstance(x, jax.Array) else np


@struct.dataclass
class MinMaxNormalizer:
    """Per-dim affine map of [low, high] onto [-1, 1]; discrete and constant dims as documented above.

    A pytree (low/high are leaves; discrete_dims and range_eps are static), so it can live in a
    train state and be used inside jit. Works on numpy and jax arrays with any leading dims.
    """

    low: Any  # [A]
    high: Any  # [A]
    discrete_dims: tuple[int, ...] = struct.field(pytree_node=False, default=())
    range_eps: float = struct.field(pytree_node=False, default=1e-4)

    @classmethod
    def fit(cls, actions, discrete_dims: Sequence[int] = (), range_eps: float = 1e-4) -> "MinMaxNormalizer":
        actions = np.asarray(actions, np.float32)
        if actions.ndim < 1 or actions.size == 0:
            raise ValueError(f"MinMaxNormalizer.fit needs actions [N, A] with N > 0; got shape {actions.shape}")
        actions = actions.reshape(-1, actions.shape[-1])
        if not np.all(np.isfinite(actions)):
            raise ValueError("MinMaxNormalizer.fit: actions contain NaN/inf; clean the dataset first")
        dims = tuple(sorted(int(d) for d in discrete_dims))
        if any(not 0 <= d < actions.shape[-1] for d in dims):
            raise ValueError(f"discrete_dims {dims} out of range for {actions.shape[-1]} action dims")
        return cls(actions.min(0), actions.max(0), dims, float(range_eps))

    def _center_scale(self, xp):
        low, high = xp.asarray(self.low, xp.float32), xp.asarray(self.high, xp.float32)
        span = high - low
        scale = xp.where(span > self.range_eps, 2.0 / xp.maximum(span, self.range_eps), 1.0)
        center = (high + low) / 2.0
        if self.discrete_dims:
            mask = np.zeros(np.shape(self.low), bool)
            mask[list(self.discrete_dims)] = True
            scale = xp.where(mask, 1.0, scale)
            center = xp.where(mask, 0.0, center)
        return center, scale

    def normalize(self, x):
        """Continuous dims: [low, high] -> [-1, 1]. Discrete dims: unchanged."""
        xp = _xp(x)
        center, scale = self._center_scale(xp)
        return ((xp.asarray(x) - center) * scale).astype(xp.float32)

    def unnormalize(self, x):
        """Inverse of `normalize`."""
        xp = _xp(x)
        center, scale = self._center_scale(xp)
        return (xp.asarray(x) / scale + center).astype(xp.float32)

    def to_dict(self) -> dict:
        return {
            "type": "minmax",
            "low": np.asarray(self.low, np.float32).tolist(),
            "high": np.asarray(self.high, np.float32).tolist(),
            "discrete_dims": list(self.discrete_dims),
            "range_eps": self.range_eps,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MinMaxNormalizer":
        if d.get("type", "minmax") != "minmax":
            raise ValueError(f"not a MinMaxNormalizer dict (type {d.get('type')!r})")
        return cls(
            np.asarray(d["low"], np.float32),
            np.asarray(d["high"], np.float32),
            tuple(int(i) for i in d.get("discrete_dims", ())),
            float(d.get("range_eps", 1e-4)),
        )


def make_windows(dataset: EpisodeDataset, obs_horizon: int = 2, pred_horizon: int = 16) -> dict[str, np.ndarray]:
    """One (obs history, action chunk) sample per step of every episode; edge padding as documented above.

    Returns numpy arrays: obs [N, To, *obs_shape], actions [N, Tp, *act_shape], episode [N] (int32
    index into dataset.episodes), t [N] (int32 step within that episode). N = total steps.
    """
    if obs_horizon < 1 or pred_horizon < 1:
        raise ValueError(f"obs_horizon and pred_horizon must be >= 1; got {obs_horizon}, {pred_horizon}")
    if not dataset.episodes:
        raise ValueError(f"dataset {dataset.path} has no episodes; record some before training")
    obs_out, act_out, ep_out, t_out = [], [], [], []
    hist = np.arange(-obs_horizon + 1, 1)
    ahead = np.arange(pred_horizon)
    for i, episode in enumerate(dataset.episodes):
        n = len(episode)
        t = np.arange(n)
        obs_idx = np.clip(t[:, None] + hist[None], 0, n - 1)
        act_idx = np.clip(t[:, None] + ahead[None], 0, n - 1)
        obs_out.append(np.asarray(episode.observations, np.float32)[obs_idx])
        act_out.append(np.asarray(episode.actions, np.float32)[act_idx])
        ep_out.append(np.full(n, i, np.int32))
        t_out.append(t.astype(np.int32))
    return {
        "obs": np.concatenate(obs_out),
        "actions": np.concatenate(act_out),
        "episode": np.concatenate(ep_out),
        "t": np.concatenate(t_out),
    }
