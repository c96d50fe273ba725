"""PPO learner: truncation bootstrap probe, vmapped seeds, learning, BC init, value warm-up, std clip."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robojax.agents.ppo import learner
from robojax.agents.ppo.config import PPOConfig
from tests.agents.ppo.small import SMALL
from tests.agents.sac.probe_envs import make_probe


def _leaves_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_value_learns_the_truncation_bootstrap():
    # BootstrapProbe: [1, 0] terminates (V = 1); [0, 1] is truncated with itself as final obs, so
    # V = 1 / (1 - gamma) = 2 at gamma 0.5. Treating truncation as termination gives 1; bootstrapping
    # from the post-reset observation gives 5/3.
    env = make_probe("bootstrap_probe", 16)
    config = PPOConfig(
        num_envs=16,
        unroll_length=4,
        num_minibatches=2,
        update_epochs=4,
        discount=0.5,
        learning_rate=1e-2,
        anneal_lr=False,
        reward_scaling=1.0,
        normalize_observations=False,
        total_env_steps=16 * 4 * 60,
        value_hidden_dims=(16,),
        policy_hidden_dims=(16,),
    )
    state, _ = jax.jit(learner.make_train(env, config))(jax.random.PRNGKey(0))
    networks = learner.make_networks(config, env.action_spec)
    values = networks.value.apply(state.params["value"], jnp.eye(2))
    np.testing.assert_allclose(values, [1.0, 2.0], atol=0.05)


def test_vmapped_seeds_equal_seeds_run_one_at_a_time():
    env = make_probe("reach_origin", 16)
    config = dataclasses.replace(SMALL, total_env_steps=16 * 25 * 4)
    train = learner.make_train(env, config)
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    batched_state, batched_metrics = jax.jit(jax.vmap(train))(keys)
    single = jax.jit(train)
    for i, key in enumerate(keys):
        state, metrics = single(key)
        for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(batched_state.params)):
            np.testing.assert_allclose(a, b[i], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(metrics["loss/total"], batched_metrics["loss/total"][i], rtol=1e-4, atol=1e-5)
    # Independent seeds really differ.
    first = jax.tree.leaves(batched_state.params)[0]
    assert not np.allclose(first[0], first[1])


def test_learns_reach_origin_with_in_program_evaluation():
    env = make_probe("reach_origin", SMALL.num_envs)
    eval_env = make_probe("reach_origin", SMALL.eval_episodes)
    train = learner.make_train(env, SMALL, evaluate=learner.make_evaluator(eval_env, SMALL))
    state, metrics = jax.jit(train)(jax.random.PRNGKey(0))
    returns = np.asarray(metrics["train/episode_return"])
    evals = np.asarray(metrics["eval/return"])
    assert returns[0] < 15.0  # doing nothing scores about 12.5
    assert returns[-1] > 20.0, returns
    # Evaluated every iterations_per_eval (10) iterations and at the last one; NaN elsewhere.
    assert np.isfinite(evals[[9, 19, 29, 39]]).all() and np.isnan(np.delete(evals, [9, 19, 29, 39])).all()
    assert evals[-1] > 21.0, evals  # the deterministic policy: a good one returns about 23.5
    assert int(state.env_steps) == SMALL.total_env_steps and int(state.iteration) == SMALL.num_iterations


def _demos(n=2048):
    obs = jax.random.uniform(jax.random.PRNGKey(7), (n, 1), minval=-1.0, maxval=1.0)
    # A proportional controller towards the origin, inside the bounds (tanh mode cannot reach +-1).
    return obs, 0.8 * jnp.tanh(-2.0 * obs)


@pytest.mark.parametrize("action_mode", ["clip", "tanh"])
def test_bc_init_drives_nll_down_and_reproduces_demo_actions(action_mode):
    env = make_probe("reach_origin", SMALL.num_envs)
    config = dataclasses.replace(SMALL, bc_steps=600, bc_batch_size=256, action_mode=action_mode)
    state = jax.jit(lambda k: learner.init(k, env, config))(jax.random.PRNGKey(0))
    obs, actions = _demos()
    bc = jax.jit(lambda s, o, a: learner.bc_init(s, o, a, config, env.action_spec))
    cloned, metrics = bc(state, obs, actions)
    nll = np.asarray(metrics["bc/nll"])
    assert nll.shape == (600,) and nll[-50:].mean() < 0.5 * nll[:10].mean(), nll[[0, -1]]
    predicted = learner.deterministic_action(
        config, env.action_spec, cloned.params["policy"], cloned.obs_normalizer, obs
    )
    assert float(jnp.mean(jnp.abs(predicted - actions))) < 0.05
    assert _leaves_equal(cloned.params["value"], state.params["value"])
    assert _leaves_equal(cloned.opt_state, state.opt_state)


def test_value_only_iteration_leaves_the_policy_untouched():
    env = make_probe("reach_origin", SMALL.num_envs)
    state = jax.jit(lambda k: learner.init(k, env, SMALL))(jax.random.PRNGKey(0))
    new, _ = learner.make_iteration(env, SMALL, value_only=True)(state)
    assert _leaves_equal(new.params["policy"], state.params["policy"])
    assert not _leaves_equal(new.params["value"], state.params["value"])
    # ... and the policy then moves once the warm-up is over.
    newer, _ = learner.make_iteration(env, SMALL)(new)
    assert not _leaves_equal(newer.params["policy"], new.params["policy"])


@pytest.mark.parametrize("log_std_mode", ["state_independent", "network"])
def test_std_clip_holds(log_std_mode):
    # A huge entropy bonus pushes the std up; World4RL's max_log_std = 0 keeps sigma <= 1.
    env = make_probe("reach_origin", SMALL.num_envs)
    config = dataclasses.replace(
        SMALL,
        log_std_mode=log_std_mode,
        max_log_std=0.0,
        init_log_std=-0.1,
        entropy_coef=10.0,
        total_env_steps=16 * 25 * 5,
        learning_rate=3e-2,
    )
    state, metrics = jax.jit(learner.make_train(env, config))(jax.random.PRNGKey(0))
    assert np.all(np.asarray(metrics["policy/std"]) <= 1.0 + 1e-6)
    assert float(metrics["policy/std"][-1]) > 0.99  # it did push against the bound
    networks = learner.make_networks(config, env.action_spec)
    _, log_std = networks.policy.apply(
        state.params["policy"], 100.0 * jax.random.normal(jax.random.PRNGKey(1), (64, 1))
    )
    assert float(jnp.max(log_std)) <= 0.0


def test_init_refuses_a_wrongly_batched_env():
    env = make_probe("reach_origin", 8)
    with pytest.raises(ValueError, match="num_envs = 16"):
        learner.init(jax.random.PRNGKey(0), env, SMALL)
