"""PPO -> artifact: parity with learner.policy per seed, every source layout, control_dt, and the CLI."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import robojax.deploy as deploy
from robojax import checkpoint as ckpt
from robojax.agents.ppo import learner
from robojax.agents.ppo import train as ppo_train
from robojax.agents.ppo.config import PPOConfig, TrainConfig
from robojax.agents.ppo.export import export_ppo, load_ppo_source, source_from_train_state
from robojax.data import normalizer
from tests.agents.sac.probe_envs import make_probe

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = make_probe("reach_origin_3d_obs", 4)
CONFIG = PPOConfig(
    num_envs=4,
    unroll_length=8,
    num_minibatches=2,
    total_env_steps=64,
    eval_episodes=2,
    policy_hidden_dims=(16, 16),
    value_hidden_dims=(8,),
    init_log_std=-0.5,
    num_seeds=2,
)
TRAIN_CONFIG = TrainConfig(env="reach_origin_3d_obs", action_repeat=1, ppo=CONFIG)


def _observations(n=8):
    rng = np.random.default_rng(1)
    return (rng.normal(3.0, 5.0, size=(n, 3)) * np.array([0.5, 2.0, 4.0])).astype(np.float32)


@pytest.fixture(scope="module")
def state():
    """Two seeds' states with non-trivial parameters and statistics (means far from 0, scales far from 1)."""
    keys = jnp.stack([jax.random.PRNGKey(s) for s in (0, 1)])
    s = ppo_train.make_init(ENV, ppo_train.learning_config(CONFIG))(keys)
    # The mean's output layer starts near 0 (gain 0.01); perturb it so that actions differ per obs.
    kernel = s.params["policy"]["params"]["mean"]["kernel"]
    noise = jax.random.normal(jax.random.PRNGKey(3), kernel.shape)
    params = jax.tree.map(lambda x: x, s.params)
    params["policy"]["params"]["mean"]["kernel"] = kernel + 0.5 * noise
    data = jnp.asarray(_observations(512))
    stats = jax.vmap(lambda st, shift: normalizer.update(st, data + shift))(s.obs_normalizer, jnp.array([0.0, 2.0]))
    return s.replace(params=params, obs_normalizer=stats)


def _expected(state, seed_index, obs, deterministic=True, key=None):
    pick = lambda tree: jax.tree.map(lambda x: x[seed_index], tree)
    policy = learner.policy(
        CONFIG, ENV.action_spec, pick(state.params["policy"]), pick(state.obs_normalizer), deterministic
    )
    return np.asarray(policy.step((), obs, key)[0])


def _metadata():
    metadata = ppo_train.run_metadata(ENV, TRAIN_CONFIG)
    return {**metadata, "control_dt": 0.04, "seeds": [0, 1], "num_seeds": 2}


@pytest.mark.parametrize("seed_index", [0, 1])
def test_deterministic_parity_with_learner_per_seed(state, seed_index, tmp_path):
    source = source_from_train_state(
        state, CONFIG, ENV.observation_spec, ENV.action_spec, env="probe", control_dt=0.04, seed_index=seed_index
    )
    policy = deploy.load(export_ppo(source, tmp_path / "det"))
    obs = _observations()
    expected = _expected(state, seed_index, obs)
    np.testing.assert_allclose(np.stack([policy(o) for o in obs]), expected, rtol=1e-5, atol=1e-6)
    assert np.abs(expected - _expected(state, 1 - seed_index, obs)).max() > 1e-2  # the seeds differ
    side = policy.metadata
    stats = side["normalization"]["observation"]
    np.testing.assert_allclose(stats["mean"], np.asarray(state.obs_normalizer.mean[seed_index]), rtol=1e-6)
    assert stats["applied"] and side["carry"] == [] and not side["stochastic"] and side["control_dt"] == 0.04
    assert side["metadata"]["learner"] == "ppo" and side["metadata"]["seed"] == seed_index
    assert side["metadata"]["ppo_config"]["policy_hidden_dims"] == [16, 16]


def test_stochastic_parity_with_learner(state, tmp_path):
    source = source_from_train_state(state, CONFIG, ENV.observation_spec, ENV.action_spec, seed_index=1)
    policy = deploy.load(export_ppo(source, tmp_path / "sto", control_dt=0.04, deterministic=False), seed=7)
    assert policy.metadata["stochastic"]
    key = jax.random.PRNGKey(7)
    for o in _observations(3):  # the artifact splits its key each step: (use, next) = split(key)
        use, key = jax.random.split(key)
        np.testing.assert_allclose(policy(o), _expected(state, 1, o, False, use), rtol=1e-5, atol=1e-6)


def test_sources_seed_index_and_cli(state, tmp_path):
    run = tmp_path / "run"
    ckpt.save_policy(
        run / "policy", {"policy_params": state.params["policy"], "obs_normalizer": state.obs_normalizer}, _metadata()
    )
    with ckpt.Checkpointer(run / "checkpoints") as c:
        c.save(64, state, metadata=_metadata())
    obs = _observations(4)
    for path, step in (
        (run, None),
        (run / "policy", None),
        (run, 64),
        (run / "checkpoints", None),
        (run / "checkpoints" / "64", None),
    ):
        source = load_ppo_source(path, step=step, seed_index=1)
        assert source.env == "reach_origin_3d_obs" and source.config == CONFIG and source.seed == 1
        policy = deploy.load(export_ppo(source, tmp_path / "a", overwrite=True))  # control_dt from the run
        np.testing.assert_allclose(np.stack([policy(o) for o in obs]), _expected(state, 1, obs), rtol=1e-5, atol=1e-6)
        assert policy.metadata["control_dt"] == 0.04
        assert policy.metadata["metadata"]["checkpoint_step"] == (None if source.path.endswith("policy") else 64)
    with pytest.raises(ValueError, match=r"holds 2 seed\(s\); seed_index must be in \[0, 2\)"):
        load_ppo_source(run, seed_index=2)
    with pytest.raises(FileNotFoundError):
        load_ppo_source(tmp_path / "nowhere")

    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "experiments.export_policy", f"--checkpoint={run}", f"--out={out}", "--seed_index=1"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "artifact.json") as f:
        side = json.load(f)
    assert side["metadata"]["learner"] == "ppo" and side["metadata"]["seed_index"] == 1
    assert side["source_checkpoint"]["sha256"] == deploy.sha256_tree(run / "policy")["sha256"]
    policy = deploy.load(out)
    np.testing.assert_allclose(np.stack([policy(o) for o in obs]), _expected(state, 1, obs), rtol=1e-5, atol=1e-6)


def test_control_dt_is_the_task_dt_times_action_repeat():
    env = ppo_train.make_env("cartpole_balance", 2, 4)
    metadata = ppo_train.run_metadata(env, dataclasses.replace(TrainConfig(), action_repeat=4))
    # cartpole runs at 100 Hz for 1000 steps: with k = 4 the policy acts at 25 Hz for 250 steps.
    assert metadata["control_dt"] == pytest.approx(0.04) and metadata["episode_length"] == 250
