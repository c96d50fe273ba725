"""Energy descent: the second-order gradient is right, the gradient modes cut what they say, and the
inference rules (fixed, adaptive masked scan, while-loop, best-of-N) agree with each other."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robojax.agents.ebt_policy import descent, learner, losses
from robojax.agents.ebt_policy.config import InferenceConfig
from robojax.agents.ebt_policy.receding_horizon import make_policy
from robojax.policy import batch_policy
from tests.agents.ebt_policy.small import ACTION_DIM, OBS_DIM, tiny_batch, tiny_config, tiny_state

CONFIG = tiny_config()
STATE = tiny_state(CONFIG)
BATCH = tiny_batch(CONFIG)


def _unroll_loss(params, config, num_steps, obs, expert, a0, key):
    energy_fn = learner.energy_function(params, config, ACTION_DIM, obs)
    out = descent.unroll(energy_fn, a0, key, num_steps, config, jnp.exp(params["log_alpha"]))
    return losses.unroll_loss(losses.step_errors(out.chunks, expert), out.mask, config.loss_steps)


def _inputs(dtype=jnp.float32):
    obs = STATE.normalizers.obs.normalize(BATCH["obs"]).astype(dtype)
    expert = STATE.normalizers.action.normalize(BATCH["actions"]).astype(dtype)
    a0 = jax.random.normal(jax.random.key(5), expert.shape, dtype)
    return obs, expert, a0


@functools.cache
def _grad_fn(config):
    return jax.jit(jax.grad(_unroll_loss), static_argnums=(1,))


def _grads(config, num_steps):
    obs, expert, a0 = _inputs()
    g = _grad_fn(config)(STATE.params, config, jnp.int32(num_steps), obs, expert, a0, jax.random.key(6))
    return jax.tree.leaves(g["model"])


def _same(ga, gb):
    """Equal to float32 round-off (relative to each leaf's largest entry)."""
    return all(
        np.allclose(a, b, rtol=1e-4, atol=1e-4 * float(np.abs(b).max()) + 1e-9) for a, b in zip(ga, gb, strict=True)
    )


def test_unrolled_gradient_matches_finite_differences():
    """The full mode differentiates through every grad_a E (second order): checked in float64."""
    config = tiny_config(step_size=20.0, train_steps_max=3)
    with jax.enable_x64(True):
        params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), STATE.params)
        obs, expert, a0 = _inputs(jnp.float64)
        key = jax.random.key(6)
        f = jax.jit(lambda p: _unroll_loss(p, config, jnp.int32(3), obs, expert, a0, key))
        grad = jax.grad(f)(params)
        leaves, tree = jax.tree.flatten(params["model"])
        rng = np.random.default_rng(0)
        direction = jax.tree.unflatten(tree, [jnp.asarray(rng.normal(size=x.shape)) for x in leaves])
        analytic = sum(
            float(jnp.vdot(g, d)) for g, d in zip(jax.tree.leaves(grad["model"]), jax.tree.leaves(direction))
        )

        def shifted(eps):
            model = jax.tree.map(lambda p, d: p + eps * d, params["model"], direction)
            return float(f({**params, "model": model}))

        eps = 1e-5
        numeric = (shifted(eps) - shifted(-eps)) / (2 * eps)
    assert abs(analytic) > 1e-3
    np.testing.assert_allclose(analytic, numeric, rtol=1e-4)


def test_gradient_modes_cut_what_they_say():
    # Loss on the last step only: cutting between steps and keeping only the last step are the same
    # thing, and both differ from back-propagating through the whole unroll.
    last = {g: _grads(tiny_config(gradient=g, loss_steps="last"), 3) for g in descent_modes()}
    assert _same(last["stop_between"], last["last_step"])
    assert not _same(last["full"], last["last_step"])
    # Loss on every step: stop_between keeps each step's own gradient, last_step only the last one's.
    every = {g: _grads(tiny_config(gradient=g, loss_steps="all"), 3) for g in ("stop_between", "last_step")}
    assert not _same(every["stop_between"], every["last_step"])
    # A one-step unroll has nothing to cut: every mode's gradient is the full one (same compiled
    # functions, num_steps is traced).
    one = {g: _grads(tiny_config(gradient=g, loss_steps="last"), 1) for g in descent_modes()}
    assert _same(one["full"], one["stop_between"]) and _same(one["full"], one["last_step"])


def descent_modes():
    return ("full", "stop_between", "last_step")


def _plan(inference, obs, key, params=None):
    return learner.plan(params or STATE.params, STATE.normalizers, CONFIG, inference, ACTION_DIM, obs, key)


def test_fixed_and_adaptive_step_counts():
    obs = BATCH["obs"][:4]
    fixed = _plan(InferenceConfig(inference_steps=3), obs, jax.random.key(0))
    np.testing.assert_array_equal(fixed.steps, 3)
    assert fixed.chunk.shape == (4, CONFIG.pred_horizon, ACTION_DIM) and fixed.energies.shape == (3, 4)
    never = _plan(InferenceConfig(adaptive=True, grad_tol=0.0, max_steps=5), obs, jax.random.key(0))
    np.testing.assert_array_equal(never.steps, 5)
    at_once = _plan(InferenceConfig(adaptive=True, grad_tol=1e9, max_steps=5), obs, jax.random.key(0))
    np.testing.assert_array_equal(at_once.steps, 1)


@pytest.mark.parametrize("quantile", [0.3, 0.7])
def test_masked_scan_and_while_loop_agree(quantile):
    obs = BATCH["obs"][:1]
    probe = _plan(InferenceConfig(adaptive=True, grad_tol=0.0, max_steps=6), obs, jax.random.key(3))
    tol = float(np.quantile(np.asarray(probe.grad_norms[:, 0]), quantile))  # stops part-way
    inference = InferenceConfig(adaptive=True, grad_tol=tol, max_steps=6)
    scanned = _plan(inference, obs, jax.random.key(3))
    chunk, energy, steps = learner.plan_while(
        STATE.params, STATE.normalizers, CONFIG, inference, ACTION_DIM, obs, jax.random.key(3)
    )
    assert int(steps[0]) == int(scanned.steps[0])
    np.testing.assert_allclose(chunk, scanned.chunk, atol=1e-5)
    np.testing.assert_allclose(energy, scanned.energy, atol=1e-5)
    with pytest.raises(ValueError, match="batch 1"):
        learner.plan_while(
            STATE.params, STATE.normalizers, CONFIG, inference, ACTION_DIM, BATCH["obs"][:2], jax.random.key(0)
        )


def test_best_of_n_keeps_the_lowest_energy_plan():
    obs = BATCH["obs"][:3]
    inference = InferenceConfig(inference_steps=2)
    n = 5
    energy_fn = learner.energy_function(
        STATE.params, CONFIG, ACTION_DIM, jnp.repeat(STATE.normalizers.obs.normalize(obs), n, 0)
    )
    a0 = jax.random.normal(jax.random.key(2), (3, n, CONFIG.pred_horizon, ACTION_DIM))
    alpha = jnp.exp(STATE.params["log_alpha"])
    run = functools.partial(
        descent.descend, energy_fn, key=jax.random.key(4), config=CONFIG, inference=inference, alpha=alpha
    )
    kept, best = descent.best_of_n(run, a0)
    every = run(a0.reshape(3 * n, CONFIG.pred_horizon, ACTION_DIM))
    energies = np.asarray(every.energy).reshape(3, n)
    np.testing.assert_array_equal(best, energies.argmin(1))
    np.testing.assert_allclose(kept.energy, energies.min(1), rtol=1e-6)
    chunks = np.asarray(every.chunk).reshape(3, n, CONFIG.pred_horizon, ACTION_DIM)
    np.testing.assert_allclose(kept.chunk, chunks[np.arange(3), energies.argmin(1)], atol=1e-6)
    assert kept.energies.shape == (2, 3)
    assert len(set(np.round(energies[0], 6))) == n  # the samples really differ


def test_receding_horizon_policy_carries_the_plan_energy():
    inference = InferenceConfig(inference_steps=2)
    policy = make_policy(STATE.params, STATE.normalizers, CONFIG, inference, OBS_DIM, ACTION_DIM)
    assert policy.executed_steps == CONFIG.action_horizon == 2
    assert policy.action_chunking["inference"] == "ebt" and policy.evals_per_action == (3 * 2 + 1) / 2
    step = jax.jit(policy.step)
    carry = policy.init_carry()
    obs = np.asarray(BATCH["obs"][:, -1])
    energies, actions = [], []
    for t in range(4):
        action, carry = step(carry, obs[t], jax.random.key(t))
        assert action.shape == (ACTION_DIM,) and np.all(np.abs(np.asarray(action)) <= 1.0)
        energies.append(float(carry.plan_info["energy"][0]))
        actions.append(np.asarray(action))
        assert int(carry.plan_info["steps"][0]) == 2
    # One plan per Ta = 2 actions: the energy changes only when the policy replans.
    assert energies[0] == energies[1] and energies[2] == energies[3] and energies[1] != energies[2]
    # The batched form (one clock for all envs) plans once per Ta for the whole batch.
    batched = batch_policy(policy, 3)
    action, bcarry = jax.jit(batched.step)(batched.init_carry(), obs[:3], jax.random.key(0))
    assert action.shape == (3, ACTION_DIM) and bcarry.plan_info["energy"].shape == (3,)
    # Adaptive at batch 1 runs the while-loop planner; it reports the steps it used.
    adaptive = make_policy(
        STATE.params, STATE.normalizers, CONFIG, InferenceConfig(adaptive=True, grad_tol=1e9), OBS_DIM, ACTION_DIM
    )
    _, acarry = jax.jit(adaptive.step)(adaptive.init_carry(), obs[0], jax.random.key(0))
    assert int(acarry.plan_info["steps"][0]) == 1


def test_warm_start_and_escalation_count_their_work():
    obs = np.asarray(BATCH["obs"][:, -1])

    def run(inference, n=4, batch=None):
        policy = make_policy(STATE.params, STATE.normalizers, CONFIG, inference, OBS_DIM, ACTION_DIM)
        if batch:
            policy = batch_policy(policy, batch)
        step, carry, infos = jax.jit(policy.step), policy.init_carry(), []
        for t in range(n):
            _, carry = step(carry, obs[t : t + batch] if batch else obs[t], jax.random.key(t))
            infos.append(jax.device_get(carry.plan_info))
        return infos

    # Warm start: the first plan is cold (2 steps, 3*2+1 forwards), later ones warm (1 step).
    warm = run(InferenceConfig(inference_steps=2, warm_start=True, warm_steps=1))
    assert [int(i["steps"][0]) for i in warm] == [2, 2, 1, 1]
    assert [float(i["work"][0]) for i in warm] == [7.0, 7.0, 4.0, 4.0]
    # Escalation: above the threshold a best-of-3, 4-step plan follows and the lower energy is kept.
    base = run(InferenceConfig(inference_steps=2), n=1)[0]
    never = run(InferenceConfig(inference_steps=2, escalate=True, energy_threshold=1e9), n=1)[0]
    kwargs = dict(inference_steps=2, escalate=True, energy_threshold=-1e9, escalate_steps=4, escalate_samples=3)
    always = run(InferenceConfig(**kwargs), n=1)[0]
    assert not never["escalated"][0] and float(never["work"][0]) == 7.0 and never["energy"][0] == base["energy"][0]
    assert always["escalated"][0] and float(always["work"][0]) == 7.0 + 3 * (3 * 4 + 1)
    assert always["energy"][0] <= base["energy"][0] + 1e-6
    # Batched, the same rule per env: every env escalates at a threshold below all energies.
    batched = run(InferenceConfig(**kwargs), n=1, batch=3)[0]
    assert batched["escalated"].all() and np.all(batched["work"] == 7.0 + 39.0)
