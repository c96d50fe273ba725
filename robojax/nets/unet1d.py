"""Denoisers for action chunks: Chi et al.'s conditional 1-D temporal U-Net and an MLP with the same call signature.

Both take (sample [B, Tp, A], timestep [B] or scalar int, global_cond [B, C] or None) and return [B, Tp, A].
Unbatched inputs (sample [Tp, A], global_cond [C]) are accepted too, which suits per-example samplers under vmap.
Channels are last (Flax convention); Chi et al.'s PyTorch code works on [B, A, Tp] internally.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def mish(x: jax.Array) -> jax.Array:
    """Mish activation x * tanh(softplus(x)) (Misra 2019), as in Diffusion Policy."""
    return x * jnp.tanh(jax.nn.softplus(x))


class SinusoidalPosEmb(nn.Module):
    """Transformer sinusoidal embedding of the diffusion step (Vaswani et al. 2017; DDPM Appendix B)."""

    dim: int

    @nn.compact
    def __call__(self, t: jax.Array) -> jax.Array:
        if self.dim % 2 or self.dim < 4:
            raise ValueError(f"diffusion_step_embed_dim must be even and >= 4, got {self.dim}")
        half = self.dim // 2
        freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half) / (half - 1))
        angles = t.astype(jnp.float32)[:, None] * freqs[None, :]
        return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class DiffusionStepEncoder(nn.Module):
    """Sinusoidal embedding -> Dense(4d) -> Mish -> Dense(d) (Chi et al. `diffusion_step_encoder`)."""

    dim: int

    @nn.compact
    def __call__(self, t: jax.Array) -> jax.Array:
        x = SinusoidalPosEmb(self.dim)(t)
        x = mish(nn.Dense(4 * self.dim)(x))
        return nn.Dense(self.dim)(x)


class Conv1dBlock(nn.Module):
    """Conv1d -> GroupNorm -> Mish over [B, T, C]."""

    features: int
    kernel_size: int
    n_groups: int = 8

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Conv(self.features, (self.kernel_size,), padding=[(self.kernel_size // 2,) * 2])(x)
        x = nn.GroupNorm(num_groups=self.n_groups)(x)
        return mish(x)


class ConditionalResidualBlock1D(nn.Module):
    """Two Conv1dBlocks with FiLM in between: out = scale(cond) * h + bias(cond), plus a (1x1-conv) residual."""

    features: int
    kernel_size: int = 5
    n_groups: int = 8
    cond_predict_scale: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, cond: jax.Array) -> jax.Array:
        h = Conv1dBlock(self.features, self.kernel_size, self.n_groups)(x)
        # FiLM (Perez et al. 2018): per-channel scale and bias from Mish -> Dense of the condition.
        if self.cond_predict_scale:
            film = nn.Dense(2 * self.features)(mish(cond))
            scale, bias = jnp.split(film, 2, axis=-1)
            h = scale[:, None, :] * h + bias[:, None, :]
        else:
            h = h + nn.Dense(self.features)(mish(cond))[:, None, :]
        h = Conv1dBlock(self.features, self.kernel_size, self.n_groups)(h)
        residual = x if x.shape[-1] == self.features else nn.Conv(self.features, (1,))(x)
        return h + residual


def _batch_inputs(sample, timestep, global_cond):
    """Add a batch axis to unbatched inputs and broadcast the timestep to [B]."""
    if sample.ndim not in (2, 3):
        raise ValueError(f"sample must be [B, Tp, A] or [Tp, A], got shape {sample.shape}")
    unbatched = sample.ndim == 2
    if unbatched:
        sample = sample[None]
        if global_cond is not None:
            global_cond = jnp.asarray(global_cond)[None]
    batch = sample.shape[0]
    timestep = jnp.asarray(timestep)
    if timestep.ndim == 0:
        timestep = jnp.broadcast_to(timestep, (batch,))
    elif timestep.shape != (batch,):
        raise ValueError(f"timestep must be a scalar or shape ({batch},), got shape {timestep.shape}")
    if global_cond is not None and (global_cond.ndim != 2 or global_cond.shape[0] != batch):
        raise ValueError(f"global_cond must be [B, C] with B={batch}, got shape {global_cond.shape}")
    return sample, timestep, global_cond, unbatched


class ConditionalUnet1D(nn.Module):
    """Chi et al. (Diffusion Policy) ConditionalUnet1D over the action-chunk time axis, FiLM-conditioned on
    [diffusion-step embedding, global_cond].

    Down path: two residual blocks per level, strided-conv downsample after all but the last level; two mid
    blocks; up path: concat skip, two residual blocks, transposed-conv upsample; final Conv1dBlock + 1x1 conv.
    Tp must be divisible by 2 ** (len(down_dims) - 1).
    """

    down_dims: Sequence[int] = (64, 128, 256)
    kernel_size: int = 5
    n_groups: int = 8
    diffusion_step_embed_dim: int = 128
    cond_predict_scale: bool = True

    @nn.compact
    def __call__(self, sample: jax.Array, timestep: jax.Array, global_cond: jax.Array | None = None) -> jax.Array:
        sample, timestep, global_cond, unbatched = _batch_inputs(sample, timestep, global_cond)
        horizon, action_dim = sample.shape[1], sample.shape[2]
        multiple = 2 ** (len(self.down_dims) - 1)
        if horizon % multiple:
            raise ValueError(
                f"ConditionalUnet1D with {len(self.down_dims)} levels downsamples {len(self.down_dims) - 1} times, "
                f"so the horizon must be a multiple of {multiple}; got Tp={horizon}. Use a horizon such as "
                f"{multiple * max(1, -(-horizon // multiple))} or fewer down_dims."
            )
        bad = [d for d in self.down_dims if d % self.n_groups]
        if bad:
            raise ValueError(
                f"down_dims {tuple(self.down_dims)} must be multiples of n_groups={self.n_groups}; {bad} are not"
            )

        cond = DiffusionStepEncoder(self.diffusion_step_embed_dim)(timestep)
        if global_cond is not None:
            cond = jnp.concatenate([cond, global_cond.astype(cond.dtype)], axis=-1)

        def block(features, x):
            res = ConditionalResidualBlock1D(features, self.kernel_size, self.n_groups, self.cond_predict_scale)
            return res(x, cond)

        x = sample
        skips = []
        for level, dim in enumerate(self.down_dims):
            x = block(dim, x)
            x = block(dim, x)
            skips.append(x)
            if level < len(self.down_dims) - 1:
                x = nn.Conv(dim, (3,), strides=(2,), padding=[(1, 1)])(x)  # Downsample1d: k3 s2 p1
        for _ in range(2):
            x = block(self.down_dims[-1], x)
        # Up path over levels L-2 .. 0; as in Chi et al., the top level's skip is consumed first and the
        # finest level's skip (level 0) is never concatenated.
        for dim in reversed(self.down_dims[:-1]):
            x = jnp.concatenate([x, skips.pop()], axis=-1)
            x = block(dim, x)
            x = block(dim, x)
            # Upsample1d: ConvTranspose1d k4 s2 p1 doubles the length (padding k-1-p = 2 on the dilated input).
            x = nn.ConvTranspose(dim, (4,), strides=(2,), padding=[(2, 2)])(x)
        x = Conv1dBlock(self.down_dims[0], self.kernel_size, self.n_groups)(x)
        x = nn.Conv(action_dim, (1,))(x)
        return x[0] if unbatched else x


class MLPDenoiser(nn.Module):
    """MLP denoiser: [flattened sample, step embedding, global_cond] -> Dense/Mish stack -> [B, Tp, A]."""

    hidden_dims: Sequence[int] = (256, 256, 256)
    diffusion_step_embed_dim: int = 128

    @nn.compact
    def __call__(self, sample: jax.Array, timestep: jax.Array, global_cond: jax.Array | None = None) -> jax.Array:
        sample, timestep, global_cond, unbatched = _batch_inputs(sample, timestep, global_cond)
        batch, horizon, action_dim = sample.shape
        step_emb = DiffusionStepEncoder(self.diffusion_step_embed_dim)(timestep)
        parts = [sample.reshape(batch, horizon * action_dim), step_emb]
        if global_cond is not None:
            parts.append(global_cond.astype(sample.dtype))
        x = jnp.concatenate(parts, axis=-1)
        for width in self.hidden_dims:
            x = mish(nn.Dense(width)(x))
        x = nn.Dense(horizon * action_dim)(x).reshape(batch, horizon, action_dim)
        return x[0] if unbatched else x
