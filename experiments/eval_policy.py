"""Evaluate a saved Diffusion Policy: success rate, per-action latency at batch 1, network evaluations.

    python -m experiments.eval_policy --checkpoint=runs/dp_push --inference=ddpm --episodes=100
    python -m experiments.eval_policy --checkpoint=runs/dp_push --inference=ddim --ddim_steps=10
    python -m experiments.eval_policy --checkpoint=runs/dp_push --inference=rti --action_steps=1 --rti_start_step=20 --rti_steps=2

--checkpoint is a run directory of experiments.train_diffusion_policy (or its policy/ directory).
Success comes from `--episodes` closed-loop episodes in batched MJX envs (`--num_envs` at a time,
one jitted scan per batch). Latency is the wall-clock of the jitted single-env policy step, timed
per executed action over `--latency_actions` actions, and separately for the calls that replan
(per chunk). Network evaluations (NFE) are counted from the step lists.
"""

from __future__ import annotations

import json
import os
import typing

from absl import app, flags
from absl import logging as absl_logging

import robojax  # noqa: F401  (sets XLA CPU flags before JAX initialises)
from experiments import flags as config_flags
from robojax.agents.diffusion_policy.config import InferenceConfig

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Run directory (or its policy/ directory) to evaluate.")
_EPISODES = flags.DEFINE_integer("episodes", 100, "Evaluation episodes (0: latency only).")
_NUM_ENVS = flags.DEFINE_integer("num_envs", 50, "Envs stepped together for the success rate.")
_LATENCY_ACTIONS = flags.DEFINE_integer("latency_actions", 200, "Single-env actions timed (0: no latency).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the evaluation episodes.")
_ENV = flags.DEFINE_string("env", "", "Env to evaluate in ('' = the dataset's env).")
_EPISODE_LENGTH = flags.DEFINE_integer("episode_length", 0, "Control steps per episode (0: the task's own).")
_JSON_OUT = flags.DEFINE_string("json_out", "", "Also write the results to this JSON file.")
_COMPILE_CACHE = config_flags.define_compile_cache_flag()
config_flags.define_config_flags(InferenceConfig)

FLAGS = flags.FLAGS


def inference_from_flags() -> InferenceConfig:
    return config_flags.config_from_flags(InferenceConfig)


def run(checkpoint: str, inference: InferenceConfig, **kwargs) -> dict:
    """Success, latency and NFE of one saved policy under one inference setting."""
    from robojax.agents.diffusion_policy.train import evaluate_saved_policy

    return evaluate_saved_policy(checkpoint, inference, **kwargs)


def main(argv: typing.Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected positional arguments: {' '.join(argv[1:])}")
    if not _CHECKPOINT.value:
        raise app.UsageError("--checkpoint is required: a run directory of experiments.train_diffusion_policy")
    try:
        inference = inference_from_flags()
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
        )
    except (FileNotFoundError, ValueError) as e:
        raise app.UsageError(str(e)) from None
    mode = inference.inference
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
        lines.append(
            f"network evaluations: {lat['nfe_per_chunk']} per chunk (first chunk {lat['nfe_first_chunk']}),"
            f" {lat['nfe_per_action']:.3f} per action (replanning every {lat['action_steps']} actions)"
        )
    print("\n".join(lines), flush=True)
    if _JSON_OUT.value:
        tmp = _JSON_OUT.value + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1)
        os.replace(tmp, _JSON_OUT.value)


if __name__ == "__main__":
    app.run(main)
