"""Transformer blocks: shapes, masks (a causal block does not see the future), QK-norm, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robojax.nets.transformer import (
    Attention,
    RMSNorm,
    TransformerBlock,
    causal_mask,
    sincos_position_embedding,
    time_causal_mask,
)

WIDTH, HEADS = 8, 2


def test_causal_block_does_not_see_the_future():
    x = jax.random.normal(jax.random.key(1), (2, 5, WIDTH))
    block = TransformerBlock(num_heads=HEADS)
    mask = causal_mask(5)
    params = block.init(jax.random.key(0), x, self_mask=mask)
    out = block.apply(params, x, self_mask=mask)
    changed = x.at[:, 3:].set(jax.random.normal(jax.random.key(2), (2, 2, WIDTH)))
    out2 = block.apply(params, changed, self_mask=mask)
    assert out.shape == x.shape
    np.testing.assert_allclose(out[:, :3], out2[:, :3], atol=1e-6)
    assert not np.allclose(out[:, 3:], out2[:, 3:])
    # Without the mask the past does see the change.
    free = block.apply(params, x), block.apply(params, changed)
    assert not np.allclose(free[0][:, :3], free[1][:, :3])


def test_cross_attention_mask_hides_keys_and_empty_rows_are_zero():
    q = jax.random.normal(jax.random.key(1), (3, WIDTH))
    ctx = jax.random.normal(jax.random.key(2), (4, WIDTH))
    mask = jnp.array([[True, False, False, False], [True, True, False, False], [False, False, False, False]])
    attn = Attention(num_heads=HEADS)
    params = attn.init(jax.random.key(0), q, ctx, mask)
    out = attn.apply(params, q, ctx, mask)
    ctx2 = ctx.at[2:].set(100.0)  # keys no query may see
    np.testing.assert_allclose(out, attn.apply(params, q, ctx2, mask), atol=1e-5)
    ctx3 = ctx.at[1].set(5.0)  # seen by query 1 only
    out3 = attn.apply(params, q, ctx3, mask)
    np.testing.assert_allclose(out[0], out3[0], atol=1e-5)
    assert not np.allclose(out[1], out3[1])
    # A query with no visible key gets the output projection's bias only (zero weights, no NaN).
    bias = params["params"]["out"]["bias"]
    np.testing.assert_allclose(out[2], bias, atol=1e-6)
    assert np.all(np.isfinite(out))


def test_time_causal_mask_and_position_embedding():
    m = np.asarray(time_causal_mask(np.arange(3), np.arange(2) - 1))  # frames at -1, 0; actions at 0, 1, 2
    assert m.all()
    m = np.asarray(time_causal_mask(np.arange(3), np.arange(3)))
    np.testing.assert_array_equal(m, np.tril(np.ones((3, 3), bool)))
    pe = sincos_position_embedding(16, 8)
    assert pe.shape == (16, 8) and np.allclose(pe[0], [0, 0, 0, 0, 1, 1, 1, 1])
    assert len({tuple(np.round(r, 5)) for r in pe}) == 16  # every position distinct
    with pytest.raises(ValueError, match="even width"):
        sincos_position_embedding(4, 7)


def test_qk_norm_bounds_logits_and_rmsnorm():
    x = jax.random.normal(jax.random.key(1), (4, WIDTH))
    attn = Attention(num_heads=HEADS, qk_norm=True)
    params = attn.init(jax.random.key(0), x)
    assert {"query_norm", "key_norm"} <= set(params["params"])
    # With QK-norm the logits depend on directions only: scaling the input by 1000 scales the output
    # (values are linear, biases start at 0) but leaves the attention weights as they were.
    out_small, out_big = attn.apply(params, x), attn.apply(params, 1000.0 * x)
    assert np.all(np.isfinite(out_big))
    np.testing.assert_allclose(out_big / 1000.0, out_small, rtol=1e-3, atol=1e-3 * float(jnp.abs(out_small).max()))
    y = RMSNorm().apply({"params": {"scale": jnp.ones(WIDTH)}}, 3.0 * x)
    np.testing.assert_allclose(jnp.sqrt(jnp.mean(y**2, -1)), 1.0, rtol=1e-4)


def test_errors_name_the_problem():
    x = jnp.zeros((2, 6))
    with pytest.raises(ValueError, match="divisible by num_heads"):
        Attention(num_heads=4).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="needs a context"):
        TransformerBlock(num_heads=2, cross_attention=True).init(jax.random.key(0), jnp.zeros((2, 8)))
    with pytest.raises(ValueError, match="cross_attention=False"):
        TransformerBlock(num_heads=2).init(jax.random.key(0), jnp.zeros((2, 8)), jnp.zeros((3, 8)))
