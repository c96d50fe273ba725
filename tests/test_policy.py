"""robojax.policy: the one policy type, and batching it (vmap by default, the policy's own form when given)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robojax.policy import Policy, batch_policy, stateless

OBS, ACT = 3, 2
W = jnp.asarray(np.random.default_rng(0).normal(size=(ACT, OBS)), jnp.float32)


def _noisy_recurrent(batched=None) -> Policy:
    """a = tanh(W obs + h) + 0.1 noise, h' = 0.5 h + a: a carry, a key, and an int step count."""

    def init_carry():
        return {"h": jnp.zeros(ACT, jnp.float32), "t": jnp.zeros((), jnp.int32)}

    def step(carry, obs, key):
        action = jnp.tanh(W @ obs + carry["h"]) + 0.1 * jax.random.normal(key, (ACT,))
        return action, {"h": 0.5 * carry["h"] + action, "t": carry["t"] + 1}

    return Policy(init_carry, step, name="noisy", stochastic=True, batched=batched)


def _hand_batched(n: int) -> Policy:
    """The same policy written for [n] observations directly (one key per env from the batch key)."""

    def init_carry():
        return {"h": jnp.zeros((n, ACT), jnp.float32), "t": jnp.zeros((n,), jnp.int32)}

    def step(carry, obs, key):
        noise = jnp.stack([jax.random.normal(k, (ACT,)) for k in jax.random.split(key, n)])
        action = jnp.tanh(obs @ W.T + carry["h"]) + 0.1 * noise
        return action, {"h": 0.5 * carry["h"] + action, "t": carry["t"] + 1}

    return Policy(init_carry, step, name="noisy", stochastic=True, batch_size=n)


def _rollout(policy, obs_seq, key):
    carry, actions = policy.init_carry(), []
    for t, obs in enumerate(obs_seq):
        action, carry = jax.jit(policy.step)(carry, obs, jax.random.fold_in(key, t))
        actions.append(np.asarray(action))
    return np.stack(actions), carry


def test_vmap_default_and_explicit_batched_agree():
    n = 4
    obs_seq = jnp.asarray(np.random.default_rng(1).normal(size=(5, n, OBS)), jnp.float32)
    key = jax.random.PRNGKey(3)
    vmapped = batch_policy(_noisy_recurrent(), n)
    explicit = batch_policy(_noisy_recurrent(batched=_hand_batched), n)
    assert vmapped.batch_size == explicit.batch_size == n and vmapped.batched is None
    a_vmap, c_vmap = _rollout(vmapped, obs_seq, key)
    a_own, c_own = _rollout(explicit, obs_seq, key)
    assert a_vmap.shape == (5, n, ACT)
    np.testing.assert_allclose(a_vmap, a_own, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c_vmap["h"], c_own["h"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(c_vmap["t"], [5] * n)
    # Each env of the vmapped batch is the single policy fed that env's key.
    single = _noisy_recurrent()
    carry = single.init_carry()
    for t in range(5):
        env_key = jax.random.split(jax.random.fold_in(key, t), n)[2]
        action, carry = single.step(carry, obs_seq[t, 2], env_key)
        np.testing.assert_allclose(action, a_vmap[t, 2], rtol=1e-5, atol=1e-6)
    assert vmapped.name == "noisy" and vmapped.stochastic  # descriptive fields carried over


def test_batch_policy_checks_sizes():
    policy = _noisy_recurrent()
    batched = batch_policy(policy, 3)
    assert batch_policy(batched, 3) is batched
    with pytest.raises(ValueError, match="already batched for 3"):
        batch_policy(batched, 4)
    wrong = dataclasses.replace(policy, batched=lambda n: _hand_batched(n + 1))
    with pytest.raises(ValueError, match="batch_size=2"):
        batch_policy(wrong, 2)
    with pytest.raises(ValueError, match="n >= 1"):
        batch_policy(policy, 0)


def test_stateless_and_executed_steps():
    policy = stateless(lambda obs, key: W @ obs, name="linear", evals_per_action=1)
    assert policy.init_carry() == ()
    obs = jnp.ones(OBS)
    action, carry = policy.step((), obs, jax.random.PRNGKey(0))
    np.testing.assert_allclose(action, W @ obs, rtol=1e-6)
    assert carry == () and policy.executed_steps == 1 and policy.evals_per_action == 1
    chunked = dataclasses.replace(policy, action_chunking={"chunk_length": 16, "executed_steps": 8})
    assert chunked.executed_steps == 8
