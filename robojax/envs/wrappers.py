"""Env wrappers: time limit, episode statistics, action repeat, domain randomisation,
vmap batching and autoreset. All are pure and jittable.

The usual stack, built by `robojax.envs.make(name, num_envs=N)`:

    AutoResetWrapper(VmapWrapper(EpisodeStatistics(TimeLimit(task)), N))

Per-env wrappers sit inside the vmap; autoreset sits outside it so that a batch where no env
finished skips the reset computation entirely (`lax.cond` on "any done").

Every wrapper that changes `reset` changes `reset_with_parameters` (reset on given physical
parameters, see `Env.reset_with_parameters`) the same way, so the call works on a whole stack.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp

from robojax.envs.core import Env, Wrapper, tree_where


def episode_info(info: Mapping, done, episode_return, episode_length, success) -> dict:
    """`info` plus the episode-statistics keys (shared by `EpisodeStatistics` and its host version)."""
    return {
        **info,
        "episode_done": done,
        "episode_return": episode_return,
        "episode_length": episode_length,
        "episode_success": success,
    }


def time_limit_truncated(truncated, terminated, steps, max_steps: int):
    """Truncated at the time limit, unless the episode terminated on that step: the bootstrap must stop.

    Plain operators, so jax arrays (TimeLimit) and numpy scalars (HostTimeLimit) both fit.
    """
    return (truncated | (steps >= max_steps)) & ~terminated


class TimeLimit(Wrapper):
    """Truncates an episode after `max_steps` control steps (`truncated`, never `terminated`)."""

    def __init__(self, env: Env, max_steps: int):
        super().__init__(env)
        if max_steps <= 0:
            raise ValueError(f"TimeLimit max_steps must be positive, got {max_steps}")
        self.max_steps = int(max_steps)

    def _begin(self, state):
        return state.replace(episode={**state.episode, "steps": jnp.zeros((), jnp.int32)})

    def reset(self, key):
        return self._begin(self.env.reset(key))

    def reset_with_parameters(self, key, params):
        return self._begin(self.env.reset_with_parameters(key, params))

    def step(self, state, action):
        nxt = self.env.step(state, action)
        steps = state.episode["steps"] + 1
        truncated = time_limit_truncated(nxt.truncated, nxt.terminated, steps, self.max_steps)
        return nxt.replace(truncated=truncated, episode={**nxt.episode, "steps": steps})


class EpisodeStatistics(Wrapper):
    """Tracks running return and length; on a done step reports the finished episode in info.

    info keys (valid where `info["episode_done"]`): `episode_return`, `episode_length`,
    `episode_success` (the task's success flag at the episode's last step).
    """

    def reset(self, key):
        return self._begin(self.env.reset(key))

    def reset_with_parameters(self, key, params):
        return self._begin(self.env.reset_with_parameters(key, params))

    def _begin(self, state):
        zero_f, zero_i = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32)
        episode = {**state.episode, "return": zero_f, "length": zero_i}
        info = episode_info(state.info, jnp.zeros((), bool), zero_f, zero_i, jnp.zeros((), bool))
        return state.replace(episode=episode, info=info)

    def step(self, state, action):
        nxt = self.env.step(state, action)
        ret = state.episode["return"] + nxt.reward.astype(jnp.float32)
        length = state.episode["length"] + 1
        info = episode_info(nxt.info, nxt.done, ret, length, jnp.asarray(nxt.info["success"], bool))
        return nxt.replace(episode={**nxt.episode, "return": ret, "length": length}, info=info)


class ActionRepeat(Wrapper):
    """Repeats each action `repeat` times, summing rewards; stops early inside a finished episode."""

    def __init__(self, env: Env, repeat: int):
        super().__init__(env)
        if repeat < 1:
            raise ValueError(f"ActionRepeat repeat must be >= 1, got {repeat}")
        self.repeat = int(repeat)

    @property
    def dt(self) -> float:
        return self.env.dt * self.repeat

    def step(self, state, action):
        first = self.env.step(state, action)

        def body(carry, _):
            cur, total = carry
            nxt = self.env.step(cur, action)
            nxt = tree_where(cur.done, cur, nxt)
            total = total + jnp.where(cur.done, 0.0, nxt.reward)
            return (nxt, total), None

        (last, total), _ = jax.lax.scan(body, (first, first.reward), None, length=self.repeat - 1)
        return last.replace(reward=total)


@dataclasses.dataclass(frozen=True)
class Uniform:
    """Sample each element of a parameter uniformly in [low, high], as a factor or an offset.

    mode="scale": value = nominal * u;  mode="add": value = nominal + u;  mode="set": value = u.
    """

    low: float
    high: float
    mode: str = "scale"

    def __post_init__(self):
        if self.mode not in ("scale", "add", "set"):
            raise ValueError(f"Uniform mode must be 'scale', 'add' or 'set', got {self.mode!r}")
        if self.low > self.high:
            raise ValueError(f"Uniform low {self.low} > high {self.high}")

    def sample(self, key, nominal: jax.Array) -> jax.Array:
        u = jax.random.uniform(key, jnp.shape(nominal), jnp.float32, self.low, self.high)
        if self.mode == "scale":
            return nominal * u
        if self.mode == "add":
            return nominal + u
        return u.astype(nominal.dtype)


class DomainRandomization(Wrapper):
    """Samples per-env physical parameters on every reset; the env applies them in `step`.

    `ranges` maps a parameter name the env accepts (for MJX tasks: an `mjx.Model` field such as
    `body_mass`, `dof_damping`, `geom_friction`, `actuator_gainprm`) to a `Uniform`, or to any
    callable `(key, nominal) -> value`. The sampled values live in `state.dynamics`, so one jitted
    step serves a whole batch of different robots.
    """

    def __init__(self, env: Env, ranges: Mapping[str, Uniform | Callable]):
        super().__init__(env)
        nominal = env.unwrapped.nominal_dynamics()
        unknown = sorted(set(ranges) - set(nominal))
        if unknown:
            raise ValueError(
                f"cannot randomise {unknown} on {type(env.unwrapped).__name__}; "
                f"randomisable parameters are: {sorted(nominal)}"
            )
        self.ranges = dict(ranges)
        self._nominal = {k: jnp.asarray(nominal[k]) for k in self.ranges}

    def sample_dynamics(self, key) -> dict:
        keys = jax.random.split(key, len(self.ranges))
        out = {}
        for k, name in zip(keys, sorted(self.ranges)):
            sampler = self.ranges[name]
            fn = sampler.sample if isinstance(sampler, Uniform) else sampler
            out[name] = jnp.asarray(fn(k, self._nominal[name]), self._nominal[name].dtype)
        return out

    def reset(self, key):
        env_key, dyn_key = jax.random.split(key)
        state = self.env.reset(env_key)
        return state.replace(dynamics={**state.dynamics, **self.sample_dynamics(dyn_key)})

    def reset_with_parameters(self, key, params):
        # Given parameters win; the ranges still randomise the ones not given.
        env_key, dyn_key = jax.random.split(key)
        state = self.env.reset_with_parameters(env_key, params)
        drawn = {k: v for k, v in self.sample_dynamics(dyn_key).items() if k not in params}
        return state.replace(dynamics={**state.dynamics, **drawn})


class VmapWrapper(Wrapper):
    """Batches an env over `num_envs` copies with `jax.vmap`; `reset(key)` splits the key."""

    def __init__(self, env: Env, num_envs: int):
        super().__init__(env)
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = int(num_envs)

    @property
    def batch_size(self):
        return self.num_envs

    def _keys(self, key):
        key = jnp.asarray(key)
        if key.ndim == (1 if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else 0):
            return jax.random.split(key, self.num_envs)
        return key

    def reset(self, key):
        return jax.vmap(self.env.reset)(self._keys(key))

    def reset_with_parameters(self, key, params):
        """`params` carry the batch axis: one robot per env (e.g. `jax.vmap(sample)(keys)`)."""
        for name, value in params.items():
            shape = jnp.shape(value)
            if shape[:1] != (self.num_envs,):
                raise ValueError(
                    f"parameter {name!r} has shape {shape}; this env is batched over"
                    f" {self.num_envs} copies, so parameters need a leading axis of {self.num_envs}"
                    " (one per env; jnp.broadcast_to one robot's value to give all envs the same)"
                )
        return jax.vmap(self.env.reset_with_parameters)(self._keys(key), params)

    def step(self, state, action):
        if action.shape[:1] != (self.num_envs,):
            raise ValueError(f"batched env expects actions of shape ({self.num_envs}, ...), got {action.shape}")
        return jax.vmap(self.env.step)(state, action)


class AutoResetWrapper(Wrapper):
    """Resets finished episodes in the same step, keeping what the learner needs.

    After a step where `terminated | truncated`, the returned state carries a *fresh* random
    reset (new key every time) while `reward`, `terminated`, `truncated`, `info` and `metrics` are
    the finished step's. The finished step's observation is in `info["final_obs"]` (equal to `obs`
    on non-done steps), so `(obs, action, reward, info["final_obs"], terminated)` is always the
    correct transition, and truncated transitions can bootstrap from it.

    Works on single or batched envs. On a batched env the reset is skipped by `lax.cond` when no
    env in the batch finished. `keep_dynamics=True` keeps each env's domain-randomised
    parameters across resets (one fixed robot per env, as RAPTOR's teachers need).
    """

    def __init__(self, env: Env, keep_dynamics: bool = False):
        super().__init__(env)
        self.keep_dynamics = keep_dynamics

    def _split_rng(self, rng):
        if self.env.batch_size is None:
            k1, k2 = jax.random.split(rng)
            return k1, k2
        pairs = jax.vmap(jax.random.split)(rng)
        return pairs[:, 0], pairs[:, 1]

    def reset(self, key):
        state = self.env.reset(key)
        return state.replace(info={**state.info, "final_obs": state.obs})

    def reset_with_parameters(self, key, params):
        state = self.env.reset_with_parameters(key, params)
        return state.replace(info={**state.info, "final_obs": state.obs})

    def step(self, state, action):
        nxt = self.env.step(state, action)
        done = nxt.done
        reset_keys, carry_rng = self._split_rng(nxt.rng)

        def with_reset(_):
            fresh = self.env.reset(reset_keys)
            if self.keep_dynamics:
                fresh = fresh.replace(dynamics=nxt.dynamics)
            return tree_where(done, fresh.replace(info=nxt.info, metrics=nxt.metrics), nxt)

        if self.env.batch_size is None:
            merged = with_reset(None)
        else:
            merged = jax.lax.cond(jnp.any(done), with_reset, lambda _: nxt, None)
        return merged.replace(
            reward=nxt.reward,
            terminated=nxt.terminated,
            truncated=nxt.truncated,
            info={**nxt.info, "final_obs": nxt.obs},
            metrics=nxt.metrics,
            rng=carry_rng,
        )
