"""ConditionalUnet1D (Chi et al.) and MLPDenoiser: shapes, parameter counts, jit/vmap, conditioning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import robojax  # noqa: F401  (sets XLA flags first)
from robojax.nets import ConditionalUnet1D, MLPDenoiser

B, TP, A, C = 3, 16, 4, 10
SMALL_UNET = dict(down_dims=(16, 32, 64), n_groups=4, diffusion_step_embed_dim=16)


def _inputs(key=0):
    k1, k2 = jax.random.split(jax.random.key(key))
    return jax.random.normal(k1, (B, TP, A)), jnp.array([0, 10, 99]), jax.random.normal(k2, (B, C))


def _count(params):
    return sum(int(np.prod(v.shape)) for v in jax.tree_util.tree_leaves(params))


@pytest.fixture(scope="module", params=["unet", "mlp"])
def model_and_params(request):
    model = ConditionalUnet1D(**SMALL_UNET) if request.param == "unet" else MLPDenoiser(hidden_dims=(32, 32))
    x, t, cond = _inputs()
    # Everything jitted: op-by-op dispatch of a U-Net compiles each op separately and is far slower.
    return model, jax.jit(model.init)(jax.random.key(0), x, t, cond), jax.jit(model.apply)


def test_output_shape_and_vmap_over_unbatched_calls(model_and_params):
    model, params, apply = model_and_params
    x, t, cond = _inputs()
    out = apply(params, x, t, cond)
    assert out.shape == (B, TP, A) and bool(jnp.all(jnp.isfinite(out)))
    # vmap of unbatched calls (sample [Tp, A], scalar t, cond [C]), as a per-example sampler makes them.
    per_example = jax.jit(jax.vmap(lambda xi, ti, ci: model.apply(params, xi, ti, ci)))(x, t, cond)
    np.testing.assert_allclose(per_example, out, atol=1e-4)


def test_scalar_timestep_broadcasts():
    model = MLPDenoiser(hidden_dims=(8,))
    x, t, cond = _inputs()
    params = model.init(jax.random.key(0), x, t, cond)
    np.testing.assert_allclose(
        model.apply(params, x, jnp.int32(10), cond)[1], model.apply(params, x, t, cond)[1], atol=1e-6
    )


def test_conditioning_and_timestep_change_the_output(model_and_params):
    model, params, apply = model_and_params
    x, t, cond = _inputs()
    base = apply(params, x, t, cond)
    assert float(jnp.abs(apply(params, x, t, cond + 1.0) - base).max()) > 1e-3
    assert float(jnp.abs(apply(params, x, t + 17, cond) - base).max()) > 1e-3
    assert float(jnp.abs(apply(params, x + 0.5, t, cond) - base).max()) > 1e-3
    # Examples do not leak into each other (GroupNorm normalises per example, unlike BatchNorm).
    changed = apply(params, x.at[0].add(1.0), t, cond)
    np.testing.assert_allclose(changed[1:], base[1:], atol=1e-5)


def test_gradients_reach_every_parameter(model_and_params):
    model, params, _ = model_and_params
    x, t, cond = _inputs()
    grads = jax.jit(jax.grad(lambda p: jnp.sum(model.apply(p, x, t, cond) ** 2)))(params)
    assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree_util.tree_leaves(grads))


def test_unet_parameter_counts_match_diffusion_policy():
    # Diffusion Policy (Chi et al.) Table VI lists 256M denoiser parameters for the CNN sim tasks
    # (down_dims 512/1024/2048); the same architecture here lands on that figure. eval_shape: no compute.
    def count(model, action_dim, cond_dim):
        sample = jnp.zeros((1, 16, action_dim))
        timestep, cond = jnp.zeros((1,), jnp.int32), jnp.zeros((1, cond_dim))
        shapes = jax.eval_shape(model.init, jax.random.key(0), sample, timestep, cond)
        return _count(shapes)

    big = count(ConditionalUnet1D(down_dims=(512, 1024, 2048), diffusion_step_embed_dim=128), 10, 2 * 137)
    assert 250e6 < big < 262e6
    default = count(ConditionalUnet1D(), A, C)
    assert 3e6 < default < 6e6
    small = count(ConditionalUnet1D(**SMALL_UNET), A, C)
    assert 20e3 < small < 300e3
    assert count(MLPDenoiser(hidden_dims=(256, 256, 256)), A, C) < 1e6


def test_unet_rejects_horizons_it_cannot_downsample():
    model = ConditionalUnet1D(**SMALL_UNET)
    x = jnp.zeros((1, 10, A))
    with pytest.raises(ValueError, match="multiple of 4.*Tp=10"):
        model.init(jax.random.key(0), x, jnp.int32(0), jnp.zeros((1, C)))
    with pytest.raises(ValueError, match="n_groups"):
        ConditionalUnet1D(down_dims=(12, 24), n_groups=8).init(jax.random.key(0), jnp.zeros((1, 8, A)), 0, None)
    with pytest.raises(ValueError, match="timestep"):
        model.init(jax.random.key(0), jnp.zeros((2, 16, A)), jnp.zeros((3,), jnp.int32), jnp.zeros((2, C)))


def test_unet_without_global_cond_and_with_two_levels():
    model = ConditionalUnet1D(down_dims=(16, 32), n_groups=4, diffusion_step_embed_dim=8)
    x = jnp.ones((2, 8, 2))
    params = jax.eval_shape(model.init, jax.random.key(0), x, jnp.int32(3))
    assert jax.eval_shape(model.apply, params, x, jnp.int32(3)).shape == (2, 8, 2)
