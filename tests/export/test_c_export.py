"""Generic C export: a plain flax MLP policy compiles with the system C compiler and matches JAX."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import robojax  # noqa: F401
from robojax.export import c_export
from robojax.nets.mlp import MLP

CC = c_export.find_c_compiler()


def _mlp_policy():
    net = MLP(hidden_dims=(32, 24), output_dim=3, activation="relu")
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((10,)))
    keys = iter(jax.random.split(jax.random.PRNGKey(1), 8))  # non-zero biases too
    params = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(next(keys), x.shape), params)
    return params, jax.jit(lambda p, o: jnp.tanh(net.apply(p, o)))


@pytest.mark.skipif(CC is None, reason="no system C compiler (cc/gcc/clang)")
def test_mlp_policy_exports_to_c_and_matches_jax(tmp_path):
    params, act = _mlp_policy()
    layers = c_export.dense_layers(params["params"], ["Dense_0", "Dense_1", "Dense_2"], ["relu", "relu", "tanh"])
    policy = c_export.CPolicy(tuple(layers), description="MLP(10->32->24->3), ReLU, tanh output")
    assert (policy.obs_size, policy.action_size) == (10, 3)
    assert policy.num_parameters == sum(x.size for x in jax.tree.leaves(params))
    obs = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (20, 10)), np.float32) * 2.0
    paths = c_export.export_policy_c(policy, tmp_path, "mlp_policy", obs, np.asarray(act(params, obs)))
    header = paths["header"].read_text()
    assert "static const float mlp_policy_Dense_1_kernel[24][32]" in header
    assert "#define MLP_POLICY_NUM_PARAMETERS 1219" in header
    assert "malloc" not in paths["source"].read_text()
    result = c_export.run_selftest(c_export.compile_selftest(tmp_path, "mlp_policy", cc=CC), timing_steps=100)
    assert result["passed"] and result["max_abs_error"] <= 1e-5

    # Independent check on observations the header does not contain.
    fresh = np.asarray(jax.random.normal(jax.random.PRNGKey(7), (16, 10)), np.float32) * 2.0
    c_actions = c_export.run_sequence(tmp_path, "mlp_policy", fresh, 3, cc=CC)
    want = np.asarray(act(params, fresh))
    assert np.max(np.abs(want)) > 0.3 and np.min(np.abs(want)) < 0.99  # neither all zero nor saturated
    np.testing.assert_allclose(c_actions, want, atol=1e-5)


def test_policy_description_is_checked(tmp_path):
    params, _ = _mlp_policy()
    p = params["params"]
    with pytest.raises(ValueError, match="takes 24 inputs but the previous layer gives 32"):
        c_export.CPolicy(tuple(c_export.dense_layers(p, ["Dense_0", "Dense_2"], ["relu", "tanh"])))
    with pytest.raises(ValueError, match="no C form"):
        c_export.CPolicy(tuple(c_export.dense_layers(p, ["Dense_0"], ["gelu"])))
    policy = c_export.CPolicy(tuple(c_export.dense_layers(p, ["Dense_0"], ["relu"])))
    with pytest.raises(ValueError, match=r"reference_obs must have shape \(T >= 1, 10\)"):
        c_export.export_policy_c(policy, tmp_path, "p", np.zeros((4, 9)), np.zeros((4, 32)))
    with pytest.raises(ValueError, match="C identifier"):
        c_export.export_policy_c(policy, tmp_path, "bad-name", np.zeros((4, 10)), np.zeros((4, 32)))
