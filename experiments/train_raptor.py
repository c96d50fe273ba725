"""RAPTOR: train one SAC teacher per sampled quadrotor, distil a 2084-parameter GRU student, evaluate
it zero-shot on held-out quadrotors, and export it to C.

    python -m experiments.train_raptor --workdir=runs/raptor                       # 32 teachers, CPU defaults
    python -m experiments.train_raptor --workdir=runs/raptor --num_teachers=64 --task=hover
    python -m experiments.train_raptor --workdir=runs/raptor                       # rerun: skips finished stages

Stages: teachers (training and held-out oracle teachers, one vmapped SAC loop) -> student (GRU) ->
feedforward (ablation) -> evaluate (results.json, tracking.png) -> export (export/, C). A rerun
with the same workdir skips finished stages and resumes an unfinished one from its checkpoint.
Flags: `--num_teachers`, `--task`, `--seed`; the teachers' fields with a `teacher_` prefix
(`--teacher_env_steps`, `--teacher_num_envs`, and every SAC field, e.g.
`--teacher_critic_hidden_dims=64,64`); distillation fields with `distill_` (`--distill_epochs`,
`--distill_warmup_epochs`, ...); evaluation fields with `eval_` (`--eval_num_quadrotors`, ...).
"""

from __future__ import annotations

import dataclasses
import os
import time
import typing

from absl import app, flags

import robojax  # noqa: F401  (XLA CPU flags before JAX initialises)
from robojax.agents.raptor.config import DistillConfig, EvalConfig, RaptorConfig, TeacherConfig, default_teacher_sac
from robojax.agents.sac.config import SACConfig
from robojax.config_utils import define_compile_cache_flag, define_flags, start_experiment, values_from_flags

_GROUPS = (
    ("teacher_", TeacherConfig, ("sac",), TeacherConfig()),
    ("teacher_", SACConfig, (), default_teacher_sac()),
    ("distill_", DistillConfig, ("recurrent",), DistillConfig()),
    ("eval_", EvalConfig, (), EvalConfig()),
)
_TOP = tuple(f for f in dataclasses.fields(RaptorConfig) if f.name in ("num_teachers", "task", "seed"))

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/raptor_<time>).")
_CHECKPOINT_EVERY = flags.DEFINE_integer("checkpoint_every", 50, "Teacher iterations between checkpoints.")
_PROGRESS = flags.DEFINE_boolean("progress_bar", True, "Progress bars when stderr is a terminal.")
_COMPILE_CACHE = define_compile_cache_flag()


def _fields(cls, skip):
    return tuple(f for f in dataclasses.fields(cls) if f.name not in skip)


define_flags(_TOP)
for _prefix, _cls, _skip, _defaults in _GROUPS:
    define_flags(_fields(_cls, _skip), _defaults, _prefix)

FLAGS = flags.FLAGS


def _group(prefix: str, cls, skip) -> dict:
    return values_from_flags(_fields(cls, skip), FLAGS, prefix)


def config_from_flags() -> RaptorConfig:
    """The validated run config from parsed flags."""
    sac = SACConfig(**_group("teacher_", SACConfig, ()))
    teacher = TeacherConfig(**_group("teacher_", TeacherConfig, ("sac",)), sac=sac)
    distill = DistillConfig(**_group("distill_", DistillConfig, ("recurrent",)))
    evaluation = EvalConfig(**_group("eval_", EvalConfig, ()))
    top = values_from_flags(_TOP, FLAGS)
    return RaptorConfig(**top, teacher=teacher, distill=distill, eval=evaluation)



def main(argv: typing.Sequence[str]) -> None:
    run_experiment(argv)


def run_experiment(argv: typing.Sequence[str]):
    """`main`, returning the `RaptorResult` (absl's `app.run` would treat a return value as an error)."""
    config = start_experiment(argv, config_from_flags, _COMPILE_CACHE.value)
    workdir = _WORKDIR.value or os.path.join("runs", f"raptor_{time.strftime('%Y%m%d-%H%M%S')}")
    from robojax.agents.raptor.train import run
    from robojax.checkpoint import CheckpointMismatchError

    start = time.perf_counter()
    try:
        result = run(config, workdir, progress=_PROGRESS.value, checkpoint_every=_CHECKPOINT_EVERY.value)
    except CheckpointMismatchError as e:
        raise app.UsageError(str(e)) from None
    print(f"\nRAPTOR, {config.num_teachers} teachers, held-out quadrotors: {config.eval.num_quadrotors}"
          f" ({config.eval.episodes_per_quadrotor} episodes each)")
    print(result.table)
    spent = ", ".join(f"{k} {v:.0f} s" for k, v in result.stage_seconds.items())
    print(f"stages: {spent}; skipped (already done): {result.skipped or 'none'};"
          f" total {time.perf_counter() - start:.0f} s")
    if result.teacher_env_steps_per_s:
        print(f"teacher training throughput: {result.teacher_env_steps_per_s:,.0f} env steps/s across all teachers")
    print(f"run directory: {result.workdir} (results.json, tracking.png, export/, *.jsonl, checkpoints/)")
    return result


if __name__ == "__main__":
    app.run(main)
