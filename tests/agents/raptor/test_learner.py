"""Distillation: BPTT imitation of a fixed teacher drops the loss; masked steps do not count."""

import jax
import jax.numpy as jnp
import numpy as np

import robojax  # noqa: F401  (XLA CPU flags before JAX initialises)
from robojax.agents.raptor import learner, networks
from robojax.agents.raptor.config import DistillConfig
from robojax.agents.raptor.losses import imitation_loss


def _linear_teacher_episodes(key, episodes=64, length=40):
    """Observation sequences and the actions of a fixed linear teacher a* = tanh(W o)."""
    obs_key, w_key = jax.random.split(key)
    obs = jax.random.normal(obs_key, (episodes, length, 22)) * 0.5
    w = jax.random.normal(w_key, (22, 4)) * 0.3
    label = jnp.tanh(obs @ w)
    valid = jnp.ones((episodes, length), bool)
    return obs, label, valid


def _episodes(obs, label, valid):
    zeros3 = jnp.zeros(obs.shape[:2] + (3,))
    return learner.Episodes(
        obs, label, label, valid, jnp.zeros(obs.shape[:1], bool), zeros3, zeros3, jnp.zeros(obs.shape[:2])
    )


def test_student_learns_a_linear_teacher():
    obs, label, valid = _linear_teacher_episodes(jax.random.PRNGKey(0))
    config = DistillConfig(batch_size=16, updates_per_epoch=50, learning_rate=1e-2)
    student = networks.student_fns(True)
    state = learner.init_distill(jax.random.PRNGKey(1), config)
    initial = float(imitation_loss(student, state.params, obs, label, valid))
    fit = jax.jit(lambda s: learner.fit_episodes(s, _episodes(obs, label, valid), config, student))
    for _ in range(6):
        state, losses = fit(state)
    final = float(imitation_loss(student, state.params, obs, label, valid))
    assert np.isfinite(final)
    assert final < 0.1 * initial, (initial, final)


def test_gradient_flows_through_time():
    """BPTT: the loss at the last step depends on the first observation through the GRU state."""
    obs, label, _ = _linear_teacher_episodes(jax.random.PRNGKey(2), episodes=2, length=10)
    student = networks.student_fns(True)
    params = student.init(jax.random.PRNGKey(3))
    last_only = jnp.zeros((2, 10), bool).at[:, -1].set(True)
    grad_obs = jax.grad(lambda o: imitation_loss(student, params, o, label, last_only))(obs)
    assert float(jnp.abs(grad_obs[:, 0]).sum()) > 0.0
    # The feedforward ablation has no memory: the first observation cannot affect the last action.
    ff = networks.student_fns(False)
    ff_params = ff.init(jax.random.PRNGKey(3))
    grad_ff = jax.grad(lambda o: imitation_loss(ff, ff_params, o, label, last_only))(obs)
    assert float(jnp.abs(grad_ff[:, 0]).sum()) == 0.0


def test_masked_steps_do_not_count():
    obs, label, valid = _linear_teacher_episodes(jax.random.PRNGKey(4), episodes=4, length=12)
    student = networks.student_fns(True)
    params = student.init(jax.random.PRNGKey(5))
    valid = valid.at[:, 6:].set(False)
    base = imitation_loss(student, params, obs, label, valid)
    garbage = label.at[:, 6:].set(100.0)
    assert float(imitation_loss(student, params, obs, garbage, valid)) == float(base)


def test_crash_causes_name_the_bound_each_crash_came_closest_to():
    from types import SimpleNamespace

    from robojax.agents.raptor import evaluate

    env = SimpleNamespace(
        unwrapped=SimpleNamespace(position_threshold_arms=20.0, velocity_threshold=2.0, angular_velocity_threshold=35.0)
    )
    obs = np.zeros((1, 4, 3, 22), np.float32)
    valid = np.ones((1, 4, 3), bool)
    valid[0, :3, 2] = False  # episodes 0-2 crash after step 1 (last valid observation: index 1)
    obs[0, 0, 1, 0] = 1.9  # position 1.9 of 20 * 0.1 = 2.0 m: 95 %
    obs[0, 1, 1, 13] = -1.99  # velocity: 99.5 %
    obs[0, 2, 1, 17] = 34.0  # angular velocity: 97 %
    obs[0, 2, 1, 12] = 1.0  # (and half the velocity bound)
    obs[0, 3, 2, 12] = 5.0  # not crashed: not counted
    crashed = np.array([[True, True, True, False]])
    zeros = np.zeros((1, 4, 3, 3), np.float32)
    episodes = learner.Episodes(
        jnp.asarray(obs),
        None,
        None,
        jnp.asarray(valid),
        jnp.asarray(crashed),
        jnp.asarray(zeros),
        jnp.asarray(zeros),
        None,
    )
    assert evaluate.crash_causes(episodes, jnp.array([0.1]), env) == {
        "position": 1,
        "velocity": 1,
        "angular_velocity": 1,
    }
    position = np.zeros((1, 4, 3, 3), np.float32)
    position[0, 3, :, 2] = -0.25  # the one surviving episode sits 0.25 m low
    episodes = episodes._replace(position=jnp.asarray(position))
    np.testing.assert_allclose(evaluate.steady_state_error(episodes, tail=2), [0.0, 0.0, 0.25])
    # Error after step 2: only step 2 counts, valid in episode 3 alone (0.25 m); none flown that late: None.
    np.testing.assert_allclose(evaluate.position_error_after(episodes, 2), 0.25)
    np.testing.assert_allclose(evaluate.position_error_after(episodes, 0), 0.75 / 9)  # 9 valid steps
    assert evaluate.position_error_after(episodes, 3) is None
