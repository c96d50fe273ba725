"""MLP and ensemble building blocks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robojax.nets import MLP, activation_by_name, ensemblize, sample_ensemble_subset


def test_mlp_shapes_and_layer_norm():
    mlp = MLP((8, 4), output_dim=3, use_layer_norm=True)
    params = mlp.init(jax.random.PRNGKey(0), jnp.zeros((5, 2)))
    assert mlp.apply(params, jnp.ones((5, 2))).shape == (5, 3)
    names = set(params["params"])
    assert {"Dense_0", "LayerNorm_0", "Dense_1", "LayerNorm_1", "Dense_2"} == names
    plain = MLP((8,)).init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))
    assert set(plain["params"]) == {"Dense_0"}


def test_unknown_activation_is_named():
    with pytest.raises(ValueError, match="unknown activation 'relu6'"):
        activation_by_name("relu6")


def test_ensemble_members_are_independent():
    ensemble = ensemblize(MLP, 4)((8,), output_dim=1)
    params = ensemble.init(jax.random.PRNGKey(0), jnp.zeros((3, 2)))
    kernel = params["params"]["Dense_0"]["kernel"]
    assert kernel.shape == (4, 2, 8)
    assert not np.allclose(kernel[0], kernel[1])
    out = ensemble.apply(params, jnp.ones((3, 2)))
    assert out.shape == (4, 3, 1)
    # member i of the ensemble equals a single MLP with member i's parameters
    single = MLP((8,), output_dim=1)
    member = jax.tree.map(lambda p: p[2], params)
    np.testing.assert_allclose(single.apply(member, jnp.ones((3, 2))), out[2], rtol=1e-6)


@settings(max_examples=20, deadline=None)
@given(ensemble_size=st.integers(1, 12), data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_subset_has_no_repeats(ensemble_size, data, seed):
    subset_size = data.draw(st.integers(1, ensemble_size))
    idx = np.asarray(sample_ensemble_subset(jax.random.PRNGKey(seed), ensemble_size, subset_size))
    assert idx.shape == (subset_size,)
    assert len(set(idx.tolist())) == subset_size
    assert idx.min() >= 0 and idx.max() < ensemble_size


def test_subset_covers_all_pairs():
    draws = jax.vmap(lambda k: sample_ensemble_subset(k, 4, 2))(jax.random.split(jax.random.PRNGKey(0), 400))
    pairs = {tuple(sorted(p)) for p in np.asarray(draws).tolist()}
    assert pairs == {(a, b) for a in range(4) for b in range(a + 1, 4)}


def test_subset_rejects_bad_sizes():
    with pytest.raises(ValueError, match="subset_size"):
        sample_ensemble_subset(jax.random.PRNGKey(0), 3, 4)
