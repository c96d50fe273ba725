"""Diffusion Policy networks: the denoiser backbone and the observation conditioning.

The denoiser is Chi et al.'s ConditionalUnet1D (1-D temporal convolutions over the action chunk,
FiLM scale/bias from [diffusion-step embedding, observation features]) or a small MLP with the
same call signature, both from `robojax.nets.unet1d`. Observations are state vectors: the To
normalised observations are flattened into the global condition (Chi et al.'s low-dim policy,
`obs_as_global_cond`), computed once per chunk, outside the denoising loop.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from robojax.agents.diffusion_policy.config import DiffusionPolicyConfig
from robojax.nets.unet1d import ConditionalUnet1D, MLPDenoiser


def make_denoiser(config: DiffusionPolicyConfig) -> nn.Module:
    """eps_theta(A^k, k, O) (or the chunk itself for the MSE baseline): [B, Tp, A], [B] or (), [B, C] -> [B, Tp, A]."""
    if config.denoiser == "unet":
        return ConditionalUnet1D(
            down_dims=tuple(config.down_dims),
            kernel_size=config.kernel_size,
            n_groups=config.n_groups,
            diffusion_step_embed_dim=config.diffusion_step_embed_dim,
        )
    return MLPDenoiser(
        hidden_dims=tuple(config.mlp_hidden_dims), diffusion_step_embed_dim=config.diffusion_step_embed_dim
    )


def global_condition(normalized_obs: jax.Array) -> jax.Array:
    """[..., To, obs_dim] normalised observation history -> [..., To * obs_dim] FiLM condition."""
    return normalized_obs.reshape(normalized_obs.shape[:-2] + (-1,))


def count_params(params) -> int:
    return int(sum(jnp.size(x) for x in jax.tree.leaves(params)))
