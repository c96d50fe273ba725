"""Small Flax Linen building blocks shared by the learners."""

from robojax.nets.ensemble import ensemblize, sample_ensemble_subset
from robojax.nets.mlp import ACTIVATIONS, MLP, activation_by_name

__all__ = ["ACTIVATIONS", "MLP", "activation_by_name", "ensemblize", "sample_ensemble_subset"]
