"""Diffusion Policy losses as pure functions of arrays.

Shapes: B = batch, Tp = prediction horizon, A = action dims.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def denoising_loss(model_output: jax.Array, target: jax.Array) -> jax.Array:
    """DDPM L_simple (Chi et al. Eq. 5): MSE(eps^k, eps_theta(O, A^0 + eps^k, k)), mean over B, Tp, A.

    target is the noise for epsilon prediction, A^0 for sample prediction.
    """
    return jnp.mean(jnp.square(model_output.astype(jnp.float32) - target.astype(jnp.float32)))


def chunk_regression_loss(predicted_chunk: jax.Array, actions: jax.Array) -> jax.Array:
    """The MSE behaviour-cloning baseline: regress the normalised chunk A^0 directly."""
    return jnp.mean(jnp.square(predicted_chunk.astype(jnp.float32) - actions.astype(jnp.float32)))


def ema_decay(step: jax.Array, power: float, max_decay: float, inv_gamma: float = 1.0) -> jax.Array:
    """Chi et al.'s EMAModel decay 1 - (1 + step / inv_gamma)^-power, clamped to [0, max_decay]; 0 at step 0."""
    step = jnp.asarray(step, jnp.float32)
    decay = 1.0 - (1.0 + step / inv_gamma) ** (-power)
    return jnp.where(step <= 0, 0.0, jnp.clip(decay, 0.0, max_decay))


def ema_update(ema_params, params, decay: jax.Array):
    """ema <- decay * ema + (1 - decay) * params, leaf by leaf."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)
