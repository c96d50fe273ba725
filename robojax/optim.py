"""Optimiser pieces the demonstration learners share: warm-up + cosine learning rate, AdamW, weight EMA.

Chi et al.'s Diffusion Policy recipe (also EBT-Policy's): linear warm-up to the peak rate, cosine
decay to 0 at the last gradient step, AdamW, optional global-norm clipping, and an EMA of the
weights for evaluation with decay 1 - (1 + step)^-power (diffusers' EMAModel, inv_gamma 1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def warmup_cosine_schedule(peak: float, warmup_steps: int, total_steps: int) -> optax.Schedule:
    """0 -> `peak` linearly over warmup_steps, then cosine to 0 at total_steps (warm-up capped below total)."""
    warmup = min(warmup_steps, max(total_steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(
        0.0, peak, warmup_steps=warmup, decay_steps=max(total_steps, warmup + 1), end_value=0.0
    )


def adamw(
    schedule: optax.Schedule, *, b1: float = 0.9, b2: float = 0.999, weight_decay: float = 0.0, clip_norm: float = 0.0
) -> optax.GradientTransformation:
    """AdamW on `schedule`, after global-norm clipping when clip_norm > 0."""
    opt = optax.adamw(schedule, b1=b1, b2=b2, eps=1e-8, weight_decay=weight_decay)
    return optax.chain(optax.clip_by_global_norm(clip_norm), opt) if clip_norm > 0 else opt


def ema_decay(step: jax.Array, power: float, max_decay: float, inv_gamma: float = 1.0) -> jax.Array:
    """EMAModel decay 1 - (1 + step / inv_gamma)^-power, clamped to [0, max_decay]; 0 at step 0."""
    step = jnp.asarray(step, jnp.float32)
    decay = 1.0 - (1.0 + step / inv_gamma) ** (-power)
    return jnp.where(step <= 0, 0.0, jnp.clip(decay, 0.0, max_decay))


def ema_update(ema_params, params, decay: jax.Array):
    """ema <- decay * ema + (1 - decay) * params, leaf by leaf."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)
