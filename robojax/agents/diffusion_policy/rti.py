"""Real-Time-Iteration warm start (RTI-DP, Duan, Yin, Kragic 2025): pure functions on action chunks.

After the first chunk (a full cold solve), each later chunk starts from the previous one:

  1. shift: drop the n actions already executed, repeat the last action to refill the horizon
     (Alg. 1: G <- [a_{t+1}, ..., a_{T-1}, a_{T-1}]; RTI-DP executes n = 1, robojax's receding
     horizon executes n = Ta);
  2. discrete dims (the gripper): "clip" binarises them to +-1/factor before reuse (RTI-DP-clip,
     for policies trained on raw +-1 gripper values), "scale" leaves them as they are because the
     model was trained with gripper values divided by a factor (RTI-DP-scale, +-0.1 for factor 10),
     which keeps the abrupt open/close switch inside the noise scale;
  3. the guess enters the reverse chain *as the sample at step K'*, with no forward re-noising
     (RTI-DP's code never adds noise: the guess is treated as an estimate of A_{K'}), and is
     denoised through a short, static step list, e.g. [3, 1, 0].

Everything here is in the model's (normalised, scaled) action space and works on a single chunk
[Tp, A] or a batch [..., Tp, A].
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from robojax.data.normalizer import binarize_discrete  # noqa: F401 - the executed-gripper rule, shared
from robojax.policy import shift_chunk  # noqa: F401 - shared with EBT-Policy's warm start


def warm_start_timesteps(start_step: int, num_steps: int) -> tuple[int, ...]:
    """The decreasing step list from K' down to 0 with `num_steps` entries, floor-spaced.

    (3, 3) -> (3, 1, 0), (5, 4) -> (5, 3, 1, 0), (7, 5) -> (7, 5, 3, 1, 0): RTI-DP's lists.
    Its length is the number of denoiser calls per warm-started chunk.
    """
    if num_steps < 1 or start_step < 0:
        raise ValueError(f"need num_steps >= 1 and start_step >= 0, got {num_steps}, {start_step}")
    if num_steps > start_step + 1:
        raise ValueError(f"{num_steps} distinct steps do not fit between K'={start_step} and 0")
    if num_steps == 1:
        return (int(start_step),)
    values = np.floor(np.linspace(start_step, 0, num_steps) + 1e-9).astype(int)
    steps = tuple(int(v) for v in values)
    if len(set(steps)) != len(steps):  # e.g. K'=4, 4 steps: floor spacing collides; fall back to the top ones
        steps = tuple(range(start_step, start_step - num_steps, -1))[:-1] + (0,)
    return steps


def _dims_mask(action_dim: int, dims: Sequence[int]) -> np.ndarray:
    mask = np.zeros(action_dim, bool)
    mask[list(dims)] = True
    return mask


def clip_discrete(chunk: jax.Array, discrete_dims: Sequence[int], factor: float = 1.0) -> jax.Array:
    """RTI-DP-clip: discrete dims -> +1/factor where positive, -1/factor otherwise (the code's `where(g > 0, ...)`)."""
    if not discrete_dims:
        return chunk
    mask = _dims_mask(chunk.shape[-1], discrete_dims)
    binary = jnp.where(chunk > 0, 1.0 / factor, -1.0 / factor).astype(chunk.dtype)
    return jnp.where(mask, binary, chunk)


def scale_discrete(actions: jax.Array, discrete_dims: Sequence[int], scale: float) -> jax.Array:
    """RTI-DP-scale's dataset transform: discrete dims divided by `scale` (model space = data / scale)."""
    if not discrete_dims or scale == 1.0:
        return actions
    mask = _dims_mask(actions.shape[-1], discrete_dims)
    return jnp.where(mask, actions / scale, actions)


def unscale_discrete(actions: jax.Array, discrete_dims: Sequence[int], scale: float) -> jax.Array:
    """Inverse of `scale_discrete`."""
    if not discrete_dims or scale == 1.0:
        return actions
    mask = _dims_mask(actions.shape[-1], discrete_dims)
    return jnp.where(mask, actions * scale, actions)


def warm_start_guess(
    previous_chunk: jax.Array,
    num_executed: int,
    discrete_dims: Sequence[int] = (),
    discrete_handling: str = "clip",
    clip_factor: float = 1.0,
) -> jax.Array:
    """The initial guess for the next chunk: shift by the executed actions, then handle discrete dims.

    discrete_handling: "clip" (binarise to +-1/clip_factor), "scale" or "none" (leave unchanged:
    with "scale" the model already works on scaled gripper values).
    """
    if discrete_handling not in ("clip", "scale", "none"):
        raise ValueError(f"discrete_handling must be clip, scale or none, got {discrete_handling!r}")
    guess = shift_chunk(previous_chunk, num_executed)
    if discrete_handling == "clip":
        guess = clip_discrete(guess, discrete_dims, clip_factor)
    return guess
