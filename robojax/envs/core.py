"""The env interface every robojax learner, wrapper and driver speaks.

An env is a pair of pure functions over an `EnvState` pytree:

    state = env.reset(key)            # fresh random initial state, every time
    state = env.step(state, action)   # one control step

`EnvState` separates what is *carried* from step to step (physics, per-episode variables,
domain-randomised dynamics, the RNG key) from what a step *outputs* (obs, reward, the two
done flags, info, metrics). The autoreset wrapper relies on that split: after a done step it
swaps in a freshly reset carry but keeps the step's outputs, so the final observation and the
final step's info survive for bootstrapping and logging.

`terminated` means the MDP ended (no bootstrap); `truncated` means the episode was cut by a time
limit (bootstrap from the final observation). They are never merged.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


@dataclasses.dataclass(frozen=True)
class ArraySpec:
    """Shape, dtype and elementwise bounds of an observation or action array.

    `low`/`high` are numpy arrays of `shape` (use +-inf for unbounded dims).
    """

    shape: tuple[int, ...]
    dtype: Any = np.float32
    low: np.ndarray | float = -np.inf
    high: np.ndarray | float = np.inf
    name: str = ""

    def __post_init__(self):
        shape = tuple(int(s) for s in self.shape)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "dtype", np.dtype(self.dtype))
        low = np.broadcast_to(np.asarray(self.low, dtype=self.dtype), shape).copy()
        high = np.broadcast_to(np.asarray(self.high, dtype=self.dtype), shape).copy()
        if np.any(low > high):
            raise ValueError(f"ArraySpec {self.name!r}: low > high somewhere: {low} vs {high}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def is_bounded(self) -> bool:
        return bool(np.all(np.isfinite(self.low)) and np.all(np.isfinite(self.high)))

    def zeros(self) -> jax.Array:
        return jnp.zeros(self.shape, self.dtype)

    def sample(self, key: jax.Array) -> jax.Array:
        """Uniform sample inside the bounds (needs finite bounds)."""
        if not self.is_bounded:
            raise ValueError(f"ArraySpec {self.name!r} is unbounded; cannot sample uniformly")
        return jax.random.uniform(key, self.shape, self.dtype, self.low, self.high)

    def validate(self, value: Any, what: str = "array") -> np.ndarray:
        """Check a host-side value against the spec; raise a clear error naming the problem."""
        arr = np.asarray(value)
        if arr.shape != self.shape:
            raise ValueError(
                f"{what} has shape {arr.shape}, expected {self.shape}"
                f" ({self.name or 'spec'}); reshape it or check the env you are driving"
            )
        if not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
            raise TypeError(f"{what} has non-numeric dtype {arr.dtype}")
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            raise ValueError(
                f"{what} contains NaN or inf: {arr}; the policy or controller produced"
                " non-finite values, which would corrupt the simulator state"
            )
        return arr.astype(self.dtype, copy=False)

    def to_dict(self) -> dict:
        """JSON-friendly description (for checkpoints and exported artifacts)."""
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype.name,
            "low": self.low.tolist(),
            "high": self.high.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ArraySpec:
        return cls(tuple(d["shape"]), d["dtype"], np.asarray(d["low"]), np.asarray(d["high"]), d.get("name", ""))


@struct.dataclass
class EnvState:
    """One env's state. Batched envs carry a leading batch axis on every leaf.

    Carried (replaced by a fresh reset on autoreset):
      physics:  the simulator state (an `mjx.Data`, or any pytree for custom simulators).
      episode:  per-episode variables: task targets, wrapper counters (step count, running return).
      dynamics: domain-randomised physical parameters, read by `step` (empty when not randomised).
      rng:      this env's PRNG key; resets inside jitted code draw from it.
    Outputs of the step that produced this state:
      obs, reward, terminated, truncated, info (e.g. `success`, `final_obs`), metrics (reward terms).
    """

    physics: Any
    obs: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    episode: dict = struct.field(default_factory=dict)
    dynamics: dict = struct.field(default_factory=dict)
    info: dict = struct.field(default_factory=dict)
    metrics: dict = struct.field(default_factory=dict)
    rng: jax.Array | None = None

    @property
    def done(self) -> jax.Array:
        return jnp.logical_or(self.terminated, self.truncated)


class Env(abc.ABC):
    """A pure, jittable environment. Subclasses implement `reset`, `step` and the specs.

    Contract: `reset(key)` draws a fresh random initial state from `key` every call; `step` is
    a pure function of `(state, action)` (randomness comes from `state.rng`). Every `info` key
    `step` returns must already be present after `reset` (pytree structure is static), and
    `info["success"]` (bool) is always present.
    """

    @property
    @abc.abstractmethod
    def observation_spec(self) -> ArraySpec: ...

    @property
    @abc.abstractmethod
    def action_spec(self) -> ArraySpec: ...

    @abc.abstractmethod
    def reset(self, key: jax.Array) -> EnvState: ...

    @abc.abstractmethod
    def step(self, state: EnvState, action: jax.Array) -> EnvState: ...

    def reset_with_parameters(self, key: jax.Array, params: dict) -> EnvState:
        """Reset with given physical parameters (they become `state.dynamics`) instead of drawn ones.

        Optional: tasks whose dynamics are explicit parameters (the quadrotor) implement it, and
        every wrapper passes it through the stack (a batched stack takes `params` with a leading
        batch axis), so one call gives a fully wrapped state on chosen robots.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not implement reset_with_parameters: its physical"
            " parameters are not explicit; use a task that has them (e.g. quadrotor_hover) or"
            " DomainRandomization to randomise model fields"
        )

    @property
    def dt(self) -> float:
        """Control period in seconds."""
        raise NotImplementedError

    @property
    def unwrapped(self) -> Env:
        return self

    @property
    def batch_size(self) -> int | None:
        """Leading batch size of states, or None for an unbatched env."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Forwarding:
    """What every wrapper, jitted (`Wrapper`) or host (`envs.host.HostWrapper`), forwards to `self.env`."""

    def __init__(self, env):
        self.env = env

    @property
    def observation_spec(self) -> ArraySpec:
        return self.env.observation_spec

    @property
    def action_spec(self) -> ArraySpec:
        return self.env.action_spec

    def reset(self, key):
        return self.env.reset(key)

    def step(self, state, action):
        return self.env.step(state, action)

    @property
    def dt(self) -> float:
        return self.env.dt

    def __getattr__(self, name):
        # Task-specific attributes (e.g. `episode_length`, `mj_model`) stay reachable through wrappers.
        if name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.env!r})"


class Wrapper(Forwarding, Env):
    """Base wrapper: forwards everything to the wrapped env."""

    def reset_with_parameters(self, key, params):
        # A wrapper that changes `reset` must change `reset_with_parameters` the same way; passing
        # the call straight through would silently skip its reset (missing counters, wrong obs).
        if type(self).reset is not Forwarding.reset:
            raise NotImplementedError(
                f"{type(self).__name__} overrides reset but not reset_with_parameters; implement"
                " it (apply the same change to self.env.reset_with_parameters(key, params))"
            )
        return self.env.reset_with_parameters(key, params)

    @property
    def unwrapped(self) -> Env:
        return self.env.unwrapped

    @property
    def batch_size(self):
        return self.env.batch_size


class HostEnv(abc.ABC):
    """A host-side env (numpy, not jittable): a gymnasium env, a real robot, a remote server.

    Same method names as `Env`, so actor loops drive either. States hold numpy arrays and are
    not meant to be reused: a host env's true state lives outside (in the robot or simulator),
    so `step` must be called on the latest state only.
    """

    @property
    @abc.abstractmethod
    def observation_spec(self) -> ArraySpec: ...

    @property
    @abc.abstractmethod
    def action_spec(self) -> ArraySpec: ...

    @abc.abstractmethod
    def reset(self, key: jax.Array | int | None = None) -> EnvState: ...

    @abc.abstractmethod
    def step(self, state: EnvState, action: np.ndarray) -> EnvState: ...

    @property
    def dt(self) -> float:
        raise NotImplementedError

    @property
    def batch_size(self) -> int | None:
        return None

    def close(self) -> None:
        pass


def tree_where(cond: jax.Array, on_true: Any, on_false: Any) -> Any:
    """Select between two pytrees of equal structure with a scalar (or batch-leading) bool.

    A leaf whose shape does not start with `cond.shape` is shared by the whole batch rather than
    held per element: MuJoCo Warp's `mjx.Data` (Playground's default backend) keeps its contact
    buffers and counters (`_impl.ncollision`, `contact__*`) once for all worlds. Such a leaf cannot
    be selected per element; it comes from `on_true` when `cond` holds everywhere, else from
    `on_false`, and always keeps its shape (so both branches of a `lax.cond` agree).
    """
    cond = jnp.asarray(cond)

    def select(a, b):
        if jnp.shape(a) != jnp.shape(b):
            raise ValueError(
                f"tree_where: leaf shapes differ ({jnp.shape(a)} vs {jnp.shape(b)}); both trees"
                " must come from the same env (same batch size)"
            )
        if jnp.shape(a)[: cond.ndim] != cond.shape:
            return jnp.where(jnp.all(cond), a, b)
        c = jnp.reshape(cond, cond.shape + (1,) * (jnp.ndim(a) - cond.ndim))
        return jnp.where(c, a, b)

    return jax.tree.map(select, on_true, on_false)
