"""Bridges between robojax envs and gymnasium, both ways.

robojax -> gymnasium:
  `GymnasiumEnv`        a `gymnasium.Env` over one unbatched, non-autoreset robojax env.
  `GymnasiumVectorEnv`  a native `gymnasium.vector.VectorEnv`: the whole batch is one jitted step,
                        finished episodes reset in the same step (`AutoresetMode.SAME_STEP`).
  `make_gymnasium_env` / `make_gymnasium_vector_env`: the entry points behind every
  `robojax/<Name>-v0` registration, so `gymnasium.make` and `gymnasium.make_vec(...,
  vectorization_mode="vector_entry_point")` work once the task is registered (`import envs`,
  or any `robojax.envs.make` / `names` call, which loads the registered task packages).

gymnasium -> robojax:
  `FromGymnasium`       any gymnasium env with Box spaces behind the host-side `HostEnv`
                        interface, so the same actor loop drives a simulator batch or a gym env.

Both directions keep `terminated` (no bootstrap) apart from `truncated` (time limit).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium
import jax
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from robojax.envs import registry
from robojax.envs.core import ArraySpec, Env, EnvState, HostEnv, Wrapper
from robojax.envs.host import HostWrapper, host_stack
from robojax.envs.wrappers import AutoResetWrapper

__all__ = [
    "FromGymnasium",
    "GymnasiumHostEnv",
    "GymnasiumEnv",
    "GymnasiumVectorEnv",
    "box_from_spec",
    "make_gymnasium_env",
    "make_gymnasium_vector_env",
    "spec_from_box",
]


# ---- specs <-> spaces ----------------------------------------------------------------------------
def box_from_spec(spec: ArraySpec) -> spaces.Box:
    """A gymnasium Box with the spec's shape, dtype and bounds (unbounded dims become +-inf)."""
    return spaces.Box(low=spec.low, high=spec.high, shape=spec.shape, dtype=spec.dtype)


def spec_from_box(space: gymnasium.Space, name: str) -> ArraySpec:
    """An ArraySpec from a gymnasium Box; a clear error for any other space."""
    if not isinstance(space, spaces.Box):
        fix = (
            "wrap the env in gymnasium.wrappers.FlattenObservation (Dict/Tuple observations)"
            if name == "observation"
            else "use a continuous-action version of the env or a wrapper that maps a Box onto"
            " its actions (Discrete/MultiDiscrete actions are not supported)"
        )
        raise TypeError(f"robojax needs a Box {name} space, got {space!r}; {fix}")
    dtype = np.float32 if np.issubdtype(space.dtype, np.floating) else space.dtype
    return ArraySpec(space.shape, dtype, space.low, space.high, name=name)


# ---- shared jitted functions ---------------------------------------------------------------------
_JITTED_ATTR = "_gym_bridge_jitted"


def _jitted(env: Env) -> tuple[Callable, Callable]:
    """One pair of jitted (reset, step) per robojax env object, shared by every gym env built on it,
    so `gymnasium.make` twice (or check_env's re-makes) traces and compiles once. Stored on the env
    itself (read through `vars`, not `getattr`, which wrappers forward to the inner env), so the
    cache lives and dies with the env."""
    fns = vars(env).get(_JITTED_ATTR)
    if fns is None:
        fns = (jax.jit(env.reset), jax.jit(env.step))
        vars(env)[_JITTED_ATTR] = fns
    return fns


def _has_wrapper(env: Env, kind: type) -> bool:
    while True:
        if isinstance(env, kind):
            return True
        if not isinstance(env, Wrapper):
            return False
        env = env.env


def _jax_key(rng: np.random.Generator) -> np.ndarray:
    """A raw (uint32[2]) JAX PRNG key drawn from a numpy generator: seeded resets are reproducible."""
    return rng.integers(0, 2**32, size=2, dtype=np.uint32)


def _to_numpy_info(info: Mapping[str, Any]) -> dict[str, Any]:
    """Fresh numpy values (0-d arrays become numpy scalars), so callers may keep or mutate them."""
    out = {}
    for key, value in info.items():
        if isinstance(value, Mapping):
            out[key] = _to_numpy_info(value)
            continue
        arr = np.array(value)  # a copy, never a view of a device buffer
        out[key] = arr[()] if arr.ndim == 0 else arr
    return out


# ---- robojax -> gymnasium: one env ---------------------------------------------------------------
class GymnasiumEnv(gymnasium.Env):
    """A gymnasium env over one unbatched, non-autoreset robojax env; reset and step are jitted.

    Observations are float32 numpy arrays; `info` holds the robojax `info` entries as numpy
    scalars (at least `success`; with `envs.make` also `episode_done`, `episode_return`, ...) and
    the reward terms under `info["metrics"]`. Seeding follows gymnasium: `reset(seed=s)` seeds
    `self.np_random`, and every reset draws its JAX key from it (fresh state each reset).
    """

    metadata = {"render_modes": []}

    def __init__(self, env: Env, render_mode: str | None = None):
        if not isinstance(env, Env):
            raise TypeError(
                f"GymnasiumEnv wraps a robojax Env, got {type(env).__name__}; build one with envs.make(name)"
            )
        if env.batch_size is not None:
            raise ValueError(
                f"GymnasiumEnv needs an unbatched env, got batch size {env.batch_size}; use"
                " GymnasiumVectorEnv for batches, or envs.make(name) without num_envs"
            )
        if _has_wrapper(env, AutoResetWrapper):
            raise ValueError(
                "GymnasiumEnv needs a non-autoreset env (gymnasium's user calls reset after a done"
                " step); build it with envs.make(name, autoreset=False)"
            )
        if render_mode is not None:
            raise ValueError(
                f"render_mode={render_mode!r} is not supported: robojax gym envs declare no render"
                " modes (render from the MuJoCo model yourself, e.g. with mujoco.Renderer)"
            )
        self.robojax_env = env
        self.render_mode = None
        self.observation_space = box_from_spec(env.observation_spec)
        self.action_space = box_from_spec(env.action_spec)
        self._reset_fn, self._step_fn = _jitted(env)
        self._state: EnvState | None = None
        self._needs_reset = True

    @property
    def dt(self) -> float:
        return self.robojax_env.dt

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._state = self._reset_fn(_jax_key(self.np_random))
        self._needs_reset = False
        obs, info, metrics = jax.device_get((self._state.obs, self._state.info, self._state.metrics))
        return self._obs(obs), self._info(info, metrics)

    def step(self, action):
        if self._state is None:
            raise RuntimeError("step() called before reset(); call env.reset() first")
        if self._needs_reset:
            raise RuntimeError(
                "step() called on a finished episode (terminated or truncated); call env.reset() before stepping again"
            )
        action = self.robojax_env.action_spec.validate(action, "action")
        self._state = self._step_fn(self._state, action)
        s = self._state
        obs, reward, terminated, truncated, info, metrics = jax.device_get(
            (s.obs, s.reward, s.terminated, s.truncated, s.info, s.metrics)
        )
        terminated, truncated = bool(terminated), bool(truncated)
        self._needs_reset = terminated or truncated
        return self._obs(obs), float(reward), terminated, truncated, self._info(info, metrics)

    def close(self):
        self._state = None
        self._needs_reset = True
        super().close()

    def _obs(self, obs) -> np.ndarray:
        return np.array(obs, dtype=self.observation_space.dtype)

    @staticmethod
    def _info(info, metrics) -> dict[str, Any]:
        out = _to_numpy_info({k: v for k, v in info.items() if k != "final_obs"})
        out["metrics"] = _to_numpy_info(metrics)
        return out

    def __repr__(self) -> str:
        return f"GymnasiumEnv({self.robojax_env!r})"


# ---- robojax -> gymnasium: a batch ---------------------------------------------------------------
class GymnasiumVectorEnv(VectorEnv):
    """A native gymnasium vector env: all `num_envs` copies step in one jitted, vmapped call.

    Finished episodes reset inside the same step (`metadata["autoreset_mode"]` is `SAME_STEP`), as
    gymnasium's SyncVectorEnv does in that mode: the returned observation is the fresh episode's,
    and for the envs that finished `infos["final_obs"]` (object array, None elsewhere) and
    `infos["final_info"]` hold the finished step's observation and info, masked by
    `infos["_final_obs"]` / `infos["_final_info"]`. Top-level info keys are masked (`_<key>`) to the
    envs that did not just reset (their reset info is not kept; read `final_info` for those).
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(
        self,
        env: Env | str,
        num_envs: int | None = None,
        render_mode: str | None = None,
        **make_kwargs,
    ):
        if render_mode is not None:
            raise ValueError(f"render_mode={render_mode!r} is not supported by GymnasiumVectorEnv")
        if isinstance(env, str):
            if num_envs is None:
                raise ValueError("GymnasiumVectorEnv(name, num_envs): num_envs is required with a name")
            env = _make_robojax(env, num_envs=int(num_envs), autoreset=True, **make_kwargs)
        elif make_kwargs:
            raise TypeError(f"make kwargs {sorted(make_kwargs)} only apply when passing an env name")
        if not isinstance(env, Env):
            raise TypeError(f"GymnasiumVectorEnv wraps a robojax Env or a task name, got {type(env).__name__}")
        if env.batch_size is None:
            raise ValueError("GymnasiumVectorEnv needs a batched env; build it with envs.make(name, num_envs=N)")
        if num_envs is not None and int(num_envs) != env.batch_size:
            raise ValueError(f"num_envs={num_envs} but the env is batched over {env.batch_size}")
        if not _has_wrapper(env, AutoResetWrapper):
            raise ValueError(
                "GymnasiumVectorEnv needs an autoreset env (SAME_STEP mode); build it with"
                " envs.make(name, num_envs=N), which autoresets by default"
            )
        self.robojax_env = env
        self.num_envs = env.batch_size
        self.render_mode = None
        self.single_observation_space = box_from_spec(env.observation_spec)
        self.single_action_space = box_from_spec(env.action_spec)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._action_shape = (self.num_envs, *env.action_spec.shape)
        self._reset_fn, self._step_fn = _jitted(env)
        self._state: EnvState | None = None

    @property
    def dt(self) -> float:
        return self.robojax_env.dt

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed, options=options)
        self._state = self._reset_fn(_jax_key(self.np_random))
        obs, info, metrics = jax.device_get((self._state.obs, self._state.info, self._state.metrics))
        everyone = np.ones(self.num_envs, bool)
        return self._obs(obs), self._masked_info(info, metrics, everyone)

    def step(self, actions):
        if self._state is None:
            raise RuntimeError("step() called before reset(); call envs.reset() first")
        actions = self._validate(actions)
        self._state = self._step_fn(self._state, actions)
        s = self._state
        obs, reward, terminated, truncated, info, metrics = jax.device_get(
            (s.obs, s.reward, s.terminated, s.truncated, s.info, s.metrics)
        )
        terminated = np.array(terminated, dtype=np.bool_)
        truncated = np.array(truncated, dtype=np.bool_)
        done = terminated | truncated
        infos = self._masked_info(info, metrics, ~done)
        if done.any():
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(done):
                final_obs[i] = np.array(info["final_obs"][i], dtype=self.single_observation_space.dtype)
            infos["final_obs"], infos["_final_obs"] = final_obs, done.copy()
            infos["final_info"] = self._masked_info(info, metrics, done)
            infos["_final_info"] = done.copy()
        return self._obs(obs), np.array(reward, dtype=np.float64), terminated, truncated, infos

    def close_extras(self, **kwargs):
        self._state = None

    def _validate(self, actions) -> np.ndarray:
        arr = np.asarray(actions)
        if arr.shape != self._action_shape:
            raise ValueError(
                f"actions have shape {arr.shape}, expected {self._action_shape} (num_envs,"
                f" *action_shape); pass one action per env"
            )
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise TypeError(f"actions have non-numeric dtype {arr.dtype}")
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            bad = sorted({int(i) for i in np.argwhere(~np.isfinite(arr))[:, 0]})
            raise ValueError(
                f"actions contain NaN or inf (envs {bad}); the policy produced non-finite values,"
                " which would corrupt the simulator state"
            )
        return arr.astype(self.single_action_space.dtype, copy=False)

    def _obs(self, obs) -> np.ndarray:
        return np.array(obs, dtype=self.single_observation_space.dtype)

    @staticmethod
    def _masked_info(info, metrics, mask: np.ndarray) -> dict[str, Any]:
        """gymnasium's vector-info layout: each key an array over envs, plus a `_key` bool mask."""

        def layout(tree):
            out = {}
            for key, value in tree.items():
                out[key] = layout(value) if isinstance(value, Mapping) else np.array(value)
                out[f"_{key}"] = mask.copy()
            return out

        return layout({**{k: v for k, v in info.items() if k != "final_obs"}, "metrics": metrics})

    def __repr__(self) -> str:
        return f"GymnasiumVectorEnv({self.robojax_env!r}, num_envs={self.num_envs})"


# ---- gymnasium registry entry points -------------------------------------------------------------
@functools.lru_cache(maxsize=32)
def _make_robojax_cached(env_name: str, frozen: tuple) -> Env:
    return registry.make(env_name, **dict(frozen))


def _make_robojax(env_name: str, **kwargs) -> Env:
    """`registry.make`, reusing the env object (and so its compiled functions) for repeated kwargs."""
    frozen = tuple(sorted(kwargs.items()))
    try:
        hash(frozen)
    except TypeError:  # e.g. a domain_randomization dict: build afresh
        return registry.make(env_name, **kwargs)
    return _make_robojax_cached(env_name, frozen)


def _episode_kwargs(kwargs: dict) -> dict:
    # gymnasium passes the spec's max_episode_steps to vector entry points; it is our episode_length.
    steps = kwargs.pop("max_episode_steps", None)
    if steps is not None and kwargs.get("episode_length") is None:
        kwargs["episode_length"] = int(steps)
    return kwargs


def make_gymnasium_env(env_name: str, render_mode: str | None = None, **kwargs) -> GymnasiumEnv:
    """Entry point of `gymnasium.make("robojax/<Name>-v0", **kwargs)`; kwargs go to `envs.make`."""
    kwargs = _episode_kwargs(dict(kwargs))
    if kwargs.pop("num_envs", None) is not None:
        raise ValueError("gymnasium.make builds one env; use gymnasium.make_vec for num_envs")
    if kwargs.get("autoreset"):
        raise ValueError("gymnasium.make envs do not autoreset; gymnasium's user calls reset()")
    kwargs["autoreset"] = False
    return GymnasiumEnv(_make_robojax(env_name, **kwargs), render_mode=render_mode)


def make_gymnasium_vector_env(
    env_name: str, num_envs: int = 1, render_mode: str | None = None, **kwargs
) -> GymnasiumVectorEnv:
    """Entry point of `gymnasium.make_vec(..., vectorization_mode="vector_entry_point")`."""
    kwargs = _episode_kwargs(dict(kwargs))
    if kwargs.get("autoreset") is False:
        raise ValueError("GymnasiumVectorEnv always autoresets (SAME_STEP); drop autoreset=False")
    kwargs["autoreset"] = True
    env = _make_robojax(env_name, num_envs=int(num_envs), **kwargs)
    return GymnasiumVectorEnv(env, num_envs=num_envs, render_mode=render_mode)


# ---- gymnasium -> robojax ------------------------------------------------------------------------
def _seed_from(key_or_seed) -> int | None:
    """An int seed for gymnasium from None, an int, or a JAX key (raw uint32 or typed)."""
    if key_or_seed is None:
        return None
    if isinstance(key_or_seed, (int, np.integer)):
        return int(key_or_seed)
    key = key_or_seed
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    words = np.asarray(key).astype(np.uint64).ravel()
    if words.size == 0:
        raise ValueError(f"cannot derive a seed from {key_or_seed!r}")
    seed = 0
    for w in words:
        seed = (seed * (2**32) + int(w)) % (2**63)
    return seed


class GymnasiumHostEnv(HostEnv):
    """A gymnasium env with Box spaces as a bare `HostEnv`: numpy `EnvState`s, `info["success"]`.

    `success` is gym's `is_success`/`success` (else False); numeric scalar entries of the gym info
    go to `metrics`. Stepping a finished episode raises until `reset`. `FromGymnasium` adds the
    host wrapper stack (episode statistics, `final_obs`, autoreset) on top.
    """

    def __init__(self, env: gymnasium.Env | str, **make_kwargs):
        if isinstance(env, str):
            env = gymnasium.make(env, **make_kwargs)
        elif make_kwargs:
            raise TypeError(f"make kwargs {sorted(make_kwargs)} only apply when passing an env id")
        if not isinstance(env, gymnasium.Env):
            raise TypeError(f"FromGymnasium wraps a gymnasium.Env or an env id, got {type(env).__name__}")
        self.gym_env = env
        self._obs_spec = spec_from_box(env.observation_space, "observation")
        self._act_spec = spec_from_box(env.action_space, "action")
        self._needs_reset = True

    @property
    def observation_spec(self) -> ArraySpec:
        return self._obs_spec

    @property
    def action_spec(self) -> ArraySpec:
        return self._act_spec

    @property
    def dt(self) -> float:
        dt = getattr(self.gym_env.unwrapped, "dt", None)
        if dt is None:
            raise NotImplementedError(f"{self.gym_env.unwrapped!r} has no `dt` attribute")
        return float(dt)

    def reset(self, key_or_seed=None) -> EnvState:
        obs, info = self.gym_env.reset(seed=_seed_from(key_or_seed))
        self._needs_reset = False
        return self._state(obs, 0.0, False, False, info)

    def step(self, state: EnvState, action) -> EnvState:
        if self._needs_reset:
            raise RuntimeError(
                "step() on a finished (or never started) episode; call reset() first, or build"
                " FromGymnasium(..., autoreset=True)"
            )
        action = self._act_spec.validate(action, "action").astype(self.gym_env.action_space.dtype)
        obs, reward, terminated, truncated, info = self.gym_env.step(action)
        terminated, truncated = bool(terminated), bool(truncated)
        self._needs_reset = terminated or truncated
        return self._state(obs, reward, terminated, truncated, info)

    def close(self) -> None:
        self.gym_env.close()

    def _state(self, obs, reward, terminated: bool, truncated: bool, gym_info: Mapping[str, Any]) -> EnvState:
        success = np.bool_(bool(gym_info.get("is_success", gym_info.get("success", False))))
        return EnvState(
            physics=None,
            obs=np.array(obs, dtype=self._obs_spec.dtype),
            reward=np.float32(reward),
            terminated=np.bool_(terminated),
            truncated=np.bool_(truncated),
            episode={},
            info={"success": success},
            metrics=self._metrics(gym_info),
            rng=None,
        )

    @staticmethod
    def _metrics(gym_info: Mapping[str, Any]) -> dict[str, np.ndarray]:
        out = {}
        for key, value in gym_info.items():
            if key in ("is_success", "success"):
                continue
            arr = np.asarray(value)
            if arr.ndim == 0 and (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
                out[key] = arr.copy()
        return out

    def __repr__(self) -> str:
        return f"GymnasiumHostEnv({self.gym_env!r})"


class FromGymnasium(HostWrapper):
    """Any gymnasium env with Box spaces, behind robojax's host-side env interface.

    `reset(key_or_seed)` and `step(state, action)` return `EnvState`s of numpy values
    (`physics=None`). `GymnasiumHostEnv` under the host wrapper stack (robojax.envs.host), so
    `info` carries `success`, `final_obs` and the `EpisodeStatistics` keys (`episode_done`,
    `episode_return`, `episode_length`, `episode_success`), as on simulator envs.

    With `autoreset=True` a done step resets at once, exactly like `AutoResetWrapper`: the returned
    obs starts the new episode, while reward, done flags and info (with `final_obs`) are the
    finished step's. Without it, step after a done step raises until `reset` is called.
    """

    def __init__(self, env: gymnasium.Env | str, autoreset: bool = False, **make_kwargs):
        bare = GymnasiumHostEnv(env, **make_kwargs)
        super().__init__(host_stack(bare, autoreset=bool(autoreset)))
        self.gym_env, self.autoreset = bare.gym_env, bool(autoreset)

    def __repr__(self) -> str:
        return f"FromGymnasium({self.gym_env!r}, autoreset={self.autoreset})"
