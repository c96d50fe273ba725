"""PPOConfig rejects bad values with errors naming the field and the fix."""

import numpy as np
import pytest

from robojax.agents.ppo.config import PPOConfig, TrainConfig
from robojax.agents.ppo.networks import check_action_spec
from robojax.envs import ArraySpec


def test_defaults_are_valid_and_derived_sizes_add_up():
    config = PPOConfig()
    assert config.batch_size == config.num_envs * config.unroll_length
    assert config.minibatch_size * config.num_minibatches == config.batch_size
    assert config.num_iterations == config.total_env_steps // config.batch_size
    assert config.iterations_per_eval >= 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_envs": 0}, "PPOConfig.num_envs must be a positive integer"),
        ({"num_envs": True}, "PPOConfig.num_envs must be a positive integer"),
        ({"num_minibatches": 7}, r"num_minibatches \(7\) must divide"),
        ({"total_env_steps": 100}, r"total_env_steps \(100\) is less than one iteration"),
        ({"discount": 1.5}, r"PPOConfig.discount must be in \[0, 1\]"),
        ({"gae_lambda": -0.1}, r"PPOConfig.gae_lambda must be in \[0, 1\]"),
        ({"clip_eps": 0.0}, "PPOConfig.clip_eps must be a finite number > 0"),
        ({"learning_rate": float("nan")}, "PPOConfig.learning_rate must be a finite number > 0"),
        ({"entropy_coef": -1.0}, "PPOConfig.entropy_coef must be a finite number >= 0"),
        ({"value_clip_eps": 0.0}, "PPOConfig.value_clip_eps must be a finite number > 0 or None"),
        ({"activation": "sigmoid"}, "PPOConfig.activation must be one of"),
        ({"log_std_mode": "learned"}, "PPOConfig.log_std_mode must be one of"),
        ({"action_mode": "squash"}, "PPOConfig.action_mode must be one of"),
        ({"init_log_std": 1.0, "max_log_std": 0.0}, r"init_log_std \(1.0\) must lie in"),
        ({"max_log_std": float("inf")}, "PPOConfig.max_log_std must be a finite number"),
        ({"value_warmup_iterations": 10, "total_env_steps": 64 * 32 * 10}, "leaves no policy updates"),
        ({"seed": -1}, "PPOConfig.seed must be a non-negative integer"),
    ],
)
def test_bad_values_raise_naming_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PPOConfig(**kwargs)


def test_hidden_dims_must_be_a_tuple_of_positive_widths():
    with pytest.raises(TypeError, match="PPOConfig.policy_hidden_dims must be a tuple"):
        PPOConfig(policy_hidden_dims=[64, 64])
    with pytest.raises(ValueError, match="PPOConfig.value_hidden_dims needs one or more positive"):
        PPOConfig(value_hidden_dims=(64, 0))


def test_action_spec_must_be_flat_and_bounded():
    check_action_spec(ArraySpec((2,), np.float32, -2.0, 3.0))
    with pytest.raises(ValueError, match="finite action bounds"):
        check_action_spec(ArraySpec((2,), np.float32))
    with pytest.raises(ValueError, match="flat action vector"):
        check_action_spec(ArraySpec((2, 2), np.float32, -1.0, 1.0))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"env": ""}, "TrainConfig.env must be a task name"),
        ({"action_repeat": 0}, "TrainConfig.action_repeat must be a positive integer"),
        ({"checkpoint_interval": 0}, "TrainConfig.checkpoint_interval must be a positive integer"),
        ({"target_eval_return": float("nan")}, "TrainConfig.target_eval_return must be a finite number or None"),
        ({"resume": True}, "TrainConfig.resume needs a workdir"),
        ({"ppo": PPOConfig(bc_steps=10)}, r"bc_steps \(10\) needs bc_demo_path"),
        ({"ppo": PPOConfig(bc_demo_path="demos.npz")}, "bc_steps is 0, so the demos would be ignored"),
    ],
)
def test_train_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)
    with pytest.raises(TypeError, match="TrainConfig.ppo must be a PPOConfig"):
        TrainConfig(ppo={"num_envs": 4})


def test_train_config_defaults_are_valid():
    config = TrainConfig()
    assert config.env == "cartpole_balance" and config.action_repeat == 4 and config.ppo == PPOConfig()
