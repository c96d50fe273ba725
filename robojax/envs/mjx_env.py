"""Base class for tasks simulated with MuJoCo-MJX (pure JAX, jittable, vmappable)."""

from __future__ import annotations

import abc
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from mujoco import mjx

from robojax.envs.core import ArraySpec, Env, EnvState

# mjx.Model fields that domain randomisation may override per env. They are read by `step`
# from `state.dynamics`; geometry that changes collision structure is deliberately absent.
RANDOMIZABLE_MODEL_FIELDS = (
    "body_mass",
    "body_inertia",
    "body_ipos",
    "dof_damping",
    "dof_armature",
    "dof_frictionloss",
    "jnt_stiffness",
    "geom_friction",
    "actuator_gainprm",
    "actuator_biasprm",
    "actuator_gear",
)


class MjxEnv(Env, abc.ABC):
    """An MJX task: owns the C model (for reference stepping and rendering) and its MJX copy.

    Subclasses implement `_reset_physics`, `_observe`, `_reward` and optionally `_terminated`,
    `_success`. Actions are in [-1, 1] and mapped affinely onto the actuators' ctrlrange.
    """

    def __init__(self, mj_model: mujoco.MjModel, control_dt: float, impl: str = "jax"):
        self.mj_model = mj_model
        n = control_dt / mj_model.opt.timestep
        if abs(n - round(n)) > 1e-6 or round(n) < 1:
            raise ValueError(
                f"control_dt {control_dt} must be a positive multiple of the physics timestep {mj_model.opt.timestep}"
            )
        self.n_substeps = int(round(n))
        self._control_dt = float(control_dt)
        self.mjx_model = mjx.put_model(mj_model, impl=impl)
        lo, hi = mj_model.actuator_ctrlrange[:, 0], mj_model.actuator_ctrlrange[:, 1]
        limited = mj_model.actuator_ctrllimited.astype(bool)
        if not np.all(limited):
            raise ValueError("every actuator of an MjxEnv model must have a ctrlrange")
        self._ctrl_center = jnp.asarray((lo + hi) / 2, jnp.float32)
        self._ctrl_half = jnp.asarray((hi - lo) / 2, jnp.float32)
        self._template_data = mjx.make_data(self.mjx_model)

    # ---- what subclasses provide -------------------------------------------------------------
    @abc.abstractmethod
    def _reset_physics(self, key: jax.Array) -> tuple[mjx.Data, dict]:
        """Return initial (data before forward kinematics, episode variables)."""

    @abc.abstractmethod
    def _observe(self, data: mjx.Data, episode: dict) -> jax.Array: ...

    @abc.abstractmethod
    def _reward(self, data: mjx.Data, episode: dict, action: jax.Array) -> tuple[jax.Array, dict]:
        """Return (reward, metrics dict of reward terms)."""

    def _terminated(self, data: mjx.Data, episode: dict) -> jax.Array:
        return jnp.zeros((), bool)

    def _success(self, data: mjx.Data, episode: dict) -> jax.Array:
        return jnp.zeros((), bool)

    def _metric_names(self) -> tuple[str, ...]:
        return ()

    # ---- the Env interface -------------------------------------------------------------------
    @property
    def action_spec(self) -> ArraySpec:
        return ArraySpec((self.mj_model.nu,), np.float32, -1.0, 1.0, name="action")

    @property
    def dt(self) -> float:
        return self._control_dt

    def nominal_dynamics(self) -> dict[str, np.ndarray]:
        """Randomisable model parameters at their nominal values."""
        return {f: np.asarray(getattr(self.mjx_model, f)) for f in RANDOMIZABLE_MODEL_FIELDS}

    def model_for(self, dynamics: Mapping[str, Any]) -> mjx.Model:
        """The MJX model with this env's domain-randomised parameters applied."""
        if not dynamics:
            return self.mjx_model
        return self.mjx_model.replace(**dynamics)

    def action_to_ctrl(self, action: jax.Array) -> jax.Array:
        return self._ctrl_center + self._ctrl_half * jnp.clip(action, -1.0, 1.0)

    def _ctrl(self, data: mjx.Data, action: jax.Array) -> jax.Array:
        """Actuator controls for `action` in the current state (default: affine onto ctrlrange)."""
        return self.action_to_ctrl(action)

    def reset(self, key: jax.Array) -> EnvState:
        key, rng = jax.random.split(key)
        data, episode = self._reset_physics(key)
        data = mjx.forward(self.mjx_model, data)
        obs = self._observe(data, episode)
        _, metrics = self._reward(data, episode, jnp.zeros(self.action_spec.shape))
        return EnvState(
            physics=data,
            obs=obs,
            reward=jnp.zeros((), jnp.float32),
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            episode=episode,
            dynamics={},
            info={"success": self._success(data, episode)},
            metrics={k: jnp.zeros_like(v) for k, v in metrics.items()},
            rng=rng,
        )

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        model = self.model_for(state.dynamics)
        data = state.physics.replace(ctrl=self._ctrl(state.physics, action))

        def substep(d, _):
            return mjx.step(model, d), None

        data, _ = jax.lax.scan(substep, data, None, length=self.n_substeps)
        reward, metrics = self._reward(data, state.episode, action)
        terminated = self._terminated(data, state.episode)
        # A diverged simulation is a termination, not silent NaNs in the buffer.
        finite = jnp.all(jnp.isfinite(data.qpos)) & jnp.all(jnp.isfinite(data.qvel))
        obs = self._observe(data, state.episode)
        obs = jnp.where(finite, obs, jnp.zeros_like(obs))
        return state.replace(
            physics=data,
            obs=obs,
            reward=jnp.where(finite, reward, 0.0).astype(jnp.float32),
            terminated=jnp.logical_or(terminated, jnp.logical_not(finite)),
            truncated=jnp.zeros((), bool),
            info={**state.info, "success": self._success(data, state.episode) & finite},
            metrics=metrics,
        )

    # ---- helpers for subclasses --------------------------------------------------------------
    def make_data(self, qpos: jax.Array, qvel: jax.Array, **fields) -> mjx.Data:
        return self._template_data.replace(qpos=qpos, qvel=qvel, **fields)


def load_model(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None) -> mujoco.MjModel:
    """Load an MJCF file with a clear error, then apply `opt` overrides (e.g. iterations)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"MJCF model not found: {path}; is third_party_assets/ present?")
    model = mujoco.MjModel.from_xml_path(path)
    for name, value in (overrides or {}).items():
        if not hasattr(model.opt, name):
            valid = sorted(k for k in dir(model.opt) if not k.startswith("_"))
            raise ValueError(
                f"unknown override {name!r}: it is neither a task argument nor a MuJoCo <option>"
                f" field (options: {', '.join(valid)})"
            )
        setattr(model.opt, name, value)
    return model
