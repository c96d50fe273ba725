"""RAPTOR: train one SAC teacher per sampled quadrotor, distil a 2084-parameter GRU student, evaluate
it zero-shot on held-out quadrotors, and export it to C.

    python -m experiments.train_raptor --workdir=runs/raptor                       # 32 teachers, CPU defaults
    python -m experiments.train_raptor --workdir=runs/raptor --num_teachers=64 --task=hover
    python -m experiments.train_raptor --workdir=runs/raptor                       # rerun: skips finished stages

Stages: teachers (training and held-out oracle teachers, one vmapped SAC loop) -> student (GRU) ->
feedforward (ablation) -> evaluate (results.json, tracking.png) -> export (export/, C). A rerun
with the same workdir skips finished stages and resumes an unfinished one from its checkpoint.
Flags: every `RaptorConfig` field (`--num_teachers`, `--task`, `--seed`, `--workdir`,
`--checkpoint_interval`, `--progress_bar`); the teachers' fields with a `teacher_` prefix
(`--teacher_total_env_steps`, `--teacher_num_envs`, and every SAC field, e.g.
`--teacher_critic_hidden_dims=64,64`); distillation fields with `distill_` (`--distill_epochs`,
`--distill_warmup_epochs`, ...); evaluation fields with `eval_` (`--eval_num_quadrotors`, ...).
"""

from __future__ import annotations

import dataclasses
import typing

from absl import app

import robojax  # noqa: F401  (XLA CPU flags before JAX initialises)
from experiments import flags as config_flags
from robojax.agents.raptor.config import RaptorConfig

# The teachers' SAC fields share the teacher_ prefix; every run trains both the recurrent student
# and the feedforward ablation, so distill.recurrent is no flag.
_PREFIXES = {"teacher.sac": "teacher_"}
_SKIP = ("distill.recurrent",)

_COMPILE_CACHE = config_flags.define_compile_cache_flag()
config_flags.define_config_flags(RaptorConfig, prefixes=_PREFIXES, skip=_SKIP)


def config_from_flags() -> RaptorConfig:
    """The validated run config from parsed flags (workdir None when --workdir is not given)."""
    return config_flags.config_from_flags(RaptorConfig, prefixes=_PREFIXES, skip=_SKIP)


def main(argv: typing.Sequence[str]) -> None:
    run_experiment(argv)


def run_experiment(argv: typing.Sequence[str]):
    """`main`, returning the `RaptorResult` (absl's `app.run` would treat a return value as an error)."""
    config = config_flags.start_experiment(argv, config_from_flags, _COMPILE_CACHE.value)
    if config.workdir is None:
        config = dataclasses.replace(config, workdir=config_flags.default_workdir("raptor"))
    from robojax.agents.raptor.train import run
    from robojax.checkpoint import CheckpointMismatchError

    try:
        result = run(config)
    except CheckpointMismatchError as e:
        raise app.UsageError(str(e)) from None
    print(
        f"\nRAPTOR, {config.num_teachers} teachers, held-out quadrotors: {config.eval.num_quadrotors}"
        f" ({config.eval.episodes_per_quadrotor} episodes each)"
    )
    print(result.table)
    spent = ", ".join(f"{k} {v:.0f} s" for k, v in result.stage_seconds.items())
    print(f"stages: {spent}; skipped (already done): {result.skipped or 'none'}; total {result.wall_s:.0f} s")
    if result.teacher_env_steps_per_s:
        print(f"teacher training throughput: {result.teacher_env_steps_per_s:,.0f} env steps/s across all teachers")
    print(f"run directory: {result.workdir} (results.json, tracking.png, export/, *.jsonl, checkpoints/)")
    return result


if __name__ == "__main__":
    app.run(main)
