"""Config defaults are the benchmarked CPU settings; Chi et al.'s U-Net setting is a named preset."""

import json
from pathlib import Path

from robojax.agents.diffusion_policy.config import DiffusionPolicyConfig, InferenceConfig

RESULTS = Path(__file__).resolve().parents[3] / "benchmarks" / "results" / "diffusion_policy.json"


def test_defaults_are_the_benchmarked_settings():
    bench = json.loads(RESULTS.read_text())["settings"]
    policy, inference = DiffusionPolicyConfig(), InferenceConfig()
    assert policy.denoiser == bench["denoiser"] == "mlp"
    assert list(policy.mlp_hidden_dims) == [int(d) for d in bench["mlp_hidden_dims"]]
    assert policy.learning_rate == bench["learning_rate"] and policy.total_grad_steps == bench["num_steps"]
    assert (inference.rti_start_step, inference.rti_steps) == (bench["rti_start_step"], bench["rti_steps"])


def test_chi_unet_preset():
    chi = DiffusionPolicyConfig.chi_unet()
    assert (chi.denoiser, chi.down_dims, chi.learning_rate, chi.total_grad_steps) == (
        "unet",
        (64, 128, 256),
        1e-4,
        20_000,
    )
    assert DiffusionPolicyConfig.chi_unet(batch_size=64).batch_size == 64
