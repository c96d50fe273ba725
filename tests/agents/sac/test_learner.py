"""SAC learner: separate optimisers, REDQ target subset, config validation."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robojax.agents.sac import learner
from robojax.agents.sac.config import SACConfig, TrainConfig
from robojax.data.replay import Transition
from robojax.envs import ArraySpec

OBS, ACT = ArraySpec((3,), np.float32), ArraySpec((2,), np.float32, -1.0, 1.0)
CONFIG = SACConfig(
    actor_hidden_dims=(8, 8), critic_hidden_dims=(8, 8), critic_ensemble_size=4, batch_size=16, utd_ratio=3
)


def _batches(key, utd, batch):
    k = jax.random.split(key, 4)
    return Transition(
        obs=jax.random.normal(k[0], (utd, batch, 3)),
        action=jax.random.uniform(k[1], (utd, batch, 2), minval=-1, maxval=1),
        reward=jax.random.uniform(k[2], (utd, batch)),
        next_obs=jax.random.normal(k[3], (utd, batch, 3)),
        terminated=jnp.zeros((utd, batch), bool),
        truncated=jnp.zeros((utd, batch), bool),
        intervention=jnp.zeros((utd, batch), bool),
    )


@pytest.fixture(scope="module")
def state():
    return jax.jit(lambda key: learner.init(key, OBS, ACT, CONFIG))(jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def critic_only():
    return jax.jit(lambda s, b: jax.lax.scan(learner.update_critic, s, b))


def _equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_critic_only_steps_leave_actor_and_temperature_untouched(state, critic_only):
    new, metrics = critic_only(state, _batches(jax.random.PRNGKey(1), 3, 16))
    assert _equal(new.actor_params, state.actor_params)
    assert _equal(new.actor_opt_state, state.actor_opt_state)  # Adam moments and count too
    assert _equal(new.temperature_params, state.temperature_params)
    assert _equal(new.temperature_opt_state, state.temperature_opt_state)
    assert not _equal(new.critic_params, state.critic_params)
    assert not _equal(new.target_critic_params, state.target_critic_params)
    assert int(new.critic_steps) == 3 and int(new.actor_steps) == 0
    assert metrics["critic_loss"].shape == (3,)


def test_update_runs_utd_critic_steps_then_one_actor_step(state):
    new, metrics = jax.jit(learner.update)(state, _batches(jax.random.PRNGKey(2), 3, 16))
    assert int(new.critic_steps) == 3 and int(new.actor_steps) == 1
    assert not _equal(new.actor_params, state.actor_params)
    assert not _equal(new.temperature_params, state.temperature_params)
    assert int(new.critic_opt_state[0].count) == 3 and int(new.actor_opt_state[0].count) == 1  # Adam steps
    assert set(metrics) == set(learner.metric_names())
    assert all(np.isfinite(float(v)) for v in metrics.values())
    with pytest.raises(ValueError, match="utd_ratio is 3"):
        learner.update(state, _batches(jax.random.PRNGKey(2), 2, 16))


def test_target_min_uses_distinct_critics(state):
    # Make target critic i output exactly i, so y = min over the subset (r = 0, gamma = 1).
    config = dataclasses.replace(CONFIG, discount=1.0, backup_entropy=False, critic_subset_size=2)
    s = state.replace(config=config)
    head = s.target_critic_params["params"]["MLP_0"]["Dense_2"]
    members = jnp.arange(4, dtype=jnp.float32)[:, None]
    target = jax.tree.map(lambda x: x, s.target_critic_params)
    target["params"]["MLP_0"]["Dense_2"] = {"kernel": jnp.zeros_like(head["kernel"]), "bias": members}
    s = s.replace(target_critic_params=target)
    batch = jax.tree.map(lambda x: x[0].at[:].set(x[0][0]), _batches(jax.random.PRNGKey(3), 1, 4))
    batch = batch.replace(reward=jnp.zeros(4))

    def y(key):
        return learner.update_critic(s.replace(rng=key), batch)[1]["target_mean"]

    ys = np.asarray(jax.jit(jax.vmap(y))(jax.random.split(jax.random.PRNGKey(4), 2000)))
    np.testing.assert_allclose(ys, np.round(ys), atol=1e-5)
    # min of two distinct members of {0,1,2,3}: 3 is impossible, 0 has probability 1/2
    assert set(np.round(ys).astype(int).tolist()) == {0, 1, 2}
    assert 0.42 < np.mean(np.round(ys) == 0) < 0.58


def test_act_shapes_and_bounds(state):
    obs = jnp.ones((5, 3))
    a = learner.act(state, obs, jax.random.PRNGKey(0))
    assert a.shape == (5, 2) and bool(jnp.all(jnp.abs(a) <= 1.0))
    assert learner.act_deterministic(state, obs[0]).shape == (2,)


def test_observation_normalizer_only_when_enabled(state):
    obs = jnp.full((4, 3), 7.0)
    assert learner.update_observation_normalizer(state, obs) is state
    on = state.replace(config=dataclasses.replace(CONFIG, normalize_observations=True))
    on = learner.update_observation_normalizer(on, obs)
    np.testing.assert_allclose(on.obs_normalizer.mean, 7.0)
    assert float(on.obs_normalizer.count) == 4


def test_rejects_envs_with_other_action_bounds():
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        learner.init(jax.random.PRNGKey(0), OBS, ArraySpec((2,), np.float32, -2.0, 2.0), CONFIG)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(critic_subset_size=11), "cannot exceed critic_ensemble_size"),
        (dict(batch_size=-4), "batch_size must be a positive integer"),
        (dict(utd_ratio=0), "utd_ratio must be a positive integer"),
        (dict(discount=1.5), r"discount must be in \(0, 1\]"),
        (dict(activation="swish"), "activation 'swish' unknown"),
        (dict(actor_hidden_dims=[64, 64]), "tuple of layer widths"),
        (dict(critic_hidden_dims=(64, 0)), "positive layer widths"),
        (dict(actor_lr=0.0), "actor_lr must be a positive number"),
        (dict(log_std_min=3.0), "log_std_min"),
    ],
)
def test_sac_config_errors_name_the_field(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        SACConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_envs=0), "num_envs must be a positive integer"),
        (dict(total_env_steps=-1), "total_env_steps must be a positive integer"),
        (dict(learning_starts=-5), "learning_starts must be >= 0"),
        (dict(seed=-1), "seed must be a non-negative integer"),
        (dict(resume=True), "resume needs a workdir"),
        (dict(num_envs=64, replay_capacity=10), "replay_capacity"),
        (dict(demo_path="d.npz", sac=SACConfig(batch_size=15)), "must be even with demos"),
    ],
)
def test_train_config_errors_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_default_target_entropy_is_minus_half_action_dim():
    assert SACConfig().resolved_target_entropy(6) == -3.0
    assert SACConfig(target_entropy=-1.0).resolved_target_entropy(6) == -1.0
