"""PPO losses against hand-computed values: truncation-correct GAE, clipped surrogate, value clipping."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from robojax.agents.ppo import losses


def _reference_gae(rewards, values, next_values, terminated, truncated, discount, lam):
    advantages, running = np.zeros_like(values), np.zeros_like(values[0])
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + discount * (1 - terminated[t]) * next_values[t] - values[t]
        running = delta + discount * lam * (1 - np.maximum(terminated[t], truncated[t])) * running
        advantages[t] = running
    return advantages


def test_gae_bootstraps_truncation_from_final_obs_and_not_termination():
    # Column 0: step 1 terminates (its next value 5 must be ignored), step 2 is truncated (bootstraps
    # from V(final_obs) = 7), step 3 is the rollout's last (bootstraps from 6). gamma 0.9, lambda 0.5:
    #   deltas = [1 + .9*2 - 1, 2 + 0 - 2, 3 + .9*7 - 3, 4 + .9*6 - 4] = [1.8, 0, 6.3, 5.4]
    #   A3 = 5.4; A2 = 6.3 (episode ends: trace cut); A1 = 0 (ends); A0 = 1.8 + .45 * A1 = 1.8
    # Column 1: no episode ends, so the trace runs through: A_t = delta_t + .45 A_{t+1}.
    rewards = np.array([[1, 1], [2, 0], [3, 1], [4, 2]], np.float32)
    values = np.array([[1, 0], [2, 1], [3, 2], [4, 1]], np.float32)
    next_values = np.array([[2, 1], [5, 2], [7, 1], [6, 3]], np.float32)
    terminated = np.array([[0, 0], [1, 0], [0, 0], [0, 0]], bool)
    truncated = np.array([[0, 0], [0, 0], [1, 0], [0, 0]], bool)
    advantages, targets = losses.gae(rewards, values, next_values, terminated, truncated, 0.9, 0.5)
    np.testing.assert_allclose(advantages[:, 0], [1.8, 0.0, 6.3, 5.4], rtol=1e-6)
    np.testing.assert_allclose(targets[:, 0], [2.8, 2.0, 9.3, 9.4], rtol=1e-6)
    deltas1 = [1 + 0.9 * 1 - 0, 0 + 0.9 * 2 - 1, 1 + 0.9 * 1 - 2, 2 + 0.9 * 3 - 1]
    a3 = deltas1[3]
    a2 = deltas1[2] + 0.45 * a3
    a1 = deltas1[1] + 0.45 * a2
    a0 = deltas1[0] + 0.45 * a1
    np.testing.assert_allclose(advantages[:, 1], [a0, a1, a2, a3], rtol=1e-5)
    reference = _reference_gae(rewards, values, next_values, terminated, truncated, 0.9, 0.5)
    np.testing.assert_allclose(advantages, reference, rtol=1e-5)


def test_gae_with_lambda_one_is_the_discounted_return_minus_value():
    rewards = np.array([[1.0], [1.0], [1.0]], np.float32)
    values = np.zeros((3, 1), np.float32)
    next_values = np.array([[0.0], [0.0], [10.0]], np.float32)
    no = np.zeros((3, 1), bool)
    advantages, _ = losses.gae(rewards, values, next_values, no, no, 0.5, 1.0)
    np.testing.assert_allclose(advantages[:, 0], [1 + 0.5 + 0.25 + 0.125 * 10, 1 + 0.5 + 0.25 * 10, 1 + 0.5 * 10])


def test_clipped_surrogate_on_tiny_inputs():
    ratios = np.array([1.5, 0.5, 1.1, 0.7], np.float32)
    old_log_prob = np.array([0.3, -0.2, 0.1, -1.0], np.float32)
    log_prob = old_log_prob + np.log(ratios)
    advantages = np.array([1.0, 1.0, -1.0, -1.0], np.float32)
    # min(r A, clip(r, .8, 1.2) A) = [min(1.5, 1.2), min(.5, .8), min(-1.1, -1.1), min(-.7, -.8)]
    #                              = [1.2, 0.5, -1.1, -0.8]; mean -0.05, so the loss is 0.05
    loss, clip_fraction = losses.clipped_surrogate_loss(log_prob, old_log_prob, advantages, 0.2)
    assert math.isclose(float(loss), 0.05, abs_tol=1e-6)
    assert math.isclose(float(clip_fraction), 0.75)  # |r - 1| > 0.2 for 1.5, 0.5 and 0.7
    # Gradient flows only where the unclipped term is the minimum: d loss / d log_prob = -r A / 4.
    grad = jax.grad(lambda lp: losses.clipped_surrogate_loss(lp, old_log_prob, advantages, 0.2)[0])(log_prob)
    np.testing.assert_allclose(grad, [0.0, -0.5 / 4, 1.1 / 4, 0.0], rtol=1e-5, atol=1e-7)


def test_value_loss_plain_and_clipped():
    values, old, targets = np.array([1.0, 3.0]), np.array([2.0, 2.0]), np.array([0.0, 4.0])
    assert math.isclose(float(losses.value_loss(values, old, targets)), 0.5)  # 0.5 * mean([1, 1])
    # Clipped to old +- 0.5: [1.5, 2.5], squared errors [2.25, 2.25] exceed the unclipped [1, 1].
    assert math.isclose(float(losses.value_loss(values, old, targets, clip_eps=0.5)), 1.125)


def test_gaussian_log_prob_entropy_and_nll():
    mean, log_std = jnp.zeros((1, 2)), jnp.zeros((1, 2))
    np.testing.assert_allclose(losses.gaussian_log_prob(mean, log_std, jnp.zeros((1, 2))), [-math.log(2 * math.pi)])
    x = jnp.array([[1.0, -2.0]])
    log_std = jnp.log(jnp.array([[2.0, 0.5]]))
    expected = -0.5 * (0.25 + 16.0) - math.log(2.0) - math.log(0.5) - math.log(2 * math.pi)
    np.testing.assert_allclose(losses.gaussian_log_prob(mean, log_std, x), [expected], rtol=1e-6)
    assert math.isclose(float(losses.gaussian_nll(mean, log_std, x)), -expected, rel_tol=1e-6)
    np.testing.assert_allclose(
        losses.gaussian_entropy(jnp.zeros((3,))), 1.5 * math.log(2 * math.pi * math.e), rtol=1e-6
    )


def test_normalize_advantages():
    normalized = losses.normalize(jnp.array([1.0, 2.0, 3.0, 4.0]))
    assert abs(float(normalized.mean())) < 1e-6 and math.isclose(float(normalized.std()), 1.0, rel_tol=1e-5)
