"""PPO losses and returns as pure functions of arrays (Schulman et al. 2016, 2017).

Shapes: T = rollout steps (time-major), B = envs or a minibatch, A = action dims.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def gaussian_log_prob(mean: jax.Array, log_std: jax.Array, x: jax.Array) -> jax.Array:
    """log N(x; mean, exp(log_std)^2), summed over the trailing action axis."""
    z = (x - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * jnp.square(z) - log_std - _HALF_LOG_2PI, axis=-1)


def gaussian_entropy(log_std: jax.Array) -> jax.Array:
    """Entropy of a diagonal Gaussian, summed over the trailing action axis."""
    return jnp.sum(log_std + 0.5 + _HALF_LOG_2PI, axis=-1)


def gaussian_nll(mean: jax.Array, log_std: jax.Array, x: jax.Array) -> jax.Array:
    """Mean negative log-likelihood of targets x (behaviour cloning)."""
    return -jnp.mean(gaussian_log_prob(mean, log_std, x))


def gae(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    discount: float,
    gae_lambda: float,
) -> tuple[jax.Array, jax.Array]:
    """Truncation-correct GAE(lambda): (advantages, value targets), each (T, B).

    next_values[t] = V(info["final_obs"][t]): the value of the observation step t reached, *before*
    any autoreset, which is V(obs[t+1]) within an episode and the finished episode's last state at
    its end. So the one-step error is
        delta_t = r_t + gamma (1 - terminated_t) V(final_obs_t) - V(obs_t):
    a truncated step bootstraps from its final observation, a terminated one does not. The trace
    A_t = delta_t + gamma lambda (1 - done_t) A_{t+1} stops at either end of an episode, since
    step t+1 belongs to the next one; past the rollout's last step it is 0 (the bootstrap there is
    already in delta).
    """
    not_terminated = 1.0 - terminated.astype(values.dtype)
    not_done = 1.0 - jnp.logical_or(terminated, truncated).astype(values.dtype)
    deltas = rewards + discount * not_terminated * next_values - values

    def backward(advantage, xs):
        delta, continues = xs
        advantage = delta + discount * gae_lambda * continues * advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(values[0]), (deltas, not_done), reverse=True)
    return advantages, advantages + values


def normalize(advantages: jax.Array, eps: float = 1e-8) -> jax.Array:
    """Zero mean, unit standard deviation."""
    return (advantages - advantages.mean()) / (advantages.std() + eps)


def clipped_surrogate_loss(
    log_prob: jax.Array, old_log_prob: jax.Array, advantages: jax.Array, clip_eps: float
) -> tuple[jax.Array, jax.Array]:
    """-E[min(r A, clip(r, 1 - eps, 1 + eps) A)], r = pi/pi_old (PPO eq. 7); and the clipped fraction."""
    ratio = jnp.exp(log_prob - old_log_prob)
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    clip_fraction = jnp.mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32))
    return -jnp.mean(jnp.minimum(unclipped, clipped)), clip_fraction


def value_loss(
    values: jax.Array, old_values: jax.Array, targets: jax.Array, clip_eps: float | None = None
) -> jax.Array:
    """E[1/2 (V - target)^2]; with clip_eps, the pessimistic max against V clipped to old +- eps
    (the PPO2 baselines variant)."""
    loss = jnp.square(values - targets)
    if clip_eps is not None:
        clipped = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
        loss = jnp.maximum(loss, jnp.square(clipped - targets))
    return 0.5 * jnp.mean(loss)
