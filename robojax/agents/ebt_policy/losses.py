"""EBT-Policy's loss: the reconstruction error of the unrolled energy descent (pure functions).

The energy is never supervised directly (Gladstone et al. Alg. 1; the EBT-Policy code): the
loss is the MSE between the descended chunk and the expert's, averaged over the executed descent
steps ("all") or taken at the last one ("last", EBT's S2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def step_errors(chunks: jax.Array, expert: jax.Array) -> jax.Array:
    """[L, B, Tp, A] chunks after each iteration and the expert chunks [B, Tp, A] -> [L, B] MSE per iteration and sample."""
    return jnp.mean(jnp.square(chunks - expert[None]), axis=(2, 3))


def unroll_errors(errors: jax.Array, mask: jax.Array, loss_steps: str) -> jax.Array:
    """[L, B] errors -> [B]: the mean over executed iterations ("all"), or the last executed one's ("last")."""
    mask = mask.astype(errors.dtype)
    if loss_steps == "all":
        return jnp.sum(errors * mask[:, None], axis=0) / jnp.maximum(jnp.sum(mask), 1.0)
    last = jnp.sum(mask).astype(jnp.int32) - 1
    return errors[jnp.maximum(last, 0)]


def unroll_loss(errors: jax.Array, mask: jax.Array, loss_steps: str, samples: int = 1) -> jax.Array:
    """The batch loss from [L, B * samples] errors (samples consecutive per window): with samples > 1 each
    window keeps its best sample's error (winner-takes-all), then the mean over windows."""
    per_sample = unroll_errors(errors, mask, loss_steps)
    if samples > 1:
        per_sample = jnp.min(per_sample.reshape(-1, samples), axis=1)
    return jnp.mean(per_sample)


def contrastive_loss(energy_expert: jax.Array, energy_descended: jax.Array) -> jax.Array:
    """Cross-entropy of picking the expert chunk over the descended one: mean softplus(E_expert - E_descended)."""
    return jnp.mean(jax.nn.softplus(energy_expert - energy_descended))
