"""Small Flax Linen building blocks shared by the learners."""

from robojax.nets.ensemble import ensemblize, sample_ensemble_subset
from robojax.nets.mlp import ACTIVATIONS, MLP, activation_by_name
from robojax.nets.transformer import Attention, FeedForward, RMSNorm, TransformerBlock
from robojax.nets.unet1d import ConditionalUnet1D, MLPDenoiser

__all__ = [
    "ACTIVATIONS",
    "Attention",
    "ConditionalUnet1D",
    "FeedForward",
    "MLP",
    "MLPDenoiser",
    "RMSNorm",
    "TransformerBlock",
    "activation_by_name",
    "ensemblize",
    "sample_ensemble_subset",
]
