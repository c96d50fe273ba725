"""Quadrotor tasks of RAPTOR (arXiv 2509.11481, note section 3.3): hover recovery and tracking.

Observation (22, what the student sees), in this order:
    position error p - p_ref (3) | rotation matrix R(q), row-major (9) |
    velocity error v - v_ref (3) | body angular velocity (3) | previous action (4)
`state.info["teacher_obs"]` (29, always present) is the same plus the true motor speeds mapped
to [-1, 1] (2 m - 1) and the episode's standardised disturbance draw (3): the privileged state
RAPTOR's SAC teachers observe (the paper lists f_ext among the teachers' observations, note 3.4).
The external force is that draw times the quadrotor's disturbance std and weight; a teacher only
ever flies its own quadrotor, whose std is fixed, so the draw tells it the whole force while
keeping every observation independent of the parameters (see the reset contract below).
Teachers without the force use the first 26 values.

Action: 4 normalised motor commands in [-1, 1], clipped, mapped to motor set-points (a + 1) / 2.

The quadrotor's parameters live in `state.dynamics` (see `dynamics.sample_parameters`), so one
jitted, vmapped step serves many different quadrotors. The initial state does not depend on the
parameters (positions in metres, motor speeds drawn in a fixed range), so
`env.reset(key).replace(dynamics=params)` is an exact reset with given parameters through any
wrapper stack, and `AutoResetWrapper(keep_dynamics=True)` keeps each env's quadrotor exactly.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from envs.quadrotor import dynamics as dyn
from robojax.envs.core import ArraySpec, Env, EnvState
from robojax.tasks.quadrotor import TEACHER_OBS_KEY

OBS_SIZE = 22
TEACHER_OBS_SIZE = 29
ACTION_SIZE = 4
# Slices of the 22-value observation.
OBS_POSITION = slice(0, 3)
OBS_ROTATION = slice(3, 12)
OBS_VELOCITY = slice(12, 15)
OBS_ANGULAR_VELOCITY = slice(15, 18)
OBS_PREVIOUS_ACTION = slice(18, 22)
OBS_MOTOR = slice(22, 26)  # teacher_obs only
OBS_DISTURBANCE = slice(26, 29)  # teacher_obs only: standardised external-force draw
# The rigid-body part of `state.physics` that the integrator advances.
BODY_KEYS = ("position", "quaternion", "velocity", "angular_velocity", "motor")
# Finite stand-in for errors of a diverged (non-finite) simulation, which also terminates.
DIVERGED_ERROR = 1e3


class QuadrotorEnv(Env):
    """A quadrotor flying to (hover) or along (track) a reference; L2F dynamics, RK4 at 100 Hz.

    Args:
      task: "hover" (return to the origin from a perturbed start) or "track" (follow a random
        smooth reference; observation and reward use position/velocity relative to it).
      randomize: `reset` samples a fresh quadrotor from the paper's ranges (else the nominal one).
      control_dt: control period (s); the paper's is 0.01 (100 Hz). `substeps` RK4 steps each.
      init_position / init_velocity / init_angular_velocity: per-axis uniform bounds of the
        perturbed start (m, m/s, rad/s); init_max_angle: tilt about a random axis (rad, paper:
        90 degrees); init_at_target_probability: start exactly at the target (paper: 10 %).
      init_motor: range of the initial normalised motor speeds.
      position_threshold_arms / velocity_threshold / angular_velocity_threshold: termination
        bounds (paper: 20 arm lengths, 2 m/s, 35 rad/s; per axis).
      track_amplitude (m) / track_frequency (Hz, range): the reference trajectory, per axis a
        sum of two sinusoids with amplitudes U(0, track_amplitude / 2) and frequencies in range.
      disturbance: apply the per-episode random external force (std is a quadrotor parameter).
    """

    episode_length = 500  # 5 s at 100 Hz (paper)

    def __init__(
        self,
        task: str = "hover",
        randomize: bool = True,
        control_dt: float = 0.01,
        substeps: int = 1,
        init_position: float = 0.3,
        init_velocity: float = 1.0,
        init_angular_velocity: float = 1.0,
        init_max_angle: float = math.pi / 2,
        init_at_target_probability: float = 0.1,
        init_motor: tuple[float, float] = (0.3, 0.9),
        position_threshold_arms: float = 20.0,
        velocity_threshold: float = 2.0,
        angular_velocity_threshold: float = 35.0,
        track_amplitude: float = 0.5,
        track_frequency: tuple[float, float] = (0.05, 0.3),
        disturbance: bool = True,
    ):
        if task not in ("hover", "track"):
            raise ValueError(f"quadrotor task must be 'hover' or 'track', got {task!r}")
        if control_dt <= 0 or substeps < 1:
            raise ValueError(f"need control_dt > 0 and substeps >= 1, got {control_dt}, {substeps}")
        if not 0.0 <= init_at_target_probability <= 1.0:
            raise ValueError(f"init_at_target_probability must be in [0, 1], got {init_at_target_probability}")
        lo, hi = init_motor
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"init_motor must satisfy 0 <= low <= high <= 1, got {init_motor}")
        self.task = task
        self.randomize = bool(randomize)
        self._control_dt = float(control_dt)
        self.substeps = int(substeps)
        self.init_position = float(init_position)
        self.init_velocity = float(init_velocity)
        self.init_angular_velocity = float(init_angular_velocity)
        self.init_max_angle = float(init_max_angle)
        self.init_at_target_probability = float(init_at_target_probability)
        self.init_motor = (float(lo), float(hi))
        self.position_threshold_arms = float(position_threshold_arms)
        self.velocity_threshold = float(velocity_threshold)
        self.angular_velocity_threshold = float(angular_velocity_threshold)
        self.track_amplitude = float(track_amplitude) if task == "track" else 0.0
        self.track_frequency = tuple(float(f) for f in track_frequency)
        self.disturbance = bool(disturbance)

    # ---- specs -------------------------------------------------------------------------------
    @property
    def observation_spec(self) -> ArraySpec:
        return ArraySpec((OBS_SIZE,), np.float32, name="observation")

    @property
    def teacher_observation_spec(self) -> ArraySpec:
        return ArraySpec((TEACHER_OBS_SIZE,), np.float32, name="teacher_observation")

    @property
    def action_spec(self) -> ArraySpec:
        return ArraySpec((ACTION_SIZE,), np.float32, -1.0, 1.0, name="motor_commands")

    @property
    def dt(self) -> float:
        return self._control_dt

    def nominal_dynamics(self) -> dict:
        return dyn.nominal_parameters()

    def __repr__(self) -> str:
        return f"QuadrotorEnv(task={self.task!r}, randomize={self.randomize})"

    # ---- reference trajectory ----------------------------------------------------------------
    def reference(self, episode: dict, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Reference position and velocity at time t (zero for hover); starts at the origin."""
        amp, freq, phase = episode["ref_amplitude"], episode["ref_frequency"], episode["ref_phase"]
        omega = 2.0 * math.pi * freq
        arg = omega * t + phase
        pos = jnp.sum(amp * (jnp.sin(arg) - jnp.sin(phase)), axis=-1)
        vel = jnp.sum(amp * omega * jnp.cos(arg), axis=-1)
        return pos, vel

    def _sample_reference(self, key) -> dict:
        k1, k2, k3 = jax.random.split(key, 3)
        shape = (3, 2)
        return {
            "ref_amplitude": jax.random.uniform(k1, shape, jnp.float32, 0.0, self.track_amplitude / 2),
            "ref_frequency": jax.random.uniform(k2, shape, jnp.float32, *self.track_frequency),
            "ref_phase": jax.random.uniform(k3, shape, jnp.float32, 0.0, 2.0 * math.pi),
        }

    # ---- reset -------------------------------------------------------------------------------
    def _initial_physics(self, key) -> dict:
        ks = jax.random.split(key, 8)
        u3 = lambda k, r: jax.random.uniform(k, (3,), jnp.float32, -r, r)
        position = u3(ks[0], self.init_position)
        velocity = u3(ks[1], self.init_velocity)
        angular_velocity = u3(ks[2], self.init_angular_velocity)
        axis = jax.random.normal(ks[3], (3,), jnp.float32)
        angle = jax.random.uniform(ks[4], (), jnp.float32, 0.0, self.init_max_angle)
        quaternion = dyn.axis_angle_to_quat(axis, angle)
        at_target = jax.random.bernoulli(ks[5], self.init_at_target_probability)
        zero3 = jnp.zeros(3, jnp.float32)
        position = jnp.where(at_target, zero3, position)
        velocity = jnp.where(at_target, zero3, velocity)
        angular_velocity = jnp.where(at_target, zero3, angular_velocity)
        quaternion = jnp.where(at_target, jnp.asarray([1.0, 0, 0, 0], jnp.float32), quaternion)
        motor = jax.random.uniform(ks[6], (4,), jnp.float32, *self.init_motor)
        # Disturbance direction and size in standard units, clipped at 3 sigma; scaled in `step`
        # by the quadrotor's own std and weight, so it stays right when dynamics are swapped.
        force_noise = jnp.clip(jax.random.normal(ks[7], (3,), jnp.float32), -3.0, 3.0)
        return {
            "position": position,
            "quaternion": quaternion,
            "velocity": velocity,
            "angular_velocity": angular_velocity,
            "motor": motor,
            "previous_action": 2.0 * motor - 1.0,  # the command that produced these speeds
            "force_noise": force_noise if self.disturbance else jnp.zeros(3, jnp.float32),
            "step": jnp.zeros((), jnp.int32),
        }

    def reset(self, key: jax.Array) -> EnvState:
        key, param_key = jax.random.split(key)
        params = dyn.sample_parameters(param_key) if self.randomize else dyn.nominal_parameters()
        return self.reset_with_parameters(key, params)

    @staticmethod
    def sample_parameters(key: jax.Array) -> dict:
        """One quadrotor from the RAPTOR pre-training distribution (`dynamics.sample_parameters`)."""
        return dyn.sample_parameters(key)

    def reset_with_parameters(self, key: jax.Array, params: dict) -> EnvState:
        """Reset this task with a given quadrotor (`Env.reset_with_parameters`).

        Every wrapper passes the call on, so `env.reset_with_parameters(key, params)` works on any
        stack; a batched one (VmapWrapper) takes parameters with a leading batch axis.
        """
        missing = sorted(set(dyn.PARAMETER_NAMES) - set(params))
        if missing:
            raise ValueError(
                f"quadrotor parameters are missing {missing}; build them with"
                " envs.quadrotor.sample_parameters or nominal_parameters"
            )
        if jnp.ndim(params["mass"]) != 0:
            raise ValueError(
                "QuadrotorEnv.reset_with_parameters got batched parameters; reset a batched"
                " stack (VmapWrapper, e.g. envs.make(name, num_envs=N)) with them instead"
            )
        phys_key, ref_key, rng = jax.random.split(key, 3)
        physics = self._initial_physics(phys_key)
        episode = self._sample_reference(ref_key)
        obs, teacher_obs, pos_err = self._observe(physics, episode)
        zero = jnp.zeros((), jnp.float32)
        return EnvState(
            physics=physics,
            obs=obs,
            reward=zero,
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            episode=episode,
            dynamics={k: jnp.asarray(v, jnp.float32) for k, v in params.items()},
            info={"success": jnp.ones((), bool), TEACHER_OBS_KEY: teacher_obs, "position_error": pos_err},
            metrics={
                "position_cost": zero,
                "orientation_cost": zero,
                "action_cost": zero,
                "position_error": pos_err,
                "velocity_error": zero,
            },
            rng=rng,
        )

    # ---- step --------------------------------------------------------------------------------
    def _observe(self, physics: dict, episode: dict):
        t = physics["step"].astype(jnp.float32) * self._control_dt
        ref_pos, ref_vel = self.reference(episode, t)
        p_rel = physics["position"] - ref_pos
        v_rel = physics["velocity"] - ref_vel
        rotation = dyn.quat_to_rotation(physics["quaternion"]).reshape(9)
        obs = jnp.concatenate([p_rel, rotation, v_rel, physics["angular_velocity"], physics["previous_action"]]).astype(
            jnp.float32
        )
        teacher_obs = jnp.concatenate([obs, 2.0 * physics["motor"] - 1.0, physics["force_noise"]]).astype(jnp.float32)
        return obs, teacher_obs, jnp.linalg.norm(p_rel)

    def advance(self, params: dict, physics: dict, action: jax.Array) -> dict:
        """The rigid body (BODY_KEYS of `physics`) one control period later under `action` (clipped
        to [-1, 1]) and the episode's external force; `substeps` RK4 steps. Differentiable."""
        setpoint = (jnp.clip(action, -1.0, 1.0) + 1.0) / 2.0
        weight = params["mass"] * dyn.GRAVITY
        force_ext = physics["force_noise"] * params["disturbance_std"] * weight
        body = {k: physics[k] for k in BODY_KEYS}
        h = self._control_dt / self.substeps

        def substep(b, _):
            return dyn.rk4_step(params, b, setpoint, h, force_ext), None

        if self.substeps == 1:
            return dyn.rk4_step(params, body, setpoint, h, force_ext)
        body, _ = jax.lax.scan(substep, body, None, length=self.substeps)
        return body

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        params = state.dynamics
        physics = state.physics
        action = jnp.clip(jnp.asarray(action, jnp.float32), -1.0, 1.0)
        body = self.advance(params, physics, action)
        new_physics = {**physics, **body, "previous_action": action, "step": physics["step"] + 1}

        obs, teacher_obs, pos_err = self._observe(new_physics, state.episode)
        p_rel, v_rel = obs[OBS_POSITION], obs[OBS_VELOCITY]
        w = new_physics["angular_velocity"]
        # Reward, paper Eq. 1 with the code's orientation term (note 3.3): 0.1 * rotation angle.
        position_cost = jnp.linalg.norm(p_rel)
        orientation_cost = 0.1 * 2.0 * jnp.arccos(jnp.clip(jnp.abs(new_physics["quaternion"][0]), 0.0, 1.0))
        action_cost = jnp.linalg.norm(action - physics["previous_action"])
        finite = jnp.all(jnp.isfinite(obs)) & jnp.all(jnp.isfinite(teacher_obs))
        crashed = (
            jnp.any(jnp.abs(p_rel) > self.position_threshold_arms * params["arm_length"])
            | jnp.any(jnp.abs(v_rel) > self.velocity_threshold)
            | jnp.any(jnp.abs(w) > self.angular_velocity_threshold)
        )
        terminated = crashed | ~finite
        reward = -position_cost - orientation_cost - action_cost + 1.5 - 100.0 * terminated
        reward = jnp.where(finite, reward, -100.0).astype(jnp.float32)
        obs = jnp.where(finite, obs, jnp.zeros_like(obs))
        teacher_obs = jnp.where(finite, teacher_obs, jnp.zeros_like(teacher_obs))
        return state.replace(
            physics=new_physics,
            obs=obs,
            reward=reward,
            terminated=terminated,
            truncated=jnp.zeros((), bool),
            info={
                **state.info,
                "success": ~terminated,
                TEACHER_OBS_KEY: teacher_obs,
                "position_error": jnp.where(finite, pos_err, DIVERGED_ERROR),
            },
            metrics=jax.tree.map(
                lambda x: jnp.where(finite, x, DIVERGED_ERROR),
                {
                    "position_cost": position_cost,
                    "orientation_cost": orientation_cost,
                    "action_cost": action_cost,
                    "position_error": pos_err,
                    "velocity_error": jnp.linalg.norm(v_rel),
                },
            ),
        )


class QuadrotorHover(QuadrotorEnv):
    """Return to the origin from a perturbed start (up to 90 degrees tilt); RAPTOR's position task."""

    def __init__(self, **kwargs):
        super().__init__(task="hover", **kwargs)


class QuadrotorTrack(QuadrotorEnv):
    """Track a random smooth reference (sum of sinusoids per axis); errors relative to it."""

    def __init__(self, **kwargs):
        super().__init__(task="track", **kwargs)


def reset_with_parameters(env: Env, key: jax.Array, params: dict) -> EnvState:
    """Reset any (wrapped, batched) quadrotor env with given parameters: `env.reset_with_parameters`.

    For a batched env, `params` carries the batch axis (e.g. `jax.vmap(sample_parameters)(keys)`).
    """
    return env.reset_with_parameters(key, params)
