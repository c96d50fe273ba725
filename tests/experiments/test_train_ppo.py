"""experiments.train_ppo: one flag per config field, clear errors for bad flags and paths, a run end to end."""

import json
import os
import subprocess
import sys

import pytest
from absl import app
from absl.testing import flagsaver

from robojax.agents.ppo.config import TrainConfig
from robojax.envs import registry
from tests.agents.sac.probe_envs import ReachOrigin
from tests.experiments.conftest import ROOT, assert_flags_cover_config, experiment_flag_fixtures, load_experiment

train_ppo = load_experiment("train_ppo")

_own_experiment_flags, parsed_flags = experiment_flag_fixtures("train_ppo")

# A probe task registered for this module only, so the experiment builds it through the registry like any task.
PROBE = "ppo_test_reach_origin"


@pytest.fixture(autouse=True, scope="module")
def probe_task():
    registry.names()  # load the task plugins before taking the copy
    saved = dict(registry._TASKS)
    registry.register(PROBE, ReachOrigin)
    yield
    registry._TASKS.clear()
    registry._TASKS.update(saved)


def test_every_config_field_is_a_flag_with_the_config_default():
    assert_flags_cover_config(train_ppo, TrainConfig, workdir="/tmp/run")


def test_flags_build_the_config():
    with flagsaver.flagsaver(
        env="pendulum_swingup", num_envs=64, policy_hidden_dims=["32", "16"], num_seeds=3, action_repeat=2
    ):
        config = train_ppo.config_from_flags()
    assert config.env == "pendulum_swingup" and config.action_repeat == 2
    assert config.ppo.num_envs == 64 and config.ppo.policy_hidden_dims == (32, 16) and config.ppo.num_seeds == 3
    assert config.workdir.startswith(os.path.join("runs", "ppo_pendulum_swingup_"))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(env="cartpole_balanse"), "unknown env 'cartpole_balanse'. Did you mean 'cartpole_balance'"),
        (dict(num_envs=-2), "num_envs must be a positive integer"),
        (dict(num_minibatches=7), r"num_minibatches \(7\) must divide"),
        (dict(action_repeat=0), "action_repeat must be a positive integer"),
        (dict(policy_hidden_dims=["64", "x"]), "--policy_hidden_dims needs comma-separated integers"),
        (dict(bc_steps=100), "bc_steps .100. needs bc_demo_path"),
        (dict(bc_demo_path="demos.npz"), "bc_steps is 0"),
    ],
)
def test_bad_flags_raise_clear_errors(overrides, message):
    with flagsaver.flagsaver(**overrides):
        with pytest.raises(ValueError, match=message):
            train_ppo.config_from_flags()


def test_trains_end_to_end_and_refuses_to_overwrite(tmp_path, capsys):
    workdir = tmp_path / "run"
    tiny = dict(
        env=PROBE,
        action_repeat=1,
        num_envs=16,
        unroll_length=25,
        num_minibatches=4,
        update_epochs=4,
        policy_hidden_dims=["32", "32"],
        value_hidden_dims=["32", "32"],
        reward_scaling=1.0,
        learning_rate=3e-3,
        total_env_steps=16 * 25 * 20,
        eval_interval=16 * 25 * 10,
        eval_episodes=8,
        num_seeds=2,
        workdir=str(workdir),
        progress_bar=False,
    )
    with flagsaver.flagsaver(**tiny):
        train_ppo.main(["train_ppo"])
        out = capsys.readouterr().out
        assert "final eval return" in out and "mean of 2 seeds; seed 0:" in out and "seed 1:" in out
        for name in ("metrics.jsonl", "learning_curve.png", "policy/policy.json", "checkpoints/8000"):
            assert os.path.exists(workdir / name), name
        evals = [r for r in map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines()) if "eval/return" in r]
        assert [r["env_steps"] for r in evals] == [4000, 8000]
        assert all("eval/return_seed0" in r and "eval/return_seed1" in r for r in evals)
        with pytest.raises(app.UsageError, match="already holds checkpoints"):
            train_ppo.main(["train_ppo"])
    with flagsaver.flagsaver(**{**tiny, "learning_rate": 1e-3, "resume": True}):
        with pytest.raises(app.UsageError, match=r"config\.ppo\.learning_rate"):
            train_ppo.main(["train_ppo"])


def test_command_line_reports_bad_flags_and_paths(tmp_path):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "experiments.train_ppo", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "JAX_PLATFORMS": "cpu"},
        )

    bad_env = run("--env=cartpole_balanse", f"--workdir={tmp_path}")
    assert bad_env.returncode == 1 and "Did you mean 'cartpole_balance'" in bad_env.stderr
    no_checkpoint = run("--resume", f"--workdir={tmp_path / 'nothing_here'}")
    assert no_checkpoint.returncode == 1 and "resume: no checkpoint in" in no_checkpoint.stderr
    assert not os.path.exists(tmp_path / "nothing_here")
