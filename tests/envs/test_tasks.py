"""Every registered task: specs, determinism, finite rollouts, fresh resets, time limits,
autoreset, domain randomisation, all under jit + vmap. One compiled probe per task."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from robojax.envs import Uniform

NUM_ENVS = 4
EPISODE = 7
STEPS = 16
# The quadrotor tasks are not MJX (no physics.qvel, no MJX model fields, reward not in [0, 1]):
# tests/envs/test_quadrotor.py covers the same generic checks for them.
TASKS = [name for name in envs.names() if not name.startswith("quadrotor_")]


@functools.cache
def _probe(name):
    env = envs.make(
        name,
        num_envs=NUM_ENVS,
        episode_length=EPISODE,
        domain_randomization={"body_mass": Uniform(0.5, 2.0), "dof_damping": Uniform(0.5, 2.0)},
    )
    reset = jax.jit(env.reset)

    @jax.jit
    def rollout(state, actions):
        def body(s, a):
            s = env.step(s, a)
            return s, s

        return jax.lax.scan(body, state, actions)[1]

    return env, reset, rollout


def _simulate(name, seed=0):
    env, reset, rollout = _probe(name)
    k_reset, k_act = jax.random.split(jax.random.key(seed))
    state = reset(k_reset)
    spec = env.action_spec
    actions = jax.random.uniform(k_act, (STEPS, NUM_ENVS) + spec.shape, minval=spec.low, maxval=spec.high)
    traj = rollout(state, actions)
    # Same physics, same actions, different dynamics (reusing the compiled rollout).
    same_physics = jax.tree.map(lambda x: jnp.broadcast_to(x[:1], x.shape), state).replace(dynamics=state.dynamics)
    pushed = jax.tree.map(lambda x: x[0], rollout(same_physics, jnp.broadcast_to(actions[:, :1], actions.shape)))
    return env, (state, traj, pushed)


_run = functools.lru_cache(maxsize=None)(_simulate)  # shared by the read-only tests below


@pytest.mark.parametrize("name", TASKS)
def test_specs_shapes_dtypes_and_finiteness(name):
    env, (state, traj, _) = _run(name)
    obs_spec, act_spec = env.observation_spec, env.action_spec
    assert state.obs.shape == (NUM_ENVS,) + obs_spec.shape and state.obs.dtype == obs_spec.dtype
    assert traj.obs.shape == (STEPS, NUM_ENVS) + obs_spec.shape and traj.obs.dtype == obs_spec.dtype
    assert act_spec.is_bounded and np.all(act_spec.low == -1) and np.all(act_spec.high == 1)
    assert traj.reward.shape == (STEPS, NUM_ENVS) and traj.reward.dtype == jnp.float32
    assert traj.terminated.dtype == jnp.bool_ and traj.truncated.dtype == jnp.bool_
    assert traj.info["success"].dtype == jnp.bool_
    for leaf in jax.tree.leaves((traj.obs, traj.reward, traj.info["final_obs"], traj.metrics)):
        assert np.all(np.isfinite(np.asarray(leaf))), name
    reward = np.asarray(traj.reward)
    assert reward.min() >= 0.0 and reward.max() <= 1.0, "rewards are in [0, 1] per step"


@pytest.mark.parametrize("name", TASKS)
def test_deterministic_for_a_key(name):
    _, (_, a, _) = _simulate(name, seed=5)  # two independent runs, not the cache
    _, (_, b, _) = _simulate(name, seed=5)
    a, b = a.replace(rng=jax.random.key_data(a.rng)), b.replace(rng=jax.random.key_data(b.rng))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    _, (_, c, _) = _simulate(name, seed=6)
    assert not np.array_equal(np.asarray(a.obs), np.asarray(c.obs))


@pytest.mark.parametrize("name", TASKS)
def test_random_initial_state_on_every_reset(name):
    _, (state, traj, _) = _run(name)
    init = np.asarray(state.obs)
    assert len({tuple(np.round(o, 5)) for o in init}) == NUM_ENVS, "envs start in different states"
    done = np.asarray(traj.done)
    after_reset = np.asarray(traj.obs)[done]
    starts = np.concatenate([init, after_reset])
    assert len({tuple(np.round(o, 5)) for o in starts}) == len(starts), "each reset is fresh"


@pytest.mark.parametrize("name", TASKS)
def test_time_limit_truncates_and_autoreset_keeps_final_obs(name):
    _, (_, traj, _) = _run(name)
    term, trunc = np.asarray(traj.terminated), np.asarray(traj.truncated)
    assert not np.any(term & trunc)
    alive = ~np.cumsum(term, axis=0).astype(bool)
    # without terminations, every env is truncated at steps 7 and 14
    assert np.all(trunc[EPISODE - 1][alive[EPISODE - 1]])
    done = term | trunc
    final_obs, obs = np.asarray(traj.info["final_obs"]), np.asarray(traj.obs)
    np.testing.assert_array_equal(final_obs[~done], obs[~done])
    assert not np.allclose(final_obs[done], obs[done]), "final obs differs from the reset obs"
    length = np.asarray(traj.info["episode_length"])[trunc]
    np.testing.assert_array_equal(length, EPISODE)


@pytest.mark.parametrize("name", TASKS)
def test_domain_randomization_changes_dynamics(name):
    _, (state, _, pushed) = _run(name)
    mass = np.asarray(state.dynamics["body_mass"])
    assert mass.shape[0] == NUM_ENVS and not np.allclose(mass[0], mass[1])
    qvel = np.asarray(pushed.physics.qvel)
    assert not np.allclose(qvel[0], qvel[1], atol=1e-7), "different masses, same push, same motion?"


def test_diverged_simulation_terminates_with_finite_outputs():
    env = envs.make("pendulum_swingup")
    state = env.reset(jax.random.key(0))
    broken = state.replace(physics=state.physics.replace(qvel=jnp.full_like(state.physics.qvel, jnp.nan)))
    nxt = jax.jit(env.step)(broken, jnp.zeros(1))
    assert bool(nxt.terminated) and not bool(nxt.truncated)
    assert np.all(np.isfinite(np.asarray(nxt.obs))) and float(nxt.reward) == 0.0


def test_registry_unknown_name_suggests_and_lists():
    with pytest.raises(ValueError) as err:
        envs.make("cartpole_balanse")
    msg = str(err.value)
    assert "'cartpole_balance'" in msg and "Valid names" in msg and "pendulum_swingup" in msg


def test_registry_unknown_override_is_named():
    with pytest.raises((TypeError, ValueError), match="control_dtt"):
        envs.make("reacher", control_dtt=0.1)


def test_registry_bad_control_dt():
    with pytest.raises(ValueError, match="multiple of the physics timestep"):
        envs.make("cartpole_balance", control_dt=0.015)


def test_gymnasium_ids_registered():
    import gymnasium

    for name in TASKS:
        assert envs.gymnasium_id(name) in gymnasium.registry
