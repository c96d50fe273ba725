"""experiments.train_diffusion_policy and experiments.eval_policy: flags, and an end-to-end smoke run."""

import json
import os
import subprocess
import sys

import pytest
from absl.testing import flagsaver

from robojax.agents.diffusion_policy.config import DiffusionPolicyConfig, InferenceConfig, TrainConfig
from tests.agents.diffusion_policy.datasets import write_random_dataset
from tests.experiments.conftest import ROOT, assert_flags_cover_config, experiment_flag_fixtures, load_experiment

train_diffusion_policy = load_experiment("train_diffusion_policy")

_own_experiment_flags, parsed_flags = experiment_flag_fixtures("train_diffusion_policy")


def test_every_config_field_is_a_flag_with_the_config_default():
    assert_flags_cover_config(train_diffusion_policy, TrainConfig, dataset="/data/push", workdir="/tmp/run")


def test_flags_build_the_config():
    with flagsaver.flagsaver(
        dataset="/data/push",
        objective="mse",
        down_dims=["32", "64", "128"],
        inference="rti",
        rti_start_step=5,
        rti_steps=4,
    ):
        config = train_diffusion_policy.config_from_flags()
    assert config.policy.objective == "mse" and config.policy.down_dims == (32, 64, 128)
    assert config.inference.inference == "rti" and config.inference.rti_start_step == 5
    assert config.workdir.startswith(os.path.join("runs", "dp_push_"))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(dataset=""), "--dataset=DIR"),
        (dict(dataset="d", objective="gan"), "objective must be one of"),
        (dict(dataset="d", down_dims=["32", "x"]), "--down_dims needs comma-separated integers"),
        (
            dict(dataset="d", denoiser="unet", pred_horizon=10, action_horizon=8, down_dims=["8", "16", "32"]),
            "divisible by",
        ),
        (dict(dataset="d", rti_start_step=1, rti_steps=4), "rti_steps"),
    ],
)
def test_bad_flags_raise_clear_errors(overrides, message):
    with flagsaver.flagsaver(**overrides):
        with pytest.raises(ValueError, match=message):
            train_diffusion_policy.config_from_flags()


def test_train_then_eval_end_to_end(tmp_path):
    """A few steps of a tiny U-Net on random reacher-shaped data, closed-loop eval in MJX, then eval_policy."""
    from robojax.agents.diffusion_policy.train import evaluate_saved_policy, train

    data = write_random_dataset(str(tmp_path / "data"), 10, 2, env="reacher", num_episodes=3, length=12)
    policy = DiffusionPolicyConfig(
        denoiser="unet",
        down_dims=(8, 16),
        n_groups=4,
        diffusion_step_embed_dim=8,
        obs_horizon=2,
        action_horizon=2,
        pred_horizon=4,
        num_train_timesteps=10,
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
        inference=InferenceConfig(inference="rti", ddim_steps=2, rti_start_step=2, rti_steps=2),
    )
    result = train(config)
    assert result.steps == 6 and len(result.eval_history) == 2
    assert 0.0 <= result.final_success <= 1.0
    for name in ("metrics.jsonl", "config.json", "policy/policy.json", "checkpoints/6"):
        assert os.path.exists(tmp_path / "run" / name), name
    out = evaluate_saved_policy(
        str(tmp_path / "run"),
        InferenceConfig(inference="rti", ddim_steps=2, rti_start_step=2, rti_steps=2),
        episodes=3,
        num_envs=2,
        latency_actions=6,
        episode_length=6,
    )
    assert out["episodes"] == 3 and out["env"] == "reacher" and 0.0 <= out["success"] <= 1.0
    lat = out["latency"]
    assert lat["nfe_first_chunk"] == 2 and lat["nfe_per_chunk"] == 2 and lat["nfe_per_action"] == 1.0
    assert lat["replans"] >= 1 and lat["per_action_ms_p50"] > 0
    # The command line prints the same figures.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.eval_policy",
            f"--checkpoint={tmp_path / 'run'}",
            "--inference=ddim",
            "--ddim_steps=2",
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
    assert (
        "success rate" in proc.stdout
        and "latency per action" in proc.stdout
        and "network evaluations: 2 per chunk" in proc.stdout
    )
    assert json.load(open(tmp_path / "eval.json"))["latency"]["nfe_per_chunk"] == 2


def test_an_old_flag_names_the_new_one():
    for old, new in (
        ("eval_every", "eval_interval"),
        ("checkpoint_every", "checkpoint_interval"),
        ("num_steps", "total_grad_steps"),
    ):
        with flagsaver.flagsaver(dataset="d", **{old: "5"}):
            with pytest.raises(ValueError, match=f"--{old} was renamed --{new}"):
                train_diffusion_policy.config_from_flags()
