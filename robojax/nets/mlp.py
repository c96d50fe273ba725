"""Multi-layer perceptron with optional LayerNorm, the building block of actors and critics."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": nn.tanh,
    "gelu": nn.gelu,
    "silu": nn.silu,
    "elu": nn.elu,
}


def activation_by_name(name: str) -> Callable[[jax.Array], jax.Array]:
    """Look up an activation function by name, with a clear error for unknown names."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}") from None


class MLP(nn.Module):
    """Dense -> [LayerNorm] -> activation for each hidden layer, then an optional output layer.

    LayerNorm after every hidden Dense follows SERL / RLPD (Ball et al. 2023, sec. 3.2): it keeps
    critic values bounded at high update-to-data ratios.
    """

    hidden_dims: Sequence[int]
    output_dim: int | None = None
    activation: str = "relu"
    use_layer_norm: bool = False
    kernel_init: Callable = nn.initializers.xavier_uniform()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = activation_by_name(self.activation)
        for width in self.hidden_dims:
            x = nn.Dense(width, kernel_init=self.kernel_init)(x)
            if self.use_layer_norm:
                x = nn.LayerNorm()(x)
            x = act(x)
        if self.output_dim is not None:
            x = nn.Dense(self.output_dim, kernel_init=self.kernel_init)(x)
        return x
