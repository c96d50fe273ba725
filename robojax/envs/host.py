"""Host-side envs (gymnasium, a robot): the wrapper stack of the jitted envs, in numpy, and helpers.

A `HostEnv` steps outside jit (numpy `EnvState`s, `physics=None`), so `wrappers.py`'s jitted
wrappers cannot wrap it; these are their host versions, with the same rules and info keys:

    HostAutoReset(HostEpisodeStatistics(HostTimeLimit(env, T)))     what `FromGymnasium` /
                                                                    `RobotEnv(autoreset=True)` build

  HostTimeLimit          `truncated` after T steps (never over a termination); stepping past the
                         limit without a reset raises.
  HostEpisodeStatistics  `episode_done`, `episode_return`, `episode_length`, `episode_success`.
  HostFinalObs           `final_obs`: the step's own observation (the transition's next_obs).
  HostAutoReset          a done step resets at once: obs starts the next episode, reward, flags,
                         info (with `final_obs`) and metrics are the finished step's.

A host env's state lives outside the `EnvState` (in the simulator or robot), so the counters live
on the wrappers, not in `state.episode` (which host envs leave empty). Also here: `RescaleActions` (a
finite action box onto [-1, 1]), `make_gym_env` and `is_gym_id`.
"""

from __future__ import annotations

import numpy as np

from robojax.envs.core import ArraySpec, EnvState, Forwarding, HostEnv
from robojax.envs.wrappers import episode_info, time_limit_truncated


class HostWrapper(Forwarding, HostEnv):
    """Base host wrapper: forwards specs, reset, step, dt, close and unknown attributes to the wrapped env."""

    def reset(self, key=None) -> EnvState:
        return self.env.reset(key)

    def close(self) -> None:
        self.env.close()

    @property
    def unwrapped(self) -> HostEnv:
        return getattr(self.env, "unwrapped", self.env)


class HostTimeLimit(HostWrapper):
    """Truncates an episode after `max_steps` steps (`truncated`, never `terminated`), as `TimeLimit`."""

    def __init__(self, env: HostEnv, max_steps: int):
        super().__init__(env)
        if int(max_steps) <= 0:
            raise ValueError(f"HostTimeLimit max_steps must be positive, got {max_steps}")
        self.max_steps = int(max_steps)
        self._steps = 0

    def reset(self, key=None) -> EnvState:
        state = self.env.reset(key)
        self._steps = 0
        return state

    def step(self, state: EnvState, action) -> EnvState:
        if self._steps >= self.max_steps:
            raise RuntimeError(
                f"step() after the {self.max_steps}-step time limit ended the episode; call reset() first"
                " (or build the env with autoreset=True)"
            )
        nxt = self.env.step(state, action)
        self._steps += 1
        truncated = time_limit_truncated(np.bool_(nxt.truncated), np.bool_(nxt.terminated), self._steps, self.max_steps)
        return nxt.replace(truncated=np.bool_(truncated))


class HostEpisodeStatistics(HostWrapper):
    """Running return and length; on a done step the finished episode's in info, as `EpisodeStatistics`."""

    def __init__(self, env: HostEnv):
        super().__init__(env)
        self._return, self._length = np.float32(0.0), np.int32(0)

    def reset(self, key=None) -> EnvState:
        state = self.env.reset(key)
        self._return, self._length = np.float32(0.0), np.int32(0)
        return state.replace(
            info=episode_info(state.info, np.bool_(False), self._return, self._length, np.bool_(False))
        )

    def step(self, state: EnvState, action) -> EnvState:
        nxt = self.env.step(state, action)
        self._return = np.float32(self._return + np.float32(nxt.reward))
        self._length = np.int32(self._length + 1)
        done = np.bool_(bool(nxt.terminated) or bool(nxt.truncated))
        success = np.bool_(bool(nxt.info.get("success", False)))
        return nxt.replace(info=episode_info(nxt.info, done, self._return, self._length, success))


class HostFinalObs(HostWrapper):
    """Adds `info["final_obs"]`, the step's own observation, so (obs, action, reward, final_obs) is the transition."""

    @staticmethod
    def _with_final_obs(state: EnvState) -> EnvState:
        return state.replace(info={**state.info, "final_obs": np.array(state.obs, copy=True)})

    def reset(self, key=None) -> EnvState:
        return self._with_final_obs(self.env.reset(key))

    def step(self, state: EnvState, action) -> EnvState:
        return self._with_final_obs(self.env.step(state, action))


class HostAutoReset(HostFinalObs):
    """Resets a finished episode in the same step, as `AutoResetWrapper`: the returned obs (and
    episode counters) start the next episode; reward, flags, info (with `final_obs`) and metrics
    are the finished step's. The inner env resets with `reset(None)` (its own random stream)."""

    def step(self, state: EnvState, action) -> EnvState:
        nxt = super().step(state, action)
        if not (bool(nxt.terminated) or bool(nxt.truncated)):
            return nxt
        fresh = self.env.reset(None)
        return fresh.replace(
            reward=nxt.reward, terminated=nxt.terminated, truncated=nxt.truncated, info=nxt.info, metrics=nxt.metrics
        )


def host_stack(env: HostEnv, *, autoreset: bool, max_steps: int | None = None) -> HostEnv:
    """The usual host stack: [HostAutoReset | HostFinalObs](HostEpisodeStatistics([HostTimeLimit](env)))."""
    if max_steps is not None:
        env = HostTimeLimit(env, max_steps)
    env = HostEpisodeStatistics(env)
    return HostAutoReset(env) if autoreset else HostFinalObs(env)


class RescaleActions(HostWrapper):
    """Maps the policy's [-1, 1] actions linearly onto a host env's finite action bounds."""

    def __init__(self, env: HostEnv):
        super().__init__(env)
        spec = env.action_spec
        low, high = np.broadcast_to(spec.low, spec.shape), np.broadcast_to(spec.high, spec.shape)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError(f"cannot rescale unbounded actions (low={spec.low}, high={spec.high})")
        self._low, self._high = low.astype(np.float32), high.astype(np.float32)
        self._spec = ArraySpec(
            spec.shape, np.float32, -np.ones(spec.shape, np.float32), np.ones(spec.shape, np.float32), name="action"
        )

    @property
    def action_spec(self) -> ArraySpec:
        return self._spec

    def step(self, state, action):
        action = np.clip(np.asarray(action, np.float32), -1.0, 1.0)
        return self.env.step(state, self._low + (action + 1.0) * 0.5 * (self._high - self._low))


def make_gym_env(env_id: str, **make_kwargs) -> HostEnv:
    """An autoresetting `FromGymnasium` env with its actions rescaled to [-1, 1] when needed."""
    from robojax.envs.gym_bridge import FromGymnasium

    env = FromGymnasium(env_id, autoreset=True, **make_kwargs)
    spec = env.action_spec
    if np.all(spec.low == -1.0) and np.all(spec.high == 1.0):
        return env
    return RescaleActions(env)


def is_gym_id(name: str) -> bool:
    """Whether `name` is a registered gymnasium env id."""
    import gymnasium

    return name in gymnasium.registry
