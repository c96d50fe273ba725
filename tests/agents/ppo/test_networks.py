"""PPO networks: action mapping onto arbitrary bounds, small initial actions, the log-std modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robojax.agents.ppo.config import PPOConfig
from robojax.agents.ppo.networks import make_networks
from robojax.envs import ArraySpec

SPEC = ArraySpec((2,), np.float32, np.array([-2.0, 0.0]), np.array([2.0, 1.0]))


@pytest.mark.parametrize("action_mode", ["clip", "tanh"])
def test_actions_land_inside_the_bounds_and_invert(action_mode):
    networks = make_networks(PPOConfig(action_mode=action_mode), SPEC)
    u = jnp.array([[-100.0, 100.0], [0.0, 0.0], [0.3, -0.4]])
    action = networks.to_env_action(u)
    assert np.all(action >= SPEC.low) and np.all(action <= SPEC.high)
    np.testing.assert_allclose(action[1], [0.0, 0.5], atol=1e-6)  # u = 0 is the middle of the bounds
    np.testing.assert_allclose(networks.to_env_action(networks.to_pre_action(action[2])), action[2], rtol=1e-5)
    if action_mode == "clip":
        np.testing.assert_allclose(action[0], [-2.0, 1.0])


@pytest.mark.parametrize("log_std_mode", ["state_independent", "network"])
def test_initial_policy_is_near_zero_mean_with_the_initial_std(log_std_mode):
    config = PPOConfig(log_std_mode=log_std_mode, init_log_std=-0.5)
    networks = make_networks(config, SPEC)
    obs = jax.random.normal(jax.random.PRNGKey(0), (32, 4))
    params = networks.policy.init(jax.random.PRNGKey(1), obs)
    mean, log_std = networks.policy.apply(params, obs)
    assert mean.shape == log_std.shape == (32, 2)
    assert float(jnp.max(jnp.abs(mean))) < 0.2  # output gain 0.01 (orthogonal)
    np.testing.assert_allclose(log_std, -0.5, atol=0.1 if log_std_mode == "network" else 0.0)
    assert networks.value.apply(networks.value.init(jax.random.PRNGKey(2), obs), obs).shape == (32,)
