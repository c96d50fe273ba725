"""RAPTOR student: exactly 2084 parameters, step/sequence semantics, numpy parity, ablation."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import robojax  # noqa: F401
from robojax.agents.raptor import networks as S


def test_parameter_count_is_the_papers_2084():
    params = S.init_student(jax.random.PRNGKey(0))
    assert S.count_parameters(params) == 2084 == S.PAPER_PARAMETER_COUNT
    p = params["params"]
    assert S.count_parameters(p["input_layer"]) == 22 * 16 + 16 == 368
    assert S.count_parameters(p["gru"]) + p["initial_hidden_state"].size == 16 * 16 * 3 * 2 + 16 * 3 * 2 + 16 == 1648
    assert S.count_parameters(p["output_layer"]) == 16 * 4 + 4 == 68
    # flax's own GRUCell is a different parameterisation (no r/z recurrent biases, no h0)
    flax_gru = nn.GRUCell(16).init(jax.random.PRNGKey(0), jnp.zeros(16), jnp.zeros(16))
    assert S.count_parameters(flax_gru) == 1600


def test_feedforward_ablation_same_budget_and_signature():
    params = S.init_feedforward_student(jax.random.PRNGKey(0))
    assert abs(S.count_parameters(params) - 2084) <= 2
    carry = S.feedforward_initial_carry((5,))
    obs = jax.random.normal(jax.random.PRNGKey(1), (5, 22))
    action, carry2 = S.feedforward_student_step(params, carry, obs)
    assert action.shape == (5, 4) and carry2.shape == carry.shape
    np.testing.assert_array_equal(carry2, carry)
    assert np.all(np.abs(np.asarray(action)) <= 1.0)
    fns = S.student_functions("feedforward")
    acts, _ = fns.sequence(params, jnp.stack([obs, obs]))
    np.testing.assert_allclose(acts[1], action, atol=1e-6)


def test_step_batched_and_sequence_matches_loop():
    params = S.init_student(jax.random.PRNGKey(0))
    params = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.PRNGKey(2), x.shape), params)
    obs = jax.random.normal(jax.random.PRNGKey(3), (7, 3, 22))  # (T, batch, 22)
    h = S.initial_carry((3,), params)
    np.testing.assert_allclose(h, np.broadcast_to(params["params"]["initial_hidden_state"], (3, 16)))
    step = jax.jit(S.student_step)
    loop = []
    for t in range(7):
        a, h = step(params, h, obs[t])
        loop.append(a)
    acts, h_seq = jax.jit(S.student_sequence)(params, obs)
    np.testing.assert_allclose(acts, np.stack(loop), atol=1e-6)
    np.testing.assert_allclose(h_seq, h, atol=1e-6)
    assert acts.shape == (7, 3, 4) and np.all(np.abs(np.asarray(acts)) <= 1.0)
    # the hidden state carries information: same obs, different history -> different action
    a1, _ = step(params, S.initial_carry((), params), obs[-1, 0])
    assert np.max(np.abs(np.asarray(a1) - np.asarray(acts[-1, 0]))) > 1e-4


def test_numpy_step_matches_jax():
    params = S.init_student(jax.random.PRNGKey(4))
    params = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(jax.random.PRNGKey(5), x.shape), params)
    w = S.numpy_parameters(params)
    obs = np.asarray(jax.random.normal(jax.random.PRNGKey(6), (20, 22)), np.float32)
    h_np = w["initial_hidden_state"].copy()
    h = S.initial_carry((), params)
    for t in range(20):
        a, h = S.student_step(params, h, obs[t])
        a_np, h_np = S.numpy_student_step(w, h_np, obs[t])
        np.testing.assert_allclose(a_np, a, atol=1e-5)
        np.testing.assert_allclose(h_np, h, atol=1e-5)


def test_bptt_gradients_reach_every_parameter():
    params = S.init_student(jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (10, 2, 22))
    target = jax.random.uniform(jax.random.PRNGKey(2), (10, 2, 4), minval=-1, maxval=1)
    loss = lambda p: jnp.mean((S.student_sequence(p, obs)[0] - target) ** 2)
    grads = jax.grad(loss)(params)
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert np.any(np.asarray(g) != 0), jax.tree_util.keystr(path)
