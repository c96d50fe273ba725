"""EBT-Policy on the shared chunk-policy loop: it learns a point-reaching expert, resumes exactly,
and its saved policy round-trips and calibrates an energy threshold."""

import shutil

import jax
import numpy as np
import pytest

from robojax.agents.ebt_policy import train as ebt_train
from robojax.agents.ebt_policy.config import EBTPolicyConfig, InferenceConfig, TrainConfig
from robojax.checkpoint import CheckpointMismatchError
from tests.agents.diffusion_policy.datasets import point_expert, write_point_dataset

POLICY = EBTPolicyConfig(
    width=16,
    obs_layers=1,
    action_layers=1,
    num_heads=2,
    obs_horizon=2,
    action_horizon=2,
    pred_horizon=4,
    train_steps_min=2,
    train_steps_max=3,
    warmup_steps=20,
    batch_size=32,
    total_grad_steps=300,
    step_size=100.0,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_point_dataset(str(tmp_path_factory.mktemp("point") / "data"), num_episodes=20)


def config(dataset, workdir, **kw):
    base = dict(
        dataset=dataset,
        workdir=workdir,
        eval_env="none",
        updates_per_call=50,
        checkpoint_interval=150,
        progress_bar=False,
        policy=POLICY,
        inference=InferenceConfig(inference_steps=2),
    )
    return TrainConfig(**{**base, **kw})


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ebt") / "run"
    return ebt_train.train(config(dataset, str(workdir))), str(workdir)


def test_the_loop_learns_the_point_expert(trained):
    result, workdir = trained
    assert result.steps == 300
    loaded = ebt_train.load_policy(workdir)
    policy = loaded.policy(InferenceConfig(inference_steps=2))
    step = jax.jit(policy.step)
    rng = np.random.default_rng(5)
    errors = []
    for i in range(20):  # the first action of a fresh episode against the expert's
        x, goal = rng.uniform(-1, 1, size=2)
        action, _ = step(policy.init_carry(), np.array([x, goal], np.float32), jax.random.key(i))
        errors.append(abs(float(action[0]) - point_expert(x, goal)))
    assert np.mean(errors) < 0.25, errors  # an untrained model is off by ~0.5, 300 steps by ~0.08


def test_resume_continues_exactly(dataset, trained, tmp_path):
    straight, workdir = trained
    shutil.copytree(workdir, tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "300")
    shutil.rmtree(tmp_path / "b" / "policy")
    resumed = ebt_train.train(config(dataset, str(tmp_path / "b"), resume=True))
    assert resumed.steps == 300
    for a, b in zip(leaves(straight.state), leaves(resumed.state)):
        np.testing.assert_array_equal(a, b)
    other = config(dataset, str(tmp_path / "b"), resume=True, policy=EBTPolicyConfig(**{**POLICY.__dict__, "width": 8}))
    with pytest.raises(CheckpointMismatchError, match="width"):
        ebt_train.train(other)


def test_saved_policy_loads_as_ebt_only_and_calibrates(dataset, trained, tmp_path):
    _, workdir = trained
    from robojax.agents.diffusion_policy import train as dp_train

    with pytest.raises(ValueError, match="not a Diffusion Policy"):
        dp_train.load_policy(workdir)
    loaded = ebt_train.load_policy(workdir)
    assert loaded.config == POLICY and loaded.saved_inference() == InferenceConfig(inference_steps=2)
    cal = ebt_train.calibrate(workdir, dataset, InferenceConfig(inference_steps=2), quantile=0.8, loaded=loaded)
    assert cal["windows"] > 100 and np.isfinite(cal["threshold"])
    assert cal["energy_mean"] - 3 * cal["energy_std"] < cal["threshold"] < cal["energy_mean"] + 3 * cal["energy_std"]
    other = write_point_dataset(str(tmp_path / "other"), num_episodes=2)
    loaded.obs_dim = 3  # a policy of another task
    with pytest.raises(ValueError, match="held-out demos of the policy's own task"):
        ebt_train.calibrate(workdir, other, InferenceConfig(), loaded=loaded)
