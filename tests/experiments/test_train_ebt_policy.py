"""experiments.train_ebt_policy and experiments.eval_policy --inference=ebt: flags, presets, and an end-to-end run."""

import json
import os
import subprocess
import sys

import pytest
from absl.testing import flagsaver

from robojax.agents.ebt_policy.config import EBTPolicyConfig, InferenceConfig, TrainConfig
from tests.agents.diffusion_policy.datasets import write_random_dataset
from tests.experiments.conftest import ROOT, assert_flags_cover_config, experiment_flag_fixtures, load_experiment

train_ebt_policy = load_experiment("train_ebt_policy")

_own_experiment_flags, parsed_flags = experiment_flag_fixtures("train_ebt_policy")


def test_every_config_field_is_a_flag_with_the_config_default():
    assert_flags_cover_config(train_ebt_policy, TrainConfig, dataset="/data/push", workdir="/tmp/run")


def test_flags_and_presets_build_the_config():
    with flagsaver.flagsaver(dataset="/data/push", width=32, num_heads=2, inference_steps=3, adaptive=True):
        config = train_ebt_policy.config_from_flags()
    assert config.policy.width == 32 and config.inference.inference_steps == 3 and config.inference.adaptive
    assert config.workdir.startswith(os.path.join("runs", "ebt_push_"))
    # A preset: its values, except where a flag was given.
    with flagsaver.flagsaver(dataset="/data/push", preset="s1", batch_size=16):
        config = train_ebt_policy.config_from_flags()
    assert config.policy == EBTPolicyConfig.s1(batch_size=16)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(dataset=""), "--dataset=DIR"),
        (dict(dataset="d", gradient="some"), "gradient must be one of"),
        (dict(dataset="d", width=30, num_heads=4), "equal heads"),
        (dict(dataset="d", train_steps_min=5, train_steps_max=3), "min <= max"),
        (dict(dataset="d", action_steps=40), "pred_horizon"),
    ],
)
def test_bad_flags_raise_clear_errors(overrides, message):
    with flagsaver.flagsaver(**overrides):
        with pytest.raises(ValueError, match=message):
            train_ebt_policy.config_from_flags()


def test_train_then_eval_end_to_end(tmp_path):
    """A few steps of a tiny EBT on random reacher-shaped data, closed-loop eval in MJX, then eval_policy."""
    from robojax.agents.ebt_policy.train import evaluate_saved_policy, train

    data = write_random_dataset(str(tmp_path / "data"), 10, 2, env="reacher", num_episodes=3, length=12)
    policy = EBTPolicyConfig(
        width=16,
        obs_layers=1,
        action_layers=1,
        num_heads=2,
        action_horizon=2,
        pred_horizon=4,
        train_steps_min=2,
        train_steps_max=2,
        total_grad_steps=6,
        warmup_steps=2,
        batch_size=8,
    )
    config = TrainConfig(
        dataset=data,
        workdir=str(tmp_path / "run"),
        updates_per_call=3,
        eval_interval=3,
        eval_episodes=2,
        eval_episode_length=6,
        checkpoint_interval=3,
        progress_bar=False,
        policy=policy,
        inference=InferenceConfig(inference_steps=2),
    )
    result = train(config)
    assert result.steps == 6 and len(result.eval_history) == 2
    assert 0.0 <= result.final_success <= 1.0
    for name in ("metrics.jsonl", "config.json", "policy/policy.json", "checkpoints/6"):
        assert os.path.exists(tmp_path / "run" / name), name
    out = evaluate_saved_policy(
        str(tmp_path / "run"),
        InferenceConfig(inference_steps=2),
        episodes=3,
        num_envs=2,
        latency_actions=6,
        episode_length=6,
    )
    assert out["episodes"] == 3 and out["env"] == "reacher" and out["objective"] == "ebt"
    # 3 plans of 6 actions per 6-step episode at Ta=2, each 3*2+1 forward equivalents: 3.5 per action.
    assert out["plans"]["mean_steps_per_plan"] == 2.0 and out["plans"]["mean_work_per_action"] == 3.5
    assert out["plans"]["per_episode_max_energy"].shape == (3,)
    assert out["latency"]["evals_per_action"] == 3.5 and out["latency"]["per_action_ms_p50"] > 0
    # The command line: adaptive compute with a threshold calibrated on (here, the training) demos.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.eval_policy",
            f"--checkpoint={tmp_path / 'run'}",
            "--escalate",
            "--escalate_steps=3",
            "--escalate_samples=2",
            f"--calibrate_dataset={data}",
            "--calibration_quantile=0.5",
            "--episodes=2",
            "--num_envs=2",
            "--episode_length=4",
            "--latency_actions=4",
            f"--json_out={tmp_path / 'eval.json'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "inference ebt" in proc.stdout and "energy threshold" in proc.stdout and "escalated" in proc.stdout
    saved = json.load(open(tmp_path / "eval.json"))
    assert saved["calibration"]["windows"] > 0 and saved["inference"]["escalate"]
    assert saved["inference"]["energy_threshold"] == saved["calibration"]["threshold"]
    # A DP inference mode on an EBT-Policy is refused with the way out.
    bad = subprocess.run(
        [sys.executable, "-m", "experiments.eval_policy", f"--checkpoint={tmp_path / 'run'}", "--inference=ddim"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "--inference=ebt" in bad.stderr
