"""Diffusion Policy losses as pure functions of arrays.

Shapes: B = batch, Tp = prediction horizon, A = action dims.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from robojax.optim import ema_decay, ema_update  # noqa: F401 - shared with EBT-Policy


def denoising_loss(model_output: jax.Array, target: jax.Array) -> jax.Array:
    """DDPM L_simple (Chi et al. Eq. 5): MSE(eps^k, eps_theta(O, A^0 + eps^k, k)), mean over B, Tp, A.

    target is the noise for epsilon prediction, A^0 for sample prediction.
    """
    return jnp.mean(jnp.square(model_output.astype(jnp.float32) - target.astype(jnp.float32)))


def chunk_regression_loss(predicted_chunk: jax.Array, actions: jax.Array) -> jax.Array:
    """The MSE behaviour-cloning baseline: regress the normalised chunk A^0 directly."""
    return jnp.mean(jnp.square(predicted_chunk.astype(jnp.float32) - actions.astype(jnp.float32)))
