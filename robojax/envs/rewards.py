"""Smooth reward shaping in [0, 1], following the conventions of the DeepMind Control Suite."""

from __future__ import annotations

import jax.numpy as jnp

_SIGMOIDS = ("gaussian", "linear", "quadratic", "long_tail", "cosine")


def _sigmoid(x, value_at_1: float, kind: str):
    """Maps distance-in-margins x >= 0 to (0, 1], equal to 1 at x=0 and value_at_1 at x=1."""
    if kind == "gaussian":
        scale = jnp.sqrt(-2.0 * jnp.log(value_at_1))
        return jnp.exp(-0.5 * (x * scale) ** 2)
    if kind == "long_tail":
        scale = jnp.sqrt(1.0 / value_at_1 - 1.0)
        return 1.0 / ((x * scale) ** 2 + 1.0)
    if kind == "linear":
        scale = 1.0 - value_at_1
        return jnp.where(jnp.abs(x * scale) < 1.0, 1.0 - x * scale, 0.0)
    if kind == "quadratic":
        scale = jnp.sqrt(1.0 - value_at_1)
        return jnp.where(jnp.abs(x * scale) < 1.0, 1.0 - (x * scale) ** 2, 0.0)
    if kind == "cosine":
        scale = jnp.arccos(2.0 * value_at_1 - 1.0) / jnp.pi
        sx = x * scale
        return jnp.where(jnp.abs(sx) < 1.0, (1.0 + jnp.cos(jnp.pi * sx)) / 2.0, 0.0)
    raise ValueError(f"unknown sigmoid {kind!r}; choose from {_SIGMOIDS}")


def tolerance(x, bounds=(0.0, 0.0), margin: float = 0.0, sigmoid: str = "gaussian", value_at_margin: float = 0.1):
    """1 inside `bounds`, decaying with distance outside them to `value_at_margin` at `margin`.

    With margin=0 the reward is the indicator of `bounds`.
    """
    lower, upper = bounds
    if lower > upper:
        raise ValueError(f"tolerance bounds must satisfy lower <= upper, got {bounds}")
    if margin < 0:
        raise ValueError(f"tolerance margin must be >= 0, got {margin}")
    if not 0.0 < value_at_margin < 1.0 and margin > 0:
        raise ValueError(f"value_at_margin must be in (0, 1), got {value_at_margin}")
    x = jnp.asarray(x, jnp.float32)
    in_bounds = (lower <= x) & (x <= upper)
    if margin == 0:
        return jnp.where(in_bounds, 1.0, 0.0)
    d = jnp.where(x < lower, lower - x, x - upper) / margin
    return jnp.where(in_bounds, 1.0, _sigmoid(d, value_at_margin, sigmoid))
