"""robojax.tasks.arm computes the same reward / success / termination on numpy and jax.numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import robojax  # noqa: F401
from robojax.envs.rewards import tolerance
from robojax.tasks import arm as arm_task


def test_gaussian_tolerance_matches_rewards_tolerance():
    x = np.concatenate([np.linspace(0.0, 1.0, 101), [0.03, 0.0300001, 0.04]]).astype(np.float32)
    for upper, margin in [(0.03, 0.4), (0.04, 0.3), (0.03, 0.35)]:
        want = np.asarray(jax.jit(lambda v, upper=upper, margin=margin: tolerance(v, (0.0, upper), margin=margin))(x))
        got_jnp = np.asarray(
            jax.jit(lambda v, upper=upper, margin=margin: arm_task.gaussian_tolerance(jnp, v, upper, margin))(x)
        )
        np.testing.assert_array_equal(got_jnp, want)  # bit-identical to the env's former reward
        got_np = np.array([arm_task.gaussian_tolerance(np, float(v), upper, margin) for v in x])
        np.testing.assert_allclose(got_np, want, rtol=1e-6, atol=1e-7)


def _readings(task, rng, n):
    """Random states around the task region, some of them placed / released / in the keep-out box."""
    for _ in range(n):
        cube = np.array([rng.uniform(0.3, 0.75), rng.uniform(-0.1, 0.1), rng.choice([0.02, 0.025, 0.08])])
        target = np.array([0.66, 0.0, 0.02]) + np.append(rng.normal(0, 0.02, 2), 0.0)
        if rng.uniform() < 0.4:  # the cube on the target
            cube[:2] = target[:2] + rng.normal(0, 0.01, 2)
        elif rng.uniform() < 0.1:  # off the table
            cube[0] = 0.95
        ee = cube + rng.normal(0, 0.05, 3)
        qpos = np.concatenate([rng.normal(0, 0.5, 7), [rng.uniform(0, 0.04)] * 2, cube, [1, 0, 0, 0]])
        reading = arm_task.read_state(
            qpos, rng.normal(0, 0.1, 15), ee, np.eye(3), cube if task.name != "arm_reach" else None, 9, 9
        )
        episode = {
            "target": target if task.name != "arm_reach" else ee + rng.normal(0, 0.05, 3),
            "goal": np.append(target[:2], 0.0),
        }
        yield reading, episode


@pytest.mark.parametrize("task", list(arm_task.TASKS.values()), ids=list(arm_task.TASKS))
def test_numpy_and_jax_agree(task):
    rng = np.random.default_rng(0)
    successes = terminations = 0
    for reading, episode in _readings(task, rng, 200):
        as32 = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), (reading, episode))
        r_np, m_np = task.task_reward(np, reading, episode)
        r_j, m_j = task.task_reward(jnp, *as32)
        assert abs(float(r_np) - float(r_j)) < 1e-5
        for k in m_np:
            assert abs(float(m_np[k]) - float(m_j[k])) < 1e-5, k
        s_np, s_j = bool(task.task_success(np, reading, episode)), bool(task.task_success(jnp, *as32))
        t_np, t_j = bool(task.task_terminated(np, reading, episode)), bool(task.task_terminated(jnp, *as32))
        assert (s_np, t_np) == (s_j, t_j)
        successes += s_np
        terminations += t_np
        np.testing.assert_allclose(
            task.task_observation(np, reading, episode), task.task_observation(jnp, *as32), atol=1e-6
        )
        assert task.task_observation(np, reading, episode).shape == (task.obs_dim,)
    assert successes > 0  # the comparison covered the success branch
    if task is not arm_task.Reach:
        assert terminations > 0
