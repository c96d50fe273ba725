"""MuJoCo Playground tasks behind the robojax `Env` interface: `envs.make("playground:<Name>")`.

`PlaygroundEnv` keeps the whole Playground `State` in `EnvState.physics`, so the adapter stays
pure and jittable and composes with robojax's wrappers (vmap, autoreset with `final_obs`, episode
statistics).

Time limits: Playground envs never end an episode on time; Playground's Brax training wrapper
does that outside the env. Here Playground's `done` maps to `terminated` only, and robojax's
`TimeLimit` wrapper provides truncation: `envs.make` applies it with `episode_length`, which this
adapter reads from the Playground config (`config.episode_length`).

Install with `pip install robojax[playground]`. DM Control Suite tasks (CartpoleBalance, ...)
ship their own MJCF; the locomotion/manipulation tasks clone MuJoCo Menagerie from GitHub on
first use, which needs network access.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import subprocess
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robojax.envs.core import ArraySpec, Env, EnvState

_INSTALL_HINT = "pip install robojax[playground]"


def _registry():
    try:
        from mujoco_playground import registry
    except ImportError as e:
        raise ImportError(f"MuJoCo Playground is not installed ({e}); install it with: {_INSTALL_HINT}") from e
    return registry


def check_name(name: str) -> None:
    """Raise (with close matches) unless `name` is in MuJoCo Playground's registry."""
    available = tuple(_registry().ALL_ENVS)
    if name not in available:
        close = difflib.get_close_matches(name, available, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown MuJoCo Playground env {name!r}.{hint} Available: {', '.join(available)}")


def _load(name: str, config_overrides: Mapping[str, Any]):
    registry = _registry()
    check_name(name)
    try:
        return registry.load(name, config_overrides=dict(config_overrides) or None)
    except subprocess.CalledProcessError as e:
        raise RuntimeError(
            f"MuJoCo Playground env {name!r} needs MuJoCo Menagerie, which Playground clones from"
            " GitHub on first use, and the clone failed (no network?). Clone"
            " github.com/deepmind/mujoco_menagerie into mujoco_playground/external_deps/ by hand,"
            " or use a DM Control Suite env, which ships its own model."
        ) from e


class PlaygroundEnv(Env):
    """A MuJoCo Playground env (by registry name, or an already built env object) as a robojax Env.

    obs: Playground's observation (a dict observation contributes its "state" entry, flattened);
    actions: in [-1, 1] (clipped), as Playground envs expect; info["success"]: Playground's
    `success` metric or info entry when it has one, else False; metrics: Playground's metrics.
    `config_overrides` go to `mujoco_playground.registry.load` (e.g. `impl="jax"`, `ctrl_dt=0.02`).
    """

    def __init__(self, name: str | Any, **config_overrides):
        if isinstance(name, str):
            self.name = name
            self.playground_env = _load(name, config_overrides)
        else:
            if config_overrides:
                raise TypeError("config overrides only apply when loading a Playground env by name")
            self.playground_env = name
            self.name = type(name).__name__
        for attr in ("reset", "step", "action_size"):
            if not hasattr(self.playground_env, attr):
                raise TypeError(f"{self.playground_env!r} has no {attr!r}: not a Playground-style env")
        config = getattr(self.playground_env, "_config", None) or getattr(self.playground_env, "config", None)
        length = getattr(config, "episode_length", None) if config is not None else None
        if length is not None:
            # Read by `envs.make`, which puts a TimeLimit of this many control steps around the env.
            self.episode_length = int(length)
        self._action_size = int(self.playground_env.action_size)
        abstract = jax.eval_shape(self.playground_env.reset, jax.random.PRNGKey(0))
        self._obs_shape = jax.eval_shape(self._flat_obs, abstract.obs).shape
        self._success_source = self._find_success(abstract)

    # ---- specs -----------------------------------------------------------------------------------
    @property
    def observation_spec(self) -> ArraySpec:
        return ArraySpec(self._obs_shape, np.float32, name="observation")

    @property
    def action_spec(self) -> ArraySpec:
        return ArraySpec((self._action_size,), np.float32, -1.0, 1.0, name="action")

    @property
    def dt(self) -> float:
        return float(self.playground_env.dt)

    @property
    def mj_model(self):
        return self.playground_env.mj_model

    def nominal_dynamics(self):
        """The `mjx.Model` array fields robojax's `DomainRandomization` can randomise per env.

        `step` runs Playground's step on the model with `state.dynamics` swapped in, the way
        Playground's own Brax randomisation wrapper does. Playground's per-env randomizers
        (`registry.get_domain_randomizer`, locomotion and manipulation envs only; the DM Control
        Suite envs have none) are not wired: express their ranges as `Uniform`s instead.
        """
        model = getattr(self.playground_env, "mjx_model", None) if hasattr(self.playground_env, "_mjx_model") else None
        if model is None:
            raise NotImplementedError(
                f"{self.name!r} has no `_mjx_model` to randomise; robojax DomainRandomization"
                " needs a Playground MjxEnv. Use Playground's own randomizer"
                " (mujoco_playground.registry.get_domain_randomizer) with its Brax wrapper instead"
            )
        fields = {}
        for f in dataclasses.fields(model):
            value = getattr(model, f.name, None)
            if isinstance(value, jax.Array) and jnp.issubdtype(value.dtype, jnp.floating):
                fields[f.name] = value
        return fields

    @contextlib.contextmanager
    def _model_with(self, dynamics: Mapping[str, Any]):
        """Playground's step/reset read `self._mjx_model`; swap in this env's randomised fields."""
        if not dynamics:
            yield self.playground_env
            return
        nominal = self.playground_env._mjx_model
        try:
            self.playground_env._mjx_model = nominal.replace(**dynamics)
            yield self.playground_env
        finally:
            self.playground_env._mjx_model = nominal

    # ---- the Env interface -----------------------------------------------------------------------
    def reset(self, key: jax.Array) -> EnvState:
        key, rng = jax.random.split(key)
        pg = self.playground_env.reset(key)
        return EnvState(
            physics=pg,
            obs=self._flat_obs(pg.obs),
            reward=jnp.zeros((), jnp.float32),
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            info={"success": self._success(pg)},
            metrics=dict(pg.metrics),
            rng=rng,
        )

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        action = jnp.clip(jnp.asarray(action, jnp.float32), -1.0, 1.0)
        with self._model_with(state.dynamics) as env:
            pg = env.step(state.physics, action)
        return state.replace(
            physics=pg,
            obs=self._flat_obs(pg.obs),
            reward=jnp.asarray(pg.reward, jnp.float32),
            terminated=jnp.asarray(pg.done) > 0.5,
            truncated=jnp.zeros((), bool),
            info={**state.info, "success": self._success(pg)},
            metrics=dict(pg.metrics),
        )

    # ---- helpers ---------------------------------------------------------------------------------
    def _flat_obs(self, obs) -> jax.Array:
        if isinstance(obs, Mapping):
            if "state" not in obs:
                raise ValueError(
                    f"Playground env {self.name!r} has a dict observation with keys {sorted(obs)}"
                    " but no 'state' entry; robojax envs take one flat observation array. Pick an"
                    " env variant with a 'state' observation or wrap the Playground env to return one."
                )
            obs = obs["state"]
        return jnp.reshape(jnp.asarray(obs, jnp.float32), (-1,))

    @staticmethod
    def _find_success(abstract) -> tuple[str, str] | None:
        for where in ("metrics", "info"):
            tree = getattr(abstract, where, None) or {}
            if "success" in tree and jnp.shape(tree["success"]) == ():
                return (where, "success")
        return None

    def _success(self, pg) -> jax.Array:
        if self._success_source is None:
            return jnp.zeros((), bool)
        where, key = self._success_source
        return jnp.asarray(getattr(pg, where)[key]) > 0.5

    def __repr__(self) -> str:
        return f"PlaygroundEnv({self.name!r})"
