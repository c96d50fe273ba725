"""Transformer blocks for every learner: RMSNorm, multi-head attention with QK-norm, MLP, pre-norm blocks.

Shapes are [..., T, width] (any leading batch axes). Masks are boolean, True where a query may
attend to a key, shaped [Tq, Tk] or broadcastable to [..., heads, Tq, Tk]; a query row with no
visible key attends to nothing (its output is zero) instead of producing NaNs.

QK-norm (RMS-normalising queries and keys per head before the dot product, with a learned scale)
keeps attention logits bounded, which matters when a network is differentiated twice, as an
energy model is during unrolled energy descent.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from robojax.nets.mlp import activation_by_name

__all__ = [
    "Attention",
    "FeedForward",
    "RMSNorm",
    "TransformerBlock",
    "causal_mask",
    "sincos_position_embedding",
    "time_causal_mask",
]


def causal_mask(length: int) -> jax.Array:
    """[T, T] boolean: position i sees positions j <= i."""
    return jnp.tril(jnp.ones((length, length), bool))


def time_causal_mask(query_times, key_times) -> jax.Array:
    """[Tq, Tk] boolean: query i sees key j when key_times[j] <= query_times[i] (e.g. actions seeing past frames)."""
    q = jnp.asarray(query_times)
    k = jnp.asarray(key_times)
    return k[None, :] <= q[:, None]


def sincos_position_embedding(length: int, width: int, max_period: float = 10_000.0) -> np.ndarray:
    """Fixed [T, width] sin-cos position embedding (Vaswani et al.); width must be even."""
    if width % 2:
        raise ValueError(f"sincos_position_embedding needs an even width, got {width}")
    half = width // 2
    freqs = np.exp(-math.log(max_period) * np.arange(half, dtype=np.float64) / half)
    angles = np.arange(length, dtype=np.float64)[:, None] * freqs[None]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=-1).astype(np.float32)


class RMSNorm(nn.Module):
    """x / rms(x) * scale over the last axis (Zhang & Sennrich 2019); no mean subtraction, no bias."""

    epsilon: float = 1e-6

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
        rms = jnp.sqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + self.epsilon)
        return (x / rms) * scale


class Attention(nn.Module):
    """Multi-head attention, self (context None) or cross, with optional QK-norm and a boolean mask."""

    num_heads: int
    qk_norm: bool = True
    dropout_rate: float = 0.0
    kernel_init: Callable = nn.initializers.xavier_uniform()

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        context: jax.Array | None = None,
        mask: jax.Array | None = None,
        *,
        deterministic: bool = True,
    ) -> jax.Array:
        width = x.shape[-1]
        if width % self.num_heads:
            raise ValueError(f"Attention width {width} is not divisible by num_heads={self.num_heads}")
        head_dim = width // self.num_heads
        context = x if context is None else context

        def project(name, inputs):
            y = nn.DenseGeneral((self.num_heads, head_dim), kernel_init=self.kernel_init, name=name)(inputs)
            return y  # [..., T, H, Dh]

        q, k, v = project("query", x), project("key", context), project("value", context)
        if self.qk_norm:
            q = RMSNorm(name="query_norm")(q)
            k = RMSNorm(name="key_norm")(k)
        logits = jnp.einsum("...qhd,...khd->...hqk", q, k) / math.sqrt(head_dim)
        if mask is not None:
            mask = jnp.asarray(mask, bool)
            logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
        weights = jax.nn.softmax(logits, axis=-1)
        if mask is not None:  # a query that sees no key gets zero weights, not a uniform average
            weights = jnp.where(mask, weights, 0.0)
        if self.dropout_rate > 0.0:
            weights = nn.Dropout(self.dropout_rate)(weights, deterministic=deterministic)
        out = jnp.einsum("...hqk,...khd->...qhd", weights, v)
        return nn.DenseGeneral(width, axis=(-2, -1), kernel_init=self.kernel_init, name="out")(out)


class FeedForward(nn.Module):
    """Dense(width * ratio) -> activation -> Dense(width)."""

    mlp_ratio: float = 4.0
    activation: str = "gelu"
    kernel_init: Callable = nn.initializers.xavier_uniform()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        hidden = max(1, int(round(width * self.mlp_ratio)))
        y = nn.Dense(hidden, kernel_init=self.kernel_init)(x)
        y = activation_by_name(self.activation)(y)
        return nn.Dense(width, kernel_init=self.kernel_init)(y)


class TransformerBlock(nn.Module):
    """Pre-norm residual block: self-attention, then cross-attention to `context` (if given), then the MLP.

    `self_mask` and `cross_mask` are boolean [Tq, Tk] (True: may attend). With `cross_attention`
    False the block has no cross-attention parameters and `context` must be None.
    """

    num_heads: int
    cross_attention: bool = False
    mlp_ratio: float = 4.0
    qk_norm: bool = True
    dropout_rate: float = 0.0
    activation: str = "gelu"

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        context: jax.Array | None = None,
        self_mask: jax.Array | None = None,
        cross_mask: jax.Array | None = None,
        *,
        deterministic: bool = True,
    ) -> jax.Array:
        if self.cross_attention and context is None:
            raise ValueError("TransformerBlock(cross_attention=True) needs a context to attend to")
        if not self.cross_attention and context is not None:
            raise ValueError("TransformerBlock got a context but was built with cross_attention=False")
        attn = dict(num_heads=self.num_heads, qk_norm=self.qk_norm, dropout_rate=self.dropout_rate)
        x = x + Attention(**attn, name="self_attention")(
            RMSNorm(name="self_norm")(x), mask=self_mask, deterministic=deterministic
        )
        if self.cross_attention:
            x = x + Attention(**attn, name="cross_attention")(
                RMSNorm(name="cross_norm")(x), context, mask=cross_mask, deterministic=deterministic
            )
        return x + FeedForward(self.mlp_ratio, self.activation, name="mlp")(RMSNorm(name="mlp_norm")(x))
