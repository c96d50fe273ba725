"""Wrapper semantics on a tiny pure-JAX probe env (compiles in well under a second)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robojax.envs import (
    ActionRepeat,
    ArraySpec,
    AutoResetWrapper,
    DomainRandomization,
    Env,
    EnvState,
    EpisodeStatistics,
    TimeLimit,
    Uniform,
    VmapWrapper,
)


class CounterEnv(Env):
    """obs = [count, start]; each step adds `gain * action` to count and pays reward 1;
    terminates once count reaches `goal`. The start value is random on every reset."""

    def __init__(self, goal: float = 5.0):
        self.goal = goal

    @property
    def observation_spec(self):
        return ArraySpec((2,), np.float32)

    @property
    def action_spec(self):
        return ArraySpec((1,), np.float32, -1.0, 1.0)

    def nominal_dynamics(self):
        return {"gain": np.float32(1.0)}

    def reset(self, key):
        k1, k2 = jax.random.split(key)
        start = jax.random.uniform(k1, (), minval=-3.0, maxval=0.0)
        return EnvState(
            physics=start,
            obs=jnp.stack([start, start]),
            reward=jnp.zeros(()),
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            episode={"start": start},
            info={"success": jnp.zeros((), bool)},
            rng=k2,
        )

    def step(self, state, action):
        gain = state.dynamics.get("gain", 1.0)
        count = state.physics + gain * action[0]
        done = count >= self.goal
        return state.replace(
            physics=count,
            obs=jnp.stack([count, state.episode["start"]]),
            reward=jnp.ones(()),
            terminated=done,
            truncated=jnp.zeros((), bool),
            info={**state.info, "success": done},
        )


def _rollout(env, key, actions):
    state = env.reset(key)

    def body(s, a):
        s = env.step(s, a)
        return s, s

    return jax.lax.scan(body, state, actions)


def test_time_limit_truncates_and_never_marks_termination_as_truncation():
    env = TimeLimit(CounterEnv(goal=3.0), max_steps=4)
    state = env.reset(jax.random.key(0)).replace(physics=jnp.asarray(0.0))
    flags = []
    for _ in range(4):
        state = env.step(state, jnp.array([0.0]))
        flags.append((bool(state.terminated), bool(state.truncated)))
    assert flags == [(False, False)] * 3 + [(False, True)]
    # Terminating exactly on the last allowed step counts as termination only.
    state = env.reset(jax.random.key(0)).replace(physics=jnp.asarray(0.0))
    for _ in range(3):
        state = env.step(state, jnp.array([0.0]))
    state = env.step(state.replace(physics=jnp.asarray(2.5)), jnp.array([1.0]))
    assert bool(state.terminated) and not bool(state.truncated)


def test_time_limit_rejects_non_positive():
    with pytest.raises(ValueError, match="positive"):
        TimeLimit(CounterEnv(), 0)


def test_autoreset_keeps_final_obs_and_draws_fresh_starts():
    env = AutoResetWrapper(EpisodeStatistics(TimeLimit(CounterEnv(goal=100.0), max_steps=3)))
    _, traj = jax.jit(lambda k: _rollout(env, k, jnp.ones((12, 1))))(jax.random.key(1))
    done = np.asarray(traj.done)
    assert done.tolist() == [False, False, True] * 4
    final_obs, obs = np.asarray(traj.info["final_obs"]), np.asarray(traj.obs)
    starts = obs[done, 1]
    # final obs is the pre-reset observation: start + 3 steps of +1
    np.testing.assert_allclose(final_obs[done, 0], final_obs[done, 1] + 3.0, rtol=1e-6)
    # the returned obs after a done step is a reset obs (count == start)
    np.testing.assert_allclose(obs[done, 0], obs[done, 1])
    # non-done steps: final_obs == obs
    np.testing.assert_array_equal(final_obs[~done], obs[~done])
    # every reset draws a new random start (no cached first state)
    assert len(np.unique(np.round(starts, 6))) == len(starts)
    # episode statistics describe the finished episode
    np.testing.assert_allclose(np.asarray(traj.info["episode_return"])[done], 3.0)
    np.testing.assert_array_equal(np.asarray(traj.info["episode_length"])[done], 3)


def test_batched_autoreset_resets_only_finished_envs():
    env = AutoResetWrapper(VmapWrapper(EpisodeStatistics(CounterEnv(goal=1.0)), num_envs=3))
    state = env.reset(jax.random.key(2))
    state = state.replace(physics=jnp.array([0.5, -5.0, 0.2]))
    nxt = jax.jit(env.step)(state, jnp.ones((3, 1)))
    np.testing.assert_array_equal(np.asarray(nxt.terminated), [True, False, True])
    np.testing.assert_allclose(np.asarray(nxt.info["final_obs"])[:, 0], [1.5, -4.0, 1.2], rtol=1e-6)
    # env 1 keeps going; envs 0 and 2 restarted at their new start
    assert float(nxt.physics[1]) == pytest.approx(-4.0)
    np.testing.assert_allclose(np.asarray(nxt.obs)[[0, 2], 0], np.asarray(nxt.obs)[[0, 2], 1])
    # when nobody is done, the state passes through untouched (lax.cond's skip branch)
    calm = jax.jit(env.step)(state.replace(physics=jnp.array([-9.0, -9.0, -9.0])), jnp.zeros((3, 1)))
    np.testing.assert_allclose(np.asarray(calm.physics), -9.0)


def test_vmap_rejects_wrong_batch():
    env = VmapWrapper(CounterEnv(), num_envs=4)
    state = env.reset(jax.random.key(0))
    with pytest.raises(ValueError, match=r"\(4, \.\.\.\)"):
        env.step(state, jnp.ones((3, 1)))


def test_action_repeat_sums_reward_and_stops_at_done():
    env = ActionRepeat(CounterEnv(goal=2.0), repeat=4)
    state = env.reset(jax.random.key(0)).replace(physics=jnp.asarray(0.0))
    nxt = jax.jit(env.step)(state, jnp.array([1.0]))
    # done after 2 inner steps: reward 2, count frozen at 2
    assert float(nxt.reward) == 2.0 and bool(nxt.terminated)
    assert float(nxt.physics) == 2.0
    nxt = jax.jit(env.step)(state, jnp.array([0.25]))
    assert float(nxt.reward) == 4.0 and float(nxt.physics) == 1.0


def test_domain_randomization_samples_in_range_and_changes_dynamics():
    env = VmapWrapper(DomainRandomization(CounterEnv(), {"gain": Uniform(0.5, 2.0)}), num_envs=64)
    state = jax.jit(env.reset)(jax.random.key(3))
    gains = np.asarray(state.dynamics["gain"])
    assert gains.shape == (64,) and gains.min() >= 0.5 and gains.max() <= 2.0 and gains.std() > 0.1
    nxt = jax.jit(env.step)(state, jnp.ones((64, 1)))
    np.testing.assert_allclose(np.asarray(nxt.physics - state.physics), gains, rtol=1e-6)


def test_domain_randomization_rejects_unknown_parameter():
    with pytest.raises(ValueError, match="randomisable parameters are: \\['gain'\\]"):
        DomainRandomization(CounterEnv(), {"mass": Uniform(0.5, 2.0)})


def test_autoreset_keep_dynamics_holds_each_envs_robot():
    inner = VmapWrapper(TimeLimit(DomainRandomization(CounterEnv(goal=100.0), {"gain": Uniform(0.5, 2.0)}), 2), 4)
    env = AutoResetWrapper(inner, keep_dynamics=True)
    state = env.reset(jax.random.key(0))
    gains = np.asarray(state.dynamics["gain"])
    for _ in range(5):
        state = env.step(state, jnp.ones((4, 1)))
    np.testing.assert_array_equal(np.asarray(state.dynamics["gain"]), gains)
    resampled = AutoResetWrapper(inner)
    state = resampled.reset(jax.random.key(0))
    for _ in range(2):
        state = resampled.step(state, jnp.ones((4, 1)))
    assert not np.allclose(np.asarray(state.dynamics["gain"]), gains)


def test_uniform_validates():
    with pytest.raises(ValueError, match="mode"):
        Uniform(0, 1, mode="multiply")
    with pytest.raises(ValueError, match="low"):
        Uniform(2, 1)


_MAX_STEPS = (2, 3, 5)
_PROBE = {m: AutoResetWrapper(EpisodeStatistics(TimeLimit(CounterEnv(goal=4.0), m))) for m in _MAX_STEPS}
_ROLLOUT = {m: jax.jit(lambda k, a, e=_PROBE[m]: _rollout(e, k, a)[1]) for m in _MAX_STEPS}


@settings(max_examples=25, deadline=None)
@given(
    max_steps=st.sampled_from(_MAX_STEPS),
    seed=st.integers(0, 2**31 - 1),
    actions=st.lists(st.floats(-1.0, 1.0, width=32), min_size=16, max_size=16),
)
def test_episode_bookkeeping_invariants(max_steps, seed, actions):
    """Property: every episode ends by termination xor truncation, lengths never exceed the limit,
    returns equal lengths (reward 1 per step), and final_obs differs from obs only on done steps."""
    traj = _ROLLOUT[max_steps](jax.random.key(seed), jnp.asarray(actions, jnp.float32)[:, None])
    term, trunc = np.asarray(traj.terminated), np.asarray(traj.truncated)
    assert not np.any(term & trunc)
    done = term | trunc
    length = np.asarray(traj.info["episode_length"])
    assert np.all(length[done] <= max_steps)
    np.testing.assert_array_equal(length[trunc], max_steps)
    np.testing.assert_allclose(np.asarray(traj.info["episode_return"])[done], length[done])
    same = np.all(np.asarray(traj.info["final_obs"]) == np.asarray(traj.obs), axis=-1)
    assert np.all(same[~done])
    # a terminated episode really reached the goal
    assert np.all(np.asarray(traj.info["final_obs"])[term, 0] >= 4.0)
