"""Diffusion Policy training loop: checkpoints, exact resume, saved policies."""

import shutil

import jax
import numpy as np
import pytest

from robojax.agents.diffusion_policy import train as dp_train
from robojax.agents.diffusion_policy.config import DiffusionPolicyConfig, InferenceConfig, TrainConfig
from robojax.checkpoint import CheckpointMismatchError
from tests.agents.diffusion_policy.datasets import write_point_dataset

POLICY = DiffusionPolicyConfig(
    denoiser="mlp",
    mlp_hidden_dims=(32, 32),
    diffusion_step_embed_dim=16,
    obs_horizon=2,
    action_horizon=2,
    pred_horizon=4,
    num_train_timesteps=20,
    warmup_steps=4,
    batch_size=16,
    total_grad_steps=20,
    learning_rate=1e-3,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_point_dataset(str(tmp_path_factory.mktemp("point") / "data"), num_episodes=6)


def config(dataset, workdir, **kw):
    return TrainConfig(
        dataset=dataset,
        workdir=workdir,
        eval_env="none",
        updates_per_call=5,
        checkpoint_interval=10,
        progress_bar=False,
        policy=POLICY,
        inference=InferenceConfig(ddim_steps=4),
        **kw,
    )


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_resume_continues_exactly(dataset, tmp_path):
    straight = dp_train.train(config(dataset, str(tmp_path / "a")))
    assert straight.steps == 20
    # An interrupted run: keep only the step-10 checkpoint, then resume to step 20.
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "20")
    shutil.rmtree(tmp_path / "b" / "policy")
    resumed = dp_train.train(config(dataset, str(tmp_path / "b"), resume=True))
    assert resumed.steps == 20
    for a, b in zip(leaves(straight.state), leaves(resumed.state)):
        np.testing.assert_array_equal(a, b)
    steps = [r["step"] for r in dp_train.rlog.read_jsonl(tmp_path / "b" / "metrics.jsonl")]
    assert steps == sorted(steps) and steps[-1] == 20 and steps.count(15) == 1  # no duplicated records


def test_saved_policy_round_trips(dataset, tmp_path):
    result = dp_train.train(config(dataset, str(tmp_path / "run")))
    loaded = dp_train.load_policy(str(tmp_path / "run"))
    assert loaded.config == POLICY and loaded.obs_dim == 2 and loaded.action_dim == 1
    for a, b in zip(leaves(result.state.learner.ema_params), leaves(loaded.params)):
        np.testing.assert_array_equal(a, b)
    policy = loaded.policy(InferenceConfig(inference="rti", ddim_steps=4, rti_start_step=2, rti_steps=2))
    action, _ = jax.jit(policy.step)(policy.init_carry(), np.zeros(2, np.float32), jax.random.PRNGKey(0))
    assert action.shape == (1,) and -1.0 <= float(action[0]) <= 1.0


def test_bad_runs_fail_clearly(dataset, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        dp_train.train(config(dataset, str(tmp_path / "none"), resume=True))
    dp_train.train(config(dataset, str(tmp_path / "run")))
    with pytest.raises(FileExistsError, match="resume"):
        dp_train.train(config(dataset, str(tmp_path / "run")))
    other = TrainConfig(
        dataset=dataset,
        workdir=str(tmp_path / "run"),
        eval_env="none",
        updates_per_call=5,
        progress_bar=False,
        resume=True,
        policy=DiffusionPolicyConfig(**{**POLICY.__dict__, "batch_size": 8}),
    )
    with pytest.raises(CheckpointMismatchError, match="batch_size"):
        dp_train.train(other)
    with pytest.raises(Exception, match="dataset"):
        dp_train.train(config(str(tmp_path / "missing"), str(tmp_path / "x")))
