"""The tiny PPO config the learner and train tests share (probe envs, a few seconds per run)."""

from robojax.agents.ppo.config import PPOConfig

BATCH = 16 * 25  # env steps per iteration
SMALL = PPOConfig(
    num_envs=16,
    unroll_length=25,
    num_minibatches=4,
    update_epochs=4,
    policy_hidden_dims=(32, 32),
    value_hidden_dims=(32, 32),
    reward_scaling=1.0,
    learning_rate=3e-3,
    total_env_steps=BATCH * 40,
    eval_interval=BATCH * 10,
    eval_episodes=8,
)
