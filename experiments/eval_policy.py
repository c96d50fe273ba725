"""Evaluate a saved Diffusion Policy or EBT-Policy: success rate, per-action latency at batch 1, network work.

    python -m experiments.eval_policy --checkpoint=runs/dp_push --inference=ddpm --episodes=100
    python -m experiments.eval_policy --checkpoint=runs/dp_push --inference=ddim --ddim_steps=10
    python -m experiments.eval_policy --checkpoint=runs/dp_push --inference=rti --action_steps=1 --rti_start_step=20 --rti_steps=2
    python -m experiments.eval_policy --checkpoint=runs/ebt_push --inference=ebt --inference_steps=2 --num_samples=4
    python -m experiments.eval_policy --checkpoint=runs/ebt_push --inference=ebt --adaptive --grad_tol=0.05 --warm_start
    python -m experiments.eval_policy --checkpoint=runs/ebt_push --inference=ebt --escalate \
        --calibrate_dataset=data/push_heldout --calibration_quantile=0.9

--checkpoint is a run directory of experiments.train_diffusion_policy or experiments.train_ebt_policy
(or its policy/ directory); an EBT-Policy is evaluated with energy descent (--inference=ebt, the
default for one), whose flags set the steps, samples, tolerance, warm start and adaptive compute.
--calibrate_dataset sets --energy_threshold to the --calibration_quantile of the plan energies on
that dataset's windows (held-out demos), and reports it.
Success comes from `--episodes` closed-loop episodes in batched MJX envs (`--num_envs` at a time,
one jitted scan per batch). Latency is the wall-clock of the jitted single-env policy step, timed
per executed action over `--latency_actions` actions, and separately for the calls that replan
(per chunk). Network evaluations (NFE) are counted from the step lists.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing

import numpy as np
from absl import app, flags
from absl import logging as absl_logging

import robojax  # noqa: F401  (sets XLA CPU flags before JAX initialises)
from experiments import flags as config_flags
from robojax.agents.diffusion_policy.config import InferenceConfig
from robojax.agents.ebt_policy.config import InferenceConfig as EBTInferenceConfig

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Run directory (or its policy/ directory) to evaluate.")
_EPISODES = flags.DEFINE_integer("episodes", 100, "Evaluation episodes (0: latency only).")
_NUM_ENVS = flags.DEFINE_integer("num_envs", 50, "Envs stepped together for the success rate.")
_LATENCY_ACTIONS = flags.DEFINE_integer("latency_actions", 200, "Single-env actions timed (0: no latency).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the evaluation episodes.")
_ENV = flags.DEFINE_string("env", "", "Env to evaluate in ('' = the dataset's env).")
_EPISODE_LENGTH = flags.DEFINE_integer("episode_length", 0, "Control steps per episode (0: the task's own).")
_JSON_OUT = flags.DEFINE_string("json_out", "", "Also write the results to this JSON file.")
_COMPILE_CACHE = config_flags.define_compile_cache_flag()
_CALIBRATE = flags.DEFINE_string(
    "calibrate_dataset", "", "EBT: set --energy_threshold from the plan energies on this (held-out) episode dataset."
)
_QUANTILE = flags.DEFINE_float("calibration_quantile", 0.9, "EBT: the quantile of held-out plan energies used.")
config_flags.define_config_flags(InferenceConfig)
# EBT-Policy's inference flags; --action_steps is shared with the Diffusion Policy's.
config_flags.define_config_flags(EBTInferenceConfig, skip=("action_steps",))

FLAGS = flags.FLAGS
EBT = "ebt"


def policy_format(checkpoint: str) -> str:
    """The format recorded in a saved policy's sidecar ('' when there is none to read)."""
    from robojax.imitation.train import policy_directory

    path = os.path.join(policy_directory(checkpoint), "policy.json")
    if not os.path.isfile(path):
        return ""
    with open(path) as f:
        return json.load(f).get("format", "")


def inference_from_flags(ebt: bool = False):
    if ebt:
        return config_flags.config_from_flags(
            EBTInferenceConfig, skip=("action_steps",), overrides={"action_steps": FLAGS.action_steps}
        )
    return config_flags.config_from_flags(InferenceConfig)


def run(
    checkpoint: str, inference, *, calibrate_dataset: str = "", calibration_quantile: float = 0.9, **kwargs
) -> dict:
    """Success, latency and network work of one saved policy under one inference setting."""
    if isinstance(inference, EBTInferenceConfig):
        from robojax.agents.ebt_policy import train as ebt_train

        calibration = None
        if calibrate_dataset:
            calibration = ebt_train.calibrate(checkpoint, calibrate_dataset, inference, quantile=calibration_quantile)
            inference = dataclasses.replace(inference, energy_threshold=calibration["threshold"])
        result = ebt_train.evaluate_saved_policy(checkpoint, inference, **kwargs)
        if calibration is not None:
            result["calibration"] = calibration
        return result
    from robojax.agents.diffusion_policy.train import evaluate_saved_policy

    return evaluate_saved_policy(checkpoint, inference, **kwargs)


def main(argv: typing.Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected positional arguments: {' '.join(argv[1:])}")
    if not _CHECKPOINT.value:
        raise app.UsageError(
            "--checkpoint is required: a run directory of experiments.train_diffusion_policy or train_ebt_policy"
        )
    is_ebt = policy_format(_CHECKPOINT.value).startswith("robojax.ebt_policy/")
    if is_ebt and not FLAGS["inference"].using_default_value and FLAGS.inference != EBT:
        raise app.UsageError(f"{_CHECKPOINT.value} holds an EBT-Policy: evaluate it with --inference=ebt")
    if FLAGS.inference == EBT and not is_ebt:
        raise app.UsageError(
            f"--inference=ebt needs an EBT-Policy (experiments.train_ebt_policy); {_CHECKPOINT.value} holds none"
        )
    if _CALIBRATE.value and not is_ebt:
        raise app.UsageError("--calibrate_dataset calibrates an EBT-Policy's energy threshold; this is not one")
    try:
        inference = inference_from_flags(ebt=is_ebt)
    except (TypeError, ValueError) as e:
        raise app.UsageError(str(e)) from None
    if not FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)
    from robojax.compile_cache import enable_compilation_cache

    enable_compilation_cache(_COMPILE_CACHE.value)
    try:
        result = run(
            _CHECKPOINT.value,
            inference,
            episodes=_EPISODES.value,
            num_envs=_NUM_ENVS.value,
            latency_actions=_LATENCY_ACTIONS.value,
            seed=_SEED.value,
            env=_ENV.value,
            episode_length=_EPISODE_LENGTH.value,
            calibrate_dataset=_CALIBRATE.value,
            calibration_quantile=_QUANTILE.value,
        )
    except (FileNotFoundError, ValueError) as e:
        raise app.UsageError(str(e)) from None
    print("\n".join(report_lines(result, EBT if is_ebt else inference.inference)), flush=True)
    if _JSON_OUT.value:
        tmp = _JSON_OUT.value + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1, default=lambda x: np.asarray(x).tolist())
        os.replace(tmp, _JSON_OUT.value)


def report_lines(result: dict, mode: str) -> list[str]:
    lines = [f"policy {result['checkpoint']} ({result['objective']}), inference {mode}"]
    if "success" in result:
        lines.append(
            f"success rate {100 * result['success']:.1f}% over {result['episodes']} episodes of"
            f" {result['env']} ({result['wall_s']:.0f} s)"
        )
    if "latency" in result:
        lat = result["latency"]
        lines.append(
            f"latency per action (batch 1, {lat['device']}): mean {lat['per_action_ms_mean']:.3f} ms,"
            f" p50 {lat['per_action_ms_p50']:.3f} ms, p99 {lat['per_action_ms_p99']:.3f} ms;"
            f" per chunk call p50 {lat['per_chunk_ms_p50']:.3f} ms, p99 {lat['per_chunk_ms_p99']:.3f} ms"
        )
        if "nfe_per_chunk" in lat:
            lines.append(
                f"network evaluations: {lat['nfe_per_chunk']} per chunk (first chunk {lat['nfe_first_chunk']}),"
                f" {lat['nfe_per_action']:.3f} per action (replanning every {lat['action_steps']} actions)"
            )
        else:
            lines.append(
                f"network work: {lat['evals_per_action']:.3f} forward equivalents per action (static count;"
                f" replanning every {lat['action_steps']} actions)"
            )
    if "calibration" in result:
        cal = result["calibration"]
        lines.append(
            f"energy threshold {cal['threshold']:.4f}: the {cal['quantile']:.2f} quantile of plan energies on"
            f" {cal['windows']} held-out windows of {cal['dataset']}"
        )
    if "plans" in result:
        plans = result["plans"]
        lines.append(
            f"energy descent: {plans['mean_steps_per_plan']:.2f} steps per plan, {plans['mean_work_per_action']:.2f}"
            f" forward equivalents per action, {100 * plans['escalation_rate']:.1f}% of plans escalated,"
            f" mean plan energy {plans['mean_plan_energy']:.4f}"
        )
    return lines


if __name__ == "__main__":
    app.run(main)
