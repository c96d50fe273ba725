"""On-device circular replay buffer: a pytree whose init, insert and sample are pure and jittable.

The buffer stores any pytree of arrays; off-policy learners store `Transition`s. A batch of
transitions from a vectorised env is written in one scatter, and host loops (gymnasium envs, real
robots) insert numpy batches through the same function. A demo buffer is just another instance;
`sample_symmetric` draws RLPD's half-demo, half-online batches.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


@struct.dataclass
class Transition:
    """One step of experience (s, a, r, s', terminated, truncated, intervention).

    `next_obs` is the true next observation, also on the last step of an episode (the autoreset
    wrapper's `info["final_obs"]`), so a truncated transition can bootstrap from it.
    `intervention` marks actions that came from a human or scripted overseer, not the policy.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    intervention: jax.Array

    @classmethod
    def example(cls, obs_shape: tuple[int, ...], action_shape: tuple[int, ...]) -> Transition:
        """A zero transition with the dtypes the buffer stores (for `init`)."""
        return cls(
            obs=jnp.zeros(obs_shape, jnp.float32),
            action=jnp.zeros(action_shape, jnp.float32),
            reward=jnp.zeros((), jnp.float32),
            next_obs=jnp.zeros(obs_shape, jnp.float32),
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            intervention=jnp.zeros((), bool),
        )

    @classmethod
    def from_env_step(cls, obs: jax.Array, action: jax.Array, next_state: Any, intervention=None) -> Transition:
        """The transition from `obs` under `action` to the `EnvState` that `env.step` returned."""
        return cls(
            obs=obs,
            action=action,
            reward=next_state.reward.astype(jnp.float32),
            next_obs=next_state.info["final_obs"],
            terminated=next_state.terminated,
            truncated=next_state.truncated,
            intervention=jnp.zeros_like(next_state.terminated) if intervention is None else intervention,
        )


@struct.dataclass
class ReplayBuffer:
    """Fixed-capacity ring buffer; every leaf of `data` has a leading axis of length capacity."""

    data: Any
    insert_index: jax.Array  # next slot to write
    size: jax.Array  # number of valid entries, <= capacity

    @property
    def capacity(self) -> int:
        return int(jax.tree.leaves(self.data)[0].shape[0])


def init(example: Any, capacity: int) -> ReplayBuffer:
    """An empty buffer holding `capacity` items shaped like the unbatched pytree `example`."""
    if int(capacity) < 1:
        raise ValueError(f"replay capacity must be >= 1, got {capacity}")
    data = jax.tree.map(lambda x: jnp.zeros((int(capacity),) + jnp.shape(x), jnp.asarray(x).dtype), example)
    return ReplayBuffer(data=data, insert_index=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32))


def insert(buffer: ReplayBuffer, batch: Any) -> ReplayBuffer:
    """Write a batch (leading axis B on every leaf) at the insert position, overwriting the oldest."""
    buf_leaves, buf_def = jax.tree.flatten(buffer.data)
    batch_leaves, batch_def = jax.tree.flatten(batch)
    if buf_def != batch_def:
        raise ValueError(f"batch structure {batch_def} does not match the buffer's {buf_def}")
    capacity = buffer.capacity
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in batch_leaves}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"every leaf of an inserted batch needs the same leading batch axis, got {sizes}")
    (n,) = sizes
    if n > capacity:
        raise ValueError(f"cannot insert a batch of {n} into a buffer of capacity {capacity}")
    for b, x in zip(buf_leaves, batch_leaves):
        if tuple(np.shape(x)[1:]) != tuple(b.shape[1:]):
            raise ValueError(f"inserted item shape {np.shape(x)[1:]} does not match the buffer's {b.shape[1:]}")
    idx = (buffer.insert_index + jnp.arange(n, dtype=jnp.int32)) % capacity
    data = jax.tree.unflatten(
        buf_def, [b.at[idx].set(jnp.asarray(x, b.dtype)) for b, x in zip(buf_leaves, batch_leaves)]
    )
    return buffer.replace(
        data=data,
        insert_index=(buffer.insert_index + n) % capacity,
        size=jnp.minimum(buffer.size + n, capacity),
    )


def sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int) -> Any:
    """`batch_size` items drawn uniformly with replacement from the valid entries.

    An empty buffer returns its zero-initialised slot 0; learners wait for `learning_starts`.
    """
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda x: x[idx], buffer.data)


def sample_symmetric(online: ReplayBuffer, demo: ReplayBuffer, key: jax.Array, batch_size: int) -> Any:
    """RLPD's symmetric sampling (Ball et al. 2023, sec. 3.1): half the batch from each buffer."""
    if batch_size % 2:
        raise ValueError(f"symmetric sampling needs an even batch_size, got {batch_size}")
    online_key, demo_key = jax.random.split(key)
    half = batch_size // 2
    return jax.tree.map(
        lambda a, b: jnp.concatenate([a, b]), sample(online, online_key, half), sample(demo, demo_key, half)
    )


def contents(buffer: ReplayBuffer) -> Any:
    """The valid entries as numpy arrays, oldest first (host-side; for saving or inspection)."""
    size, start = int(buffer.size), int(buffer.insert_index)
    capacity = buffer.capacity
    order = np.arange(size) if size < capacity else (start + np.arange(capacity)) % capacity
    return jax.tree.map(lambda x: np.asarray(x)[order], buffer.data)


_insert_jit = jax.jit(insert, donate_argnums=0)


def insert_numpy(buffer: ReplayBuffer, batch: Any, max_chunk: int = 1024) -> ReplayBuffer:
    """Insert a host (numpy) batch with a jitted, buffer-donating insert, in power-of-two chunks
    of at most `max_chunk`, so it compiles a few shapes only however the batch sizes vary."""
    n, start = len(jax.tree.leaves(batch)[0]), 0
    limit = max(int(max_chunk), 1).bit_length() - 1
    while start < n:
        size = 1 << min((n - start).bit_length() - 1, limit)
        chunk = slice(start, start + size)
        buffer = _insert_jit(buffer, jax.tree.map(lambda x: x[chunk], batch))  # noqa: B023 - used at once
        start += size
    return buffer


def stack(items: list) -> Any:
    """Stack a list of host pytrees (e.g. single `Transition`s) into one numpy batch."""
    return jax.tree.map(lambda *xs: np.stack(xs), *items)
