"""Ensembles of independently initialised modules, evaluated in one call with `nn.vmap`."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def ensemblize(module_cls: type[nn.Module], ensemble_size: int, in_axes=None) -> type[nn.Module]:
    """Wrap a module class so that it holds `ensemble_size` independent parameter sets.

    Params gain a leading ensemble axis; inputs are shared (in_axes=None) unless given per member;
    outputs gain a leading ensemble axis.
    """
    if ensemble_size < 1:
        raise ValueError(f"ensemble_size must be >= 1, got {ensemble_size}")
    return nn.vmap(
        module_cls,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        in_axes=in_axes,
        out_axes=0,
        axis_size=ensemble_size,
    )


def sample_ensemble_subset(key: jax.Array, ensemble_size: int, subset_size: int) -> jax.Array:
    """Indices of `subset_size` distinct ensemble members, uniformly at random (no repeats).

    REDQ (Chen et al. 2021, Alg. 1 line 8) samples the target-min subset without replacement;
    SERL's `randint` draws with replacement, which can pick one member twice and weakens the min.
    """
    if not 1 <= subset_size <= ensemble_size:
        raise ValueError(f"subset_size must be in [1, {ensemble_size}], got {subset_size}")
    return jax.random.permutation(key, jnp.arange(ensemble_size))[:subset_size]
