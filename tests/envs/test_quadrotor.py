"""Quadrotor simulator: dynamics sanity, integrator invariants, parameter ranges, env API."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import envs
import robojax  # noqa: F401  (XLA flags before JAX initialises)
from envs import quadrotor as Q
from envs.quadrotor import dynamics as dyn
from envs.quadrotor import env as qenv
from robojax.envs import AutoResetWrapper

DT = 0.01


def _body(
    position=(0.0, 0.0, 0.0),
    quaternion=(1.0, 0.0, 0.0, 0.0),
    velocity=(0.0, 0.0, 0.0),
    angular_velocity=(0.0, 0.0, 0.0),
    motor=(0.0, 0.0, 0.0, 0.0),
):
    f = lambda x: jnp.asarray(x, jnp.float32)
    return {
        "position": f(position),
        "quaternion": f(quaternion),
        "velocity": f(velocity),
        "angular_velocity": f(angular_velocity),
        "motor": f(motor),
    }


def _rollout(params, body, setpoint, n, torque_ext=None):
    """n RK4 steps at 100 Hz with a constant motor set-point; returns the stacked states."""

    def f(b, tq):
        b = dyn.rk4_step(params, b, setpoint, DT, None, tq)
        return b, b

    tq = jnp.zeros((n, 3), jnp.float32) if torque_ext is None else torque_ext
    _, traj = jax.jit(lambda b, t: jax.lax.scan(f, b, t))(body, tq)
    return traj


def test_hover_thrust_holds_altitude_nominal():
    params = Q.nominal_parameters()
    m_hover = Q.hover_motor_speed(params)
    np.testing.assert_allclose(4 * Q.thrust(params, m_hover), params["mass"] * Q.GRAVITY, rtol=1e-5)
    traj = _rollout(params, _body(motor=[m_hover] * 4), jnp.full(4, m_hover), 200)  # 2 s
    assert np.max(np.abs(np.asarray(traj["position"]))) < 1e-3
    assert np.max(np.abs(np.asarray(traj["angular_velocity"]))) < 1e-3


def test_hover_thrust_holds_altitude_sampled_quadrotors():
    params = jax.vmap(Q.sample_parameters)(jax.random.split(jax.random.PRNGKey(3), 16))
    m_hover = jax.vmap(Q.hover_motor_speed)(params)
    assert np.all((np.asarray(m_hover) > 0) & (np.asarray(m_hover) < 1))
    body = jax.vmap(lambda m: _body(motor=jnp.full(4, m)))(m_hover)
    traj = jax.vmap(lambda p, b, m: _rollout(p, b, jnp.full(4, m), 200))(params, body, m_hover)
    assert np.max(np.abs(np.asarray(traj["position"]))) < 1e-2


def test_free_fall_without_thrust():
    t = DT * np.arange(1, 101)
    # Thrust curve zeroed: exact ballistic fall.
    params = {**Q.nominal_parameters(), "thrust_curve": jnp.zeros(3, jnp.float32)}
    traj = _rollout(params, _body(position=(0, 0, 10.0)), jnp.zeros(4), 100)
    np.testing.assert_allclose(np.asarray(traj["position"][:, 2]), 10.0 - 0.5 * Q.GRAVITY * t**2, atol=2e-4)
    np.testing.assert_allclose(np.asarray(traj["position"][:, :2]), 0.0, atol=1e-6)
    # Motors off on the real curve: only the curve's idle thrust c0 per motor opposes gravity.
    params = Q.nominal_parameters()
    accel = Q.GRAVITY - 4 * float(params["thrust_curve"][0]) / float(params["mass"])
    traj = _rollout(params, _body(position=(0, 0, 10.0)), jnp.zeros(4), 100)
    np.testing.assert_allclose(np.asarray(traj["position"][:, 2]), 10.0 - 0.5 * accel * t**2, atol=2e-4)


def test_motor_first_order_asymmetric_time_constants():
    params = Q.make_parameters(motor_tau_up=0.05, motor_tau_down=0.2)
    up = _rollout(params, _body(motor=[0.0] * 4), jnp.ones(4), 10)["motor"][-1, 0]
    down = _rollout(params, _body(motor=[1.0] * 4), jnp.zeros(4), 10)["motor"][-1, 0]
    np.testing.assert_allclose(up, 1 - math.exp(-0.1 / 0.05), atol=1e-4)
    np.testing.assert_allclose(down, math.exp(-0.1 / 0.2), atol=1e-4)


def test_rotation_stays_orthonormal_under_random_torque():
    params = Q.nominal_parameters()
    m_hover = Q.hover_motor_speed(params)
    tq = 2e-4 * jax.random.normal(jax.random.PRNGKey(0), (3000, 3))  # 30 s of random torques
    traj = _rollout(params, _body(motor=[m_hover] * 4), jnp.full(4, m_hover), 3000, tq)
    rot = np.asarray(Q.quat_to_rotation(traj["quaternion"]), np.float64)
    assert np.max(np.abs(rot[-1] - np.eye(3))) > 0.1  # it really rotated
    assert np.max(np.abs(np.asarray(traj["angular_velocity"]))) > 1.0
    err = np.einsum("nij,nik->njk", rot, rot) - np.eye(3)
    assert np.max(np.abs(err)) < 1e-5
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-5)


def test_torque_free_body_conserves_angular_momentum_and_energy():
    # Asymmetric inertia and a generic spin: omega precesses in the body frame, but the world-frame
    # angular momentum R J omega and the kinetic energy omega.J.omega / 2 are invariants.
    params = {
        **Q.nominal_parameters(),
        "thrust_curve": jnp.zeros(3, jnp.float32),
        "inertia": jnp.asarray([1.0, 2.0, 3.0], jnp.float32),
    }
    w0 = (1.0, 0.2, 0.8)
    traj = _rollout(params, _body(angular_velocity=w0), jnp.zeros(4), 1000)  # 10 s
    w = np.asarray(traj["angular_velocity"], np.float64)
    rot = np.asarray(Q.quat_to_rotation(traj["quaternion"]), np.float64)
    inertia = np.array([1.0, 2.0, 3.0])
    momentum = np.einsum("nij,nj->ni", rot, w * inertia)
    energy = 0.5 * np.sum(inertia * w * w, axis=-1)
    l0, e0 = np.asarray(w0) * inertia, 0.5 * np.sum(inertia * np.asarray(w0) ** 2)
    assert np.max(np.abs(w - np.asarray(w0))) > 0.1  # the body frame spin really changes
    np.testing.assert_allclose(momentum, np.broadcast_to(l0, momentum.shape), atol=1e-4 * np.linalg.norm(l0))
    np.testing.assert_allclose(energy, e0, rtol=1e-4)


_sample = jax.jit(Q.sample_parameters)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_parameter_sampling_within_paper_ranges(seed):
    p = {k: np.asarray(v, np.float64) for k, v in _sample(jax.random.PRNGKey(seed)).items()}
    r, eps = Q.RANGES, 1e-4
    inside = lambda x, name: r[name][0] * (1 - eps) <= x <= r[name][1] * (1 + eps)
    assert set(p) == set(Q.PARAMETER_NAMES)
    for name in ("thrust_to_weight", "mass", "torque_to_inertia", "torque_constant", "motor_tau_up", "motor_tau_down"):
        assert inside(float(p[name]), name), (name, p[name])
    # mass-size ratio cbrt(m) / l within 7.90 * (1 +- 0.1)
    ratio = np.cbrt(p["mass"]) / p["arm_length"]
    assert 7.90 * 0.9 * (1 - eps) <= ratio <= 7.90 * 1.1 * (1 + eps)
    # thrust curve: Crazyflie shape, 4 f(1) = r_t2w m g
    np.testing.assert_allclose(4 * p["thrust_curve"].sum(), p["thrust_to_weight"] * p["mass"] * Q.GRAVITY, rtol=1e-5)
    np.testing.assert_allclose(p["thrust_curve"] / p["thrust_curve"].sum(), dyn.THRUST_CURVE_SHAPE, rtol=1e-5)
    # inertia from the torque-to-inertia ratio
    max_torque = p["thrust_curve"].sum() * math.sqrt(2) * p["arm_length"]
    np.testing.assert_allclose(p["inertia"][:2], max_torque / p["torque_to_inertia"], rtol=1e-5)
    np.testing.assert_allclose(p["inertia"][2], 1.832 * p["inertia"][0], rtol=1e-5)
    assert 0.0 <= p["disturbance_std"] <= 0.1 * (p["thrust_to_weight"] - 1) + 1e-6
    np.testing.assert_allclose(np.linalg.norm(p["rotor_positions"], axis=-1), p["arm_length"], rtol=1e-5)


def test_reset_and_step_under_jit_and_vmap():
    n = 16
    env = envs.make("quadrotor_track", num_envs=n, episode_length=40)
    state = jax.jit(env.reset)(jax.random.PRNGKey(0))
    assert state.obs.shape == (n, Q.OBS_SIZE) and state.info["teacher_obs"].shape == (n, Q.TEACHER_OBS_SIZE)
    assert env.observation_spec.shape == (22,) and env.action_spec.shape == (4,)
    # distinct quadrotors per env
    assert len(np.unique(np.asarray(state.dynamics["mass"]))) == n

    def body(s, k):
        a = jax.random.uniform(k, (n, 4), minval=-1, maxval=1)
        s2 = env.step(s, a)
        return s2, (s2.obs, s2.info["final_obs"], s2.info["teacher_obs"], s2.physics, a, s2.done)

    keys = jax.random.split(jax.random.PRNGKey(1), 60)
    state, (obs, final_obs, teacher, phys, acts, done) = jax.jit(lambda s: jax.lax.scan(body, s, keys))(state)
    assert np.all(np.isfinite(np.asarray(obs)))
    assert np.asarray(done).any()  # crashes under random actions and time limit at 40
    final_obs, teacher, acts = np.asarray(final_obs), np.asarray(teacher), np.asarray(acts)
    phys = jax.tree.map(np.asarray, phys)
    # observation layout: [p_rel, R, v_rel, omega, previous action]; teacher adds motor speeds
    np.testing.assert_allclose(final_obs[..., qenv.OBS_PREVIOUS_ACTION], acts, atol=1e-6)
    np.testing.assert_allclose(teacher[..., :22], final_obs, atol=1e-6)
    rot = final_obs[..., qenv.OBS_ROTATION].reshape(*final_obs.shape[:2], 3, 3)
    np.testing.assert_allclose(
        np.einsum("...ij,...ik->...jk", rot, rot), np.broadcast_to(np.eye(3), rot.shape), atol=1e-5
    )
    live = ~np.asarray(done)
    np.testing.assert_allclose(final_obs[live][:, qenv.OBS_ANGULAR_VELOCITY], phys["angular_velocity"][live], atol=1e-6)
    np.testing.assert_allclose(teacher[live][:, qenv.OBS_MOTOR], 2 * phys["motor"][live] - 1, atol=1e-6)
    # ... and the episode's standardised disturbance draw, constant over an episode
    np.testing.assert_allclose(teacher[live][:, qenv.OBS_DISTURBANCE], phys["force_noise"][live], atol=1e-6)
    assert np.abs(teacher[..., qenv.OBS_DISTURBANCE]).max() <= 3.0


def test_tracking_observation_is_relative_to_reference():
    task = Q.QuadrotorTrack(randomize=False)
    state = task.reset(jax.random.PRNGKey(4))
    for _ in range(30):
        state = task.step(state, jnp.zeros(4))
    t = 30 * DT
    ref_p, ref_v = task.reference(state.episode, jnp.float32(t))
    np.testing.assert_allclose(state.obs[:3], state.physics["position"] - ref_p, atol=1e-6)
    np.testing.assert_allclose(state.obs[12:15], state.physics["velocity"] - ref_v, atol=1e-6)
    # the reference velocity is the derivative of the reference position, and it starts at 0
    h = 1e-3
    fd = (
        task.reference(state.episode, jnp.float32(t + h))[0] - task.reference(state.episode, jnp.float32(t - h))[0]
    ) / (2 * h)
    np.testing.assert_allclose(fd, ref_v, atol=2e-3)
    np.testing.assert_allclose(task.reference(state.episode, jnp.float32(0.0))[0], 0.0, atol=1e-6)
    assert float(jnp.linalg.norm(ref_p)) > 0


def test_termination_reward_and_success():
    task = Q.QuadrotorHover(randomize=False)
    state = task.reset(jax.random.PRNGKey(0))
    far = 21 * float(state.dynamics["arm_length"])
    state = state.replace(physics={**state.physics, "position": jnp.asarray([far, 0, 0], jnp.float32)})
    nxt = task.step(state, jnp.zeros(4))
    assert bool(nxt.terminated) and not bool(nxt.info["success"])
    assert float(nxt.reward) < -90
    # at the target, level and still, with an unchanged command: reward close to the 1.5 bonus
    state = Q.QuadrotorHover(randomize=False, init_at_target_probability=1.0).reset(jax.random.PRNGKey(0))
    m = Q.hover_motor_speed(state.dynamics)
    a = jnp.full(4, 2 * m - 1)
    state = state.replace(physics={**state.physics, "motor": jnp.full(4, m), "previous_action": a})
    nxt = task.step(state, a)
    assert not bool(nxt.terminated) and bool(nxt.info["success"])
    np.testing.assert_allclose(float(nxt.reward), 1.5, atol=1e-3)


def test_reset_with_parameters_and_keep_dynamics():
    n = 4
    params = jax.vmap(Q.sample_parameters)(jax.random.split(jax.random.PRNGKey(7), n))
    env = envs.make("quadrotor_hover", num_envs=n, episode_length=5, autoreset=False)
    env = AutoResetWrapper(env, keep_dynamics=True)
    state = Q.reset_with_parameters(env, jax.random.PRNGKey(0), params)
    made = envs.make("quadrotor_hover", num_envs=n, episode_length=5)
    state2 = made.reset_with_parameters(jax.random.PRNGKey(0), params)
    assert set(state2.episode) >= {"steps", "return"} and "final_obs" in state2.info
    step = jax.jit(env.step)
    for _ in range(12):  # two time-limit resets
        state = step(state, jnp.zeros((n, 4)))
    for k in params:
        np.testing.assert_array_equal(np.asarray(state.dynamics[k]), np.asarray(params[k]))
    # a randomising env draws new quadrotors on reset; nominal when randomize=False
    nominal = envs.make("quadrotor_hover", randomize=False).reset(jax.random.PRNGKey(0))
    np.testing.assert_allclose(nominal.dynamics["mass"], 0.027)
    with pytest.raises(ValueError, match="batched"):
        Q.QuadrotorHover().reset_with_parameters(jax.random.PRNGKey(0), params)


def test_deterministic_fresh_resets_time_limit_and_final_obs():
    # The generic task checks of tests/envs/test_tasks.py (which randomise MJX model fields and
    # expect rewards in [0, 1], so they do not apply to this paper-scale, non-MJX task).
    n, episode = 4, 7
    env = envs.make("quadrotor_hover", num_envs=n, episode_length=episode)

    @jax.jit
    def run(key):
        k1, k2 = jax.random.split(key)
        s0 = env.reset(k1)
        hover = 2 * jax.vmap(Q.hover_motor_speed)(s0.dynamics) - 1

        def body(s, k):
            a = jnp.clip(hover[:, None] + 0.05 * jax.random.normal(k, (n, 4)), -1, 1)
            s = env.step(s, a)
            return s, s

        return s0, jax.lax.scan(body, s0, jax.random.split(k2, 16))[1]

    s0, traj = run(jax.random.PRNGKey(5))
    _, again = run(jax.random.PRNGKey(5))
    _, other = run(jax.random.PRNGKey(6))
    np.testing.assert_array_equal(np.asarray(traj.obs), np.asarray(again.obs))
    assert not np.array_equal(np.asarray(traj.obs), np.asarray(other.obs))
    term, trunc = np.asarray(traj.terminated), np.asarray(traj.truncated)
    assert not np.any(term & trunc)
    assert trunc.any()
    done = term | trunc
    final_obs, obs = np.asarray(traj.info["final_obs"]), np.asarray(traj.obs)
    np.testing.assert_array_equal(final_obs[~done], obs[~done])
    assert not np.allclose(final_obs[done], obs[done])
    np.testing.assert_array_equal(np.asarray(traj.info["episode_length"])[trunc], episode)
    assert np.all(np.asarray(traj.info["episode_success"])[trunc])
    assert not np.any(np.asarray(traj.info["episode_success"])[term])
    starts = np.concatenate([np.asarray(s0.obs), obs[done]])
    assert len({tuple(np.round(o, 5)) for o in starts}) == len(starts), "each reset is fresh"
    # new quadrotors after autoreset (randomize=True, keep_dynamics off)
    assert not np.allclose(np.asarray(traj.dynamics["mass"][-1]), np.asarray(s0.dynamics["mass"]))


def test_survivable_starts_tells_recoverable_from_hopeless_starts():
    """At rest on the target every start is survivable; with a velocity bound far below the start
    velocities (up to 1 m/s per axis) no action sequence avoids the crash."""
    from envs.quadrotor.feasibility import survivable_starts

    params = jax.vmap(Q.sample_parameters)(jax.random.split(jax.random.PRNGKey(0), 2))
    keys = jax.random.split(jax.random.PRNGKey(1), (2, 2))
    kwargs = dict(horizon=10, iterations=20, restarts=1)
    at_rest = Q.QuadrotorHover(init_at_target_probability=1.0)
    assert np.asarray(survivable_starts(at_rest, params, keys, **kwargs)).all()
    hopeless = Q.QuadrotorHover(init_at_target_probability=0.0, velocity_threshold=0.01)
    assert not np.asarray(survivable_starts(hopeless, params, keys, **kwargs)).any()
    with pytest.raises(ValueError, match="quadrotors"):
        survivable_starts(at_rest, params, keys[:1], **kwargs)
