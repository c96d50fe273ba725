"""Rigid-body quadrotor dynamics in pure JAX, after RLtools' L2F simulator (RAPTOR, arXiv 2509.11481).

State (a dict of arrays, one quadrotor): position p (3, world, m), quaternion q (4, [w, x, y, z],
body->world), linear velocity v (3, world, m/s), angular velocity w (3, body, rad/s) and the
normalised motor speeds m (4, in [0, 1]). Equations (paper supplement, L2F `60_dynamics.h`):

    p' = v
    q' = q * [0, w/2]
    v' = R(q) [0, 0, sum_i f_i] / mass + f_ext / mass + g
    w' = J^-1 (tau - w x J w),   tau = sum_i r_i x [0, 0, f_i] + [0, 0, d_i c_m f_i] + tau_ext
    f_i = c0 + c1 m_i + c2 m_i^2                       (quadratic thrust curve, normalised speed)
    m_i' = (m_sp,i - m_i) / T,  T = T_up if m_sp,i > m_i else T_down   (first-order motors)

integrated with classic RK4 at 100 Hz; the quaternion is renormalised after each step.

Parameters are a dict of arrays (`sample_parameters`, `nominal_parameters`) so a batch of
different quadrotors is just a leading axis under `jax.vmap`. Motor order and spin follow L2F:
[front-right, back-right, back-left, front-left], spins (CCW, CW, CCW, CW), body frame FLU.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

GRAVITY = 9.81
# Crazyflie thrust-curve shape normalised so that f(1) = 1 (note 3.2: C_f = (0.032, 0.131, 0.837)).
THRUST_CURVE_SHAPE = (0.032, 0.131, 0.837)
# Crazyflie mass-size ratio cbrt(mass) / arm_length (note 3.2: R_ms ~ 7.90).
MASS_SIZE_RATIO = 7.90
# J_zz = (J_xx + J_yy) / 2 * 1.832 (note 3.2).
INERTIA_Z_FACTOR = 1.832
# Rotor yaw-torque direction per motor: a CCW-spinning rotor pushes the body clockwise.
ROTOR_TORQUE_DIRECTIONS = (-1.0, 1.0, -1.0, 1.0)

# Sampling ranges, paper eqs. S5-S27 (note section 3.2).
RANGES = {
    "thrust_to_weight": (1.5, 5.0),
    "mass": (0.02, 5.0),  # via size s ~ U(cbrt 0.02, cbrt 5), mass = s^3
    "mass_size_deviation": (-0.1, 0.1),  # s_ms = 1 + u: +-10 % around R_ms
    "torque_to_inertia": (40.0, 1200.0),
    "torque_constant": (0.005, 0.05),
    "motor_tau_up": (0.03, 0.10),
    "motor_tau_down": (0.03, 0.30),
    "disturbance_std": (0.0, 0.1),  # times (thrust_to_weight - 1): sigma_fext, in units of weight
}

PARAMETER_NAMES = (
    "mass",
    "arm_length",
    "thrust_to_weight",
    "thrust_curve",
    "inertia",
    "torque_to_inertia",
    "torque_constant",
    "motor_tau_up",
    "motor_tau_down",
    "disturbance_std",
    "rotor_positions",
    "rotor_torque_directions",
)


def rotor_positions(arm_length) -> jax.Array:
    """X-configuration rotor positions (4, 3) in the body frame, L2F motor order."""
    d = arm_length / math.sqrt(2.0)
    signs = jnp.asarray([[1.0, -1.0], [-1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]], jnp.float32)
    xy = signs * d
    return jnp.concatenate([xy, jnp.zeros((4, 1), jnp.float32)], axis=-1)


def _derived_parameters(
    mass,
    thrust_to_weight,
    arm_length,
    torque_to_inertia,
    torque_constant,
    motor_tau_up,
    motor_tau_down,
    disturbance_std,
) -> dict:
    f = lambda x: jnp.asarray(x, jnp.float32)
    mass, thrust_to_weight, arm_length = f(mass), f(thrust_to_weight), f(arm_length)
    max_thrust = thrust_to_weight * GRAVITY * mass / 4.0  # per motor: 4 f(1) = r_t2w m g
    thrust_curve = max_thrust * jnp.asarray(THRUST_CURVE_SHAPE, jnp.float32)
    # Max roll/pitch torque of an X frame: two rotors at full thrust, lever arm l / sqrt 2 each.
    max_torque = max_thrust * math.sqrt(2.0) * arm_length
    j_xy = max_torque / f(torque_to_inertia)
    inertia = jnp.stack([j_xy, j_xy, j_xy * INERTIA_Z_FACTOR])
    return {
        "mass": mass,
        "arm_length": arm_length,
        "thrust_to_weight": thrust_to_weight,
        "thrust_curve": thrust_curve,
        "inertia": inertia,
        "torque_to_inertia": f(torque_to_inertia),
        "torque_constant": f(torque_constant),
        "motor_tau_up": f(motor_tau_up),
        "motor_tau_down": f(motor_tau_down),
        "disturbance_std": f(disturbance_std),
        "rotor_positions": rotor_positions(arm_length),
        "rotor_torque_directions": jnp.asarray(ROTOR_TORQUE_DIRECTIONS, jnp.float32),
    }


def nominal_parameters() -> dict:
    """A Crazyflie-2-like quadrotor (27 g, thrust-to-weight 2.25, arm 3.8 cm).

    Mass, arm length and the yaw torque constant are the Crazyflie's; the thrust-to-weight 2.25
    gives 0.149 N per motor at full speed (Crazyflie: ~0.15 N). The torque-to-inertia ratio 500
    gives J_xx ~ 1.67e-5 kg m^2, the identified Crazyflie value. Motor time constants are
    mid-range picks inside the paper's ranges (not identified values).
    """
    return _derived_parameters(
        mass=0.027,
        thrust_to_weight=2.25,
        arm_length=0.038,
        torque_to_inertia=500.0,
        torque_constant=0.006,
        motor_tau_up=0.05,
        motor_tau_down=0.08,
        disturbance_std=0.0,
    )


def sample_parameters(key: jax.Array) -> dict:
    """One quadrotor from the RAPTOR pre-training distribution (paper eqs. S5-S27); vmap for many.

    Thrust-to-weight ~ U(1.5, 5); size s ~ U(cbrt 0.02, cbrt 5), mass = s^3; arm length from the
    mass-size ratio cbrt(m)/l = s_ms * 7.90 with s_ms = 1 + U(-0.1, 0.1) (the paper's code draws
    this deviation from a normal by accident; we use the intended uniform); torque-to-inertia
    ~ U(40, 1200) sets J_xx = J_yy = sqrt(2) l f_max / r_t2i, J_zz = 1.832 J_xx; c_m ~ U(0.005, 0.05);
    T_up ~ U(0.03, 0.10) s, T_down ~ U(0.03, 0.30) s; disturbance std ~ U(0, 0.1 (r_t2w - 1)) in
    units of the quadrotor's weight.
    """
    ks = jax.random.split(key, 8)
    u = lambda k, name: jax.random.uniform(k, (), jnp.float32, *RANGES[name])
    t2w = u(ks[0], "thrust_to_weight")
    lo, hi = (x ** (1.0 / 3.0) for x in RANGES["mass"])
    size = jax.random.uniform(ks[1], (), jnp.float32, lo, hi)
    mass = size**3
    s_ms = 1.0 + u(ks[2], "mass_size_deviation")
    arm_length = size / (s_ms * MASS_SIZE_RATIO)
    dist = jax.random.uniform(ks[7], (), jnp.float32, 0.0, 1.0) * 0.1 * (t2w - 1.0)
    return _derived_parameters(
        mass=mass,
        thrust_to_weight=t2w,
        arm_length=arm_length,
        torque_to_inertia=u(ks[3], "torque_to_inertia"),
        torque_constant=u(ks[4], "torque_constant"),
        motor_tau_up=u(ks[5], "motor_tau_up"),
        motor_tau_down=u(ks[6], "motor_tau_down"),
        disturbance_std=dist,
    )


def make_parameters(**values) -> dict:
    """Parameters from the primary quantities (mass, thrust_to_weight, arm_length, ...)."""
    base = {
        k: float(np.asarray(v))
        for k, v in nominal_parameters().items()
        if k
        in (
            "mass",
            "thrust_to_weight",
            "arm_length",
            "torque_to_inertia",
            "torque_constant",
            "motor_tau_up",
            "motor_tau_down",
            "disturbance_std",
        )
    }
    unknown = sorted(set(values) - set(base))
    if unknown:
        raise ValueError(f"make_parameters got unknown {unknown}; valid: {sorted(base)}")
    return _derived_parameters(**{**base, **values})


# ---- rigid-body maths ------------------------------------------------------------------------


def quat_multiply(a: jax.Array, b: jax.Array) -> jax.Array:
    """Hamilton product of [w, x, y, z] quaternions."""
    aw, ax, ay, az = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bw, bx, by, bz = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return jnp.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def quat_to_rotation(q: jax.Array) -> jax.Array:
    """Rotation matrix (body -> world) of a unit [w, x, y, z] quaternion."""
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return jnp.stack(
        [
            jnp.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            jnp.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            jnp.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )


def axis_angle_to_quat(axis: jax.Array, angle: jax.Array) -> jax.Array:
    axis = axis / jnp.maximum(jnp.linalg.norm(axis, axis=-1, keepdims=True), 1e-12)
    half = 0.5 * jnp.asarray(angle)[..., None]
    return jnp.concatenate([jnp.cos(half), jnp.sin(half) * axis], axis=-1)


def thrust(params: dict, motor: jax.Array) -> jax.Array:
    """Per-motor thrust (N) from normalised motor speed via the quadratic thrust curve."""
    c = params["thrust_curve"]
    return c[0] + c[1] * motor + c[2] * motor * motor


def hover_motor_speed(params: dict) -> jax.Array:
    """Normalised motor speed whose thrust carries the weight: f(m) = mass g / 4."""
    c0, c1, c2 = params["thrust_curve"][0], params["thrust_curve"][1], params["thrust_curve"][2]
    target = params["mass"] * GRAVITY / 4.0
    return (-c1 + jnp.sqrt(c1 * c1 - 4.0 * c2 * (c0 - target))) / (2.0 * c2)


def state_derivative(
    params: dict, state: dict, motor_setpoint: jax.Array, force_ext: jax.Array, torque_ext: jax.Array
) -> dict:
    """Time derivative of (position, quaternion, velocity, angular_velocity, motor)."""
    q, w, motor = state["quaternion"], state["angular_velocity"], state["motor"]
    f = thrust(params, motor)
    rotation = quat_to_rotation(q)
    thrust_body = jnp.stack([0.0, 0.0, jnp.sum(f)])
    accel = (rotation @ thrust_body + force_ext) / params["mass"] + jnp.asarray([0.0, 0.0, -GRAVITY])
    forces_body = jnp.stack([jnp.zeros_like(f), jnp.zeros_like(f), f], axis=-1)  # (4, 3)
    torque = jnp.sum(jnp.cross(params["rotor_positions"], forces_body), axis=0)
    yaw = jnp.sum(params["rotor_torque_directions"] * params["torque_constant"] * f)
    torque = torque + jnp.stack([0.0, 0.0, yaw]) + torque_ext
    inertia = params["inertia"]
    w_dot = (torque - jnp.cross(w, inertia * w)) / inertia
    q_dot = 0.5 * quat_multiply(q, jnp.concatenate([jnp.zeros((1,), w.dtype), w]))
    tau = jnp.where(motor_setpoint > motor, params["motor_tau_up"], params["motor_tau_down"])
    motor_dot = (motor_setpoint - motor) / tau
    return {
        "position": state["velocity"],
        "quaternion": q_dot,
        "velocity": accel,
        "angular_velocity": w_dot,
        "motor": motor_dot,
    }


def rk4_step(
    params: dict,
    state: dict,
    motor_setpoint: jax.Array,
    dt: float,
    force_ext: jax.Array | None = None,
    torque_ext: jax.Array | None = None,
) -> dict:
    """One classic RK4 step of length `dt`; the quaternion is renormalised afterwards."""
    force_ext = jnp.zeros(3, jnp.float32) if force_ext is None else force_ext
    torque_ext = jnp.zeros(3, jnp.float32) if torque_ext is None else torque_ext
    deriv = lambda s: state_derivative(params, s, motor_setpoint, force_ext, torque_ext)
    axpy = lambda s, d, h: jax.tree.map(lambda x, dx: x + h * dx, s, d)
    k1 = deriv(state)
    k2 = deriv(axpy(state, k1, dt / 2))
    k3 = deriv(axpy(state, k2, dt / 2))
    k4 = deriv(axpy(state, k3, dt))
    out = jax.tree.map(lambda x, a, b, c, d: x + dt / 6.0 * (a + 2 * b + 2 * c + d), state, k1, k2, k3, k4)
    q = out["quaternion"]
    return {**out, "quaternion": q / jnp.linalg.norm(q)}
