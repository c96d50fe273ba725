"""Diffusion Policy learner: a tiny MLP-denoiser policy learns to drive a 1-D point to its goal."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robojax.agents.diffusion_policy import learner, losses, receding_horizon
from robojax.agents.diffusion_policy.config import DiffusionPolicyConfig, InferenceConfig
from robojax.agents.diffusion_policy.train import init_loop_state, load_dataset, make_train_call, prepare_data
from robojax.policy import batch_policy
from tests.agents.diffusion_policy.datasets import POINT_LENGTH, POINT_STEP, write_point_dataset

TINY = dict(
    denoiser="mlp",
    mlp_hidden_dims=(64, 64),
    diffusion_step_embed_dim=16,
    obs_horizon=1,
    action_horizon=2,
    pred_horizon=4,
    num_train_timesteps=20,
    learning_rate=3e-3,
    warmup_steps=20,
    batch_size=64,
    ema_power=0.75,
)


def rollout_errors(params, normalizers, config, inference, episodes=64, seed=1):
    """Closed-loop |x - goal| after POINT_LENGTH steps, batched, with the receding-horizon policy."""
    policy = batch_policy(receding_horizon.make_policy(params, normalizers, config, inference, 2, 1), episodes)
    rng = np.random.default_rng(seed)
    x0, goal = (jnp.asarray(rng.uniform(-1, 1, episodes), jnp.float32) for _ in range(2))

    @jax.jit
    def run(key):
        def body(carry, k):
            x, pc = carry
            action, pc = policy.step(pc, jnp.stack([x, goal], -1), k)
            return (x + POINT_STEP * action[:, 0], pc), None

        (x, _), _ = jax.lax.scan(body, (x0, policy.init_carry()), jax.random.split(key, POINT_LENGTH))
        return jnp.abs(x - goal)

    return np.asarray(run(jax.random.PRNGKey(seed))), np.asarray(jnp.abs(x0 - goal))


@pytest.fixture(scope="module")
def point(tmp_path_factory):
    path = write_point_dataset(str(tmp_path_factory.mktemp("point") / "data"), num_episodes=40)
    return load_dataset(path)


@pytest.mark.parametrize("objective", ["diffusion", "mse"])
def test_tiny_policy_learns_to_reach_the_goal(point, objective):
    config = DiffusionPolicyConfig(objective=objective, total_grad_steps=600, **TINY)
    data, normalizers = prepare_data(point, config)
    state = init_loop_state(jax.random.PRNGKey(0), point, config, normalizers)
    inference = InferenceConfig(inference="ddim", ddim_steps=5)
    del normalizers  # the train call donates the state, normalisers included: use the state's
    before, start = rollout_errors(state.learner.ema_params, state.learner.normalizers, config, inference)
    call = make_train_call(config, 200)
    losses_seen = []
    for _ in range(3):
        state, metrics = call(state, data)
        losses_seen.append(float(metrics["loss"]))
    assert losses_seen[-1] < 0.75 * losses_seen[0], losses_seen
    normalizers = state.learner.normalizers
    after, _ = rollout_errors(state.learner.ema_params, normalizers, config, inference)
    # Success: within 0.1 of the goal after 20 steps (the expert gets within 1e-6). The untrained
    # policy rarely is; the trained one mostly is, and its median error is a fraction of the start's.
    assert np.mean(before < 0.1) <= 0.25 and np.median(start) > 0.5
    success = np.mean(after < 0.1)
    assert success >= 0.6 and np.median(after) < 0.1, (objective, success, np.median(after))
    if objective == "diffusion":
        # RTI from the shifted chunk (3 denoiser calls) keeps the success of the cold sampler.
        rti = InferenceConfig(inference="rti", ddim_steps=5, rti_start_step=3, rti_steps=3)
        warm, _ = rollout_errors(state.learner.ema_params, normalizers, config, rti)
        assert np.mean(warm < 0.1) >= 0.6, np.mean(warm)
        ddpm, _ = rollout_errors(state.learner.ema_params, normalizers, config, InferenceConfig(inference="ddpm"))
        assert np.mean(ddpm < 0.1) >= 0.6, np.mean(ddpm)


def test_update_is_jittable_and_tracks_ema_and_schedule(point):
    config = DiffusionPolicyConfig(total_grad_steps=10, **{**TINY, "warmup_steps": 4})
    data, normalizers = prepare_data(point, config)
    state = learner.init(jax.random.PRNGKey(0), 2, 1, config, normalizers)
    batch = {"obs": data["obs"][:8], "actions": data["actions"][:8]}
    update = jax.jit(learner.update)
    state1, m1 = update(state, batch)
    # Chi et al.'s EMA: decay 0 at the first step, so the EMA equals the updated weights.
    assert float(m1["ema_decay"]) == 0.0 and float(m1["learning_rate"]) == 0.0
    np.testing.assert_allclose(jax.tree.leaves(state1.ema_params)[0], jax.tree.leaves(state1.params)[0])
    state2, m2 = update(state1, batch)
    assert 0.0 < float(m2["ema_decay"]) < 1.0 and float(m2["learning_rate"]) > 0.0
    assert int(state2.step) == 2
    assert float(losses.ema_decay(jnp.asarray(10_000), 0.75, 0.9999)) == pytest.approx(1 - 10_001**-0.75)


def test_gripper_scale_puts_discrete_dims_in_a_tenth():
    config = DiffusionPolicyConfig(discrete_action_scale=10.0, **TINY)
    obs = np.zeros((4, 2), np.float32)
    actions = np.array([[0.0, 1.0], [2.0, -1.0], [1.0, 1.0], [0.5, -1.0]], np.float32)
    norm = learner.fit_normalizers(obs, actions, config, discrete_dims=(1,))
    model = np.asarray(learner.actions_to_model(jnp.asarray(actions), norm, config))
    np.testing.assert_allclose(model[:, 1], [0.1, -0.1, 0.1, -0.1], rtol=1e-6)
    np.testing.assert_allclose(model[:, 0], [-1.0, 1.0, 0.0, -0.5], rtol=1e-6)
    back = np.asarray(learner.actions_from_model(jnp.asarray(model), norm, config))
    np.testing.assert_allclose(back, actions, rtol=1e-5, atol=1e-6)


def test_single_env_policy_step_replans_every_action_steps(point):
    config = DiffusionPolicyConfig(total_grad_steps=10, **TINY)
    _, normalizers = prepare_data(point, config)
    state = learner.init(jax.random.PRNGKey(0), 2, 1, config, normalizers)
    policy = receding_horizon.policy_from_state(
        state, InferenceConfig(inference="rti", ddim_steps=4, rti_start_step=2, rti_steps=2)
    )
    assert policy.extras["nfe"] == {"first_chunk": 4, "per_chunk": 2, "per_action": 1.0, "action_steps": 2}
    assert policy.extras["cold_timesteps"] == (15, 10, 5, 0) and policy.extras["warm_timesteps"] == (2, 0)
    step = jax.jit(policy.step)
    carry = policy.init_carry()
    indices, chunks = [], []
    for i in range(5):
        action, carry = step(carry, jnp.array([0.1 * i, 0.5]), jax.random.PRNGKey(i))
        assert action.shape == (1,) and bool(carry.has_chunk)
        indices.append(int(carry.index))
        chunks.append(np.asarray(carry.chunk))
    assert indices == [1, 2, 1, 2, 1]
    np.testing.assert_array_equal(chunks[0], chunks[1])  # no replanning inside a chunk
    assert not np.array_equal(chunks[1], chunks[2])
    np.testing.assert_allclose(np.asarray(carry.obs_history)[0, -1], [0.4, 0.5], rtol=1e-6)


def test_config_errors_name_the_fix():
    with pytest.raises(ValueError, match="divisible by 2"):
        DiffusionPolicyConfig(denoiser="unet", pred_horizon=10, down_dims=(8, 16, 32))
    with pytest.raises(ValueError, match="cannot exceed pred_horizon"):
        DiffusionPolicyConfig(action_horizon=20)
    with pytest.raises(ValueError, match="objective"):
        DiffusionPolicyConfig(objective="gan")
    with pytest.raises(ValueError, match="rti_steps"):
        InferenceConfig(rti_start_step=1, rti_steps=3)
