"""experiments.train_sac: one flag per config field, and clear errors for bad flags and paths."""

import os
import subprocess
import sys

import pytest
from absl.testing import flagsaver

from robojax.agents.sac.config import TrainConfig
from tests.experiments.conftest import ROOT, assert_flags_cover_config, experiment_flag_fixtures, load_experiment

train_sac = load_experiment("train_sac")

_own_experiment_flags, parsed_flags = experiment_flag_fixtures("train_sac")


def test_every_config_field_is_a_flag_with_the_config_default():
    assert_flags_cover_config(train_sac, TrainConfig, workdir="/tmp/run")


def test_flags_build_the_config():
    with flagsaver.flagsaver(
        env="pendulum_swingup", num_envs=3, critic_hidden_dims=["32", "16"], utd_ratio=4, demo_path="", workdir=None
    ):
        config = train_sac.config_from_flags()
    assert config.env == "pendulum_swingup" and config.num_envs == 3
    assert config.sac.critic_hidden_dims == (32, 16) and config.sac.utd_ratio == 4
    assert config.demo_path is None
    assert config.workdir.startswith(os.path.join("runs", "sac_pendulum_swingup_"))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(env="cartpole_balanse"), "unknown env 'cartpole_balanse'. Did you mean 'cartpole_balance'"),
        (dict(num_envs=-2), "num_envs must be a positive integer"),
        (dict(batch_size=0), "batch_size must be a positive integer"),
        (dict(critic_hidden_dims=["64", "x"]), "--critic_hidden_dims needs comma-separated integers"),
        (dict(critic_subset_size=20), "cannot exceed critic_ensemble_size"),
    ],
)
def test_bad_flags_raise_clear_errors(overrides, message):
    with flagsaver.flagsaver(**overrides):
        with pytest.raises(ValueError, match=message):
            train_sac.config_from_flags()


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "experiments.train_sac", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )


def test_command_line_reports_bad_flags_and_paths(tmp_path):
    bad_env = _run("--env=cartpole_balanse", f"--workdir={tmp_path}")
    assert bad_env.returncode == 1 and "Did you mean 'cartpole_balance'" in bad_env.stderr
    no_checkpoint = _run("--resume", f"--workdir={tmp_path / 'nothing_here'}")
    assert no_checkpoint.returncode == 1 and "resume: no checkpoint in" in no_checkpoint.stderr
    assert not os.path.exists(tmp_path / "nothing_here")


def test_command_line_trains_on_a_playground_env(tmp_path):
    """`--env=playground:<Name>` runs the on-device loop end to end, with the batched, autoresetting
    evaluation (Playground's default MuJoCo Warp backend; CartpoleBalance ships its own model)."""
    pytest.importorskip("mujoco_playground")
    import json

    workdir = tmp_path / "run"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.train_sac",
            "--env=playground:CartpoleBalance",
            "--total_env_steps=1000",
            "--steps_per_iteration=500",
            "--learning_starts=500",
            "--eval_interval=1000",
            "--eval_episodes=2",
            "--checkpoint_interval=1000",
            "--batch_size=64",
            f"--workdir={workdir}",
        ],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "final eval return" in run.stdout
    evals = [r for r in map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines()) if "eval/return" in r]
    assert evals and all(r["eval/return"] > 0 for r in evals)  # CartpoleBalance rewards are in [0, 1]
