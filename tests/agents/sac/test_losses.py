"""SAC losses and the tanh-Gaussian policy against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

from robojax.agents.sac import losses
from robojax.agents.sac.networks import deterministic_action, sample_tanh_gaussian


def test_critic_target_by_hand():
    reward = jnp.array([1.0, 2.0])
    terminated = jnp.array([False, True])
    next_q_subset = jnp.array([[3.0, 5.0], [4.0, 1.0]])  # (M=2, B=2): min = [3, 1]
    next_log_prob = jnp.array([-1.0, 2.0])
    # y0 = 1 + 0.9 * (3 - 0.5 * -1) = 4.15; y1 = 2 (terminated: no bootstrap)
    y = losses.critic_target(reward, terminated, next_q_subset, next_log_prob, 0.5, 0.9, backup_entropy=True)
    np.testing.assert_allclose(y, [4.15, 2.0], rtol=1e-6)
    y = losses.critic_target(reward, terminated, next_q_subset, next_log_prob, 0.5, 0.9, backup_entropy=False)
    np.testing.assert_allclose(y, [3.7, 2.0], rtol=1e-6)


def test_critic_target_carries_no_gradient():
    grad = jax.grad(lambda q: losses.critic_target(jnp.ones(1), jnp.zeros(1, bool), q, jnp.zeros(1), 0.1, 0.9).sum())
    np.testing.assert_array_equal(grad(jnp.ones((2, 1))), 0.0)


def test_critic_loss_by_hand():
    q = jnp.array([[1.0, 2.0], [3.0, 4.0]])  # (N=2, B=2)
    target = jnp.array([1.0, 1.0])
    # member 0: mean(0.5 * [0, 1]) = 0.25; member 1: mean(0.5 * [4, 9]) = 3.25
    assert float(losses.critic_loss(q, target)) == pytest.approx(3.5)


def test_actor_loss_by_hand():
    log_prob = jnp.array([-1.0, 1.0])
    q = jnp.array([[1.0, 3.0], [3.0, 5.0]])  # ensemble mean = [2, 4]
    # mean([0.5 * -1 - 2, 0.5 * 1 - 4]) = mean([-2.5, -3.5]) = -3
    assert float(losses.actor_loss(log_prob, q, 0.5)) == pytest.approx(-3.0)


def test_temperature_loss_by_hand_and_direction():
    log_prob = jnp.array([-1.0, 1.0])  # entropy estimate 0
    assert float(losses.temperature_loss(jnp.asarray(0.5), log_prob, -0.5)) == pytest.approx(0.25)
    # entropy (0) above the target (-0.5): gradient descent lowers alpha
    grad = jax.grad(lambda log_alpha: losses.temperature_loss(jnp.exp(log_alpha), log_prob, -0.5))(jnp.log(0.5))
    assert float(grad) == pytest.approx(0.25)
    # log_prob is a constant for the temperature loss
    np.testing.assert_array_equal(jax.grad(lambda lp: losses.temperature_loss(0.5, lp, -0.5))(log_prob), 0.0)


def test_tanh_gaussian_log_prob_is_the_change_of_variables():
    mean = jnp.array([[0.3, -1.2]])
    log_std = jnp.array([[-0.5, 0.2]])
    key = jax.random.PRNGKey(3)
    action, log_prob = sample_tanh_gaussian(mean, log_std, key)
    pre_tanh = jnp.arctanh(action)
    expected = norm.logpdf(pre_tanh, mean, jnp.exp(log_std)) - jnp.log(1.0 - jnp.square(action))
    np.testing.assert_allclose(log_prob, expected.sum(-1), rtol=1e-4)
    assert action.shape == (1, 2) and bool(jnp.all(jnp.abs(action) < 1.0))
    np.testing.assert_allclose(deterministic_action(mean), jnp.tanh(mean))


def test_tanh_gaussian_log_prob_is_finite_when_saturated():
    _, log_prob = sample_tanh_gaussian(jnp.array([[30.0]]), jnp.array([[-10.0]]), jax.random.PRNGKey(0))
    assert bool(jnp.isfinite(log_prob).all())
