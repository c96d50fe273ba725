"""SAC losses as pure functions of arrays (Haarnoja et al. 2018, "SAC: Algorithms and Applications").

Shapes: B = batch, N = critic ensemble size, M = target subset size.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def critic_target(
    reward: jax.Array,
    terminated: jax.Array,
    next_q_subset: jax.Array,
    next_log_prob: jax.Array,
    temperature: jax.Array,
    discount: float,
    backup_entropy: bool = True,
) -> jax.Array:
    """Soft Bellman target y = r + gamma (1 - terminated) (min_M Qbar(s',a') - alpha log pi(a'|s')).

    next_q_subset: (M, B) target-critic values of the REDQ subset (Chen et al. 2021, eq. 3).
    Only `terminated` stops the bootstrap: a time-limit truncation still bootstraps from s'.
    """
    next_value = jnp.min(next_q_subset, axis=0)
    if backup_entropy:
        next_value = next_value - temperature * next_log_prob  # SAC eq. 3: V(s') = E[Q - alpha log pi]
    not_terminal = 1.0 - terminated.astype(reward.dtype)
    return jax.lax.stop_gradient(reward + discount * not_terminal * next_value)


def critic_loss(q: jax.Array, target: jax.Array) -> jax.Array:
    """Sum over ensemble members of E_B[1/2 (Q_i(s,a) - y)^2] (SAC eq. 5, one term per critic).

    q: (N, B) predictions; target: (B,).
    """
    return jnp.sum(0.5 * jnp.mean(jnp.square(q - target[None]), axis=1))


def actor_loss(log_prob: jax.Array, q: jax.Array, temperature: jax.Array) -> jax.Array:
    """E_B[alpha log pi(a~|s) - mean_N Q_i(s, a~)] (SAC eq. 7; REDQ averages the ensemble, Alg. 1 l.13).

    log_prob: (B,); q: (N, B) for the reparameterised actions a~.
    """
    return jnp.mean(temperature * log_prob - jnp.mean(q, axis=0))


def temperature_loss(temperature: jax.Array, log_prob: jax.Array, target_entropy: float) -> jax.Array:
    """E_B[-alpha (log pi(a|s) + target_entropy)] (SAC eq. 18); log_prob carries no gradient."""
    return -temperature * jnp.mean(jax.lax.stop_gradient(log_prob) + target_entropy)
