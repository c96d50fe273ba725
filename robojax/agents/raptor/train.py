"""The RAPTOR pipeline, stage by stage, resumable: teachers -> students -> evaluation -> C export.

    result = run(RaptorConfig(workdir=..., ...))

Stages and what each leaves in `workdir`:
  teachers      one SAC teacher per training quadrotor *and* per held-out quadrotor (the oracle),
                trained together in one vmapped loop; checkpoints/teachers/ (loop state incl.
                replay buffers, every `checkpoint_interval` iterations), teachers.jsonl
  student       the GRU student distilled from the training teachers; checkpoints/student/ (every
                epoch), student.jsonl
  feedforward   the non-recurrent ablation distilled the same way; checkpoints/feedforward/
  evaluate      held-out results (results.json, tracking.png)
  export        the student as C (export/) via robojax.agents.raptor.export.export_student_c
A finished stage writes stages/<name>.json; a rerun with the same workdir skips finished stages
and resumes an unfinished one from its latest checkpoint. The run is a `runs.Run` without top-level
checkpoints: its metadata is stored in config.json and must match on rerun (except EXTENDABLE),
each stage is a `runs.Stage`, and every evaluation appends its headline figures to metrics.jsonl.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robojax import logging as rlog
from robojax import runs
from robojax.agents.raptor import evaluate, learner, networks, teachers
from robojax.agents.raptor.config import RaptorConfig
from robojax.agents.sac.train import LoopState
from robojax.config_utils import from_dict, to_dict

STAGES = ("teachers", "student", "feedforward", "evaluate", "export")
FORMAT = "robojax.raptor/1"


@dataclasses.dataclass
class RaptorResult:
    results: dict  # task -> policy -> metrics, on the held-out quadrotors with oracle teachers
    wide: dict  # task -> student policy -> metrics, on the wider held-out set (empty if none)
    stage_seconds: dict  # stage -> wall-clock seconds spent in this call (0 for skipped stages)
    skipped: list  # stages found finished and skipped
    workdir: str
    teacher_env_steps_per_s: float | None  # across all teachers, compiled iterations only
    table: str
    # The shared result fields: the GRU student's held-out hover figures (the headline task), on the
    # wide set when there is one, else on the oracle set (`headline_eval`).
    final_return: float | None = None
    final_success: float | None = None
    wall_s: float = 0.0  # this call, skipped stages included


# Settings a rerun may change: more distillation epochs continue the students from their checkpoints
# (and redo evaluation and export); where and how the run is kept and shown changes nothing it
# computes; everything else must match the run directory.
EXTENDABLE = ("distill.epochs", "workdir", "checkpoint_interval", "progress_bar")


def run_metadata(config: RaptorConfig) -> dict:
    return runs.run_metadata(FORMAT, to_dict(config))


def _fingerprint(metadata: dict) -> dict:
    # Through from_dict: a config.json saved under old field names compares by the new ones.
    config = to_dict(from_dict(RaptorConfig, metadata.get("config", {})))
    return runs.resume_fingerprint({**metadata, "config": config}, EXTENDABLE)


def open_run(config: RaptorConfig) -> runs.Run:
    """The run in `config.workdir`, started: its config.json written, or checked against the one there
    (a rerun continues the run: settings outside EXTENDABLE must match, CheckpointMismatchError otherwise)."""
    if not config.workdir:
        raise ValueError("RaptorConfig.workdir must name the run directory (--workdir=DIR)")
    run = runs.Run(
        config.workdir,
        checkpoints=False,
        resumable=EXTENDABLE,
        fingerprint=_fingerprint,
        metadata=run_metadata(config),
        progress_bar=config.progress_bar,
        stdout_keys=None,
        eval_key="eval/success",
    )
    try:
        return run.start()
    except BaseException:
        run.close()
        raise


# ---- quadrotors ------------------------------------------------------------------------------------


def quadrotors(config: RaptorConfig) -> tuple[dict, dict]:
    """(training, held-out) quadrotor parameters, from separate key streams."""
    train = evaluate.sample_quadrotors(config.seed, evaluate.TRAIN_STREAM, config.num_teachers)
    held_out = evaluate.sample_quadrotors(config.seed, evaluate.HELD_OUT_STREAM, config.eval.num_quadrotors)
    return train, held_out


def _concat(a: Any, b: Any) -> Any:
    return jax.tree.map(lambda x, y: jnp.concatenate([x, y]), a, b)


def _split(tree: Any, n: int) -> tuple[Any, Any]:
    return jax.tree.map(lambda x: x[:n], tree), jax.tree.map(lambda x: x[n:], tree)


# ---- stage 1: teachers -----------------------------------------------------------------------------


def _save_teachers(checkpointer, state: LoopState, metadata: dict) -> None:
    buffers = {"replay": state.replay}
    checkpointer.save(
        int(np.max(state.env_steps)),
        state.replace(replay=None, demo=None),
        extras={"buffers": buffers},
        metadata=metadata,
    )


def _restore_teachers(checkpointer, template: LoopState, with_replay: bool = True) -> LoopState:
    """The teachers' loop state; a finished stage needs only the learners, not the replay buffers."""
    extras = {"buffers": {"replay": template.replay}} if with_replay else None
    core, restored = checkpointer.restore(template.replace(replay=None, demo=None), extras=extras)
    replay = restored["buffers"]["replay"] if with_replay else template.replay
    return core.replace(replay=replay, demo=None)


def train_teacher_stage(
    config: RaptorConfig, stage: runs.Stage, dynamics: dict, log: Callable[[str], None]
) -> tuple[Any, dict]:
    """Train (or resume) all teachers; returns their learner states (leading axis = teacher)."""
    tc = config.teacher
    env = teachers.make_teacher_env(config.teacher_task, tc.num_envs, tc.episode_length, tc.observation_size)
    sac_config = teachers.sac_train_config(tc, config.teacher_task)
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)
    state = teachers.init_teachers(key, env, sac_config, dynamics)
    metadata = run_metadata(config)
    num = teachers.num_teachers_of(dynamics)
    with stage.checkpointer() as checkpointer:
        if checkpointer.latest_step() is not None:
            state = _restore_teachers(checkpointer, state, with_replay=not stage.done)
            if stage.done:
                return state.learner, stage.summary()
            log(f"teachers: resumed at {int(np.max(state.env_steps)):,d} env steps per teacher")
        start_steps = int(np.max(state.env_steps))
        if stage.done:
            return state.learner, stage.summary()
        sink = stage.metrics(resume_step=start_steps)
        bar = stage.progress(tc.total_env_steps, initial=start_steps, unit="env step")
        rates: list[float] = []
        t_start = time.perf_counter()

        def callback(s: LoopState, p: teachers.TeacherProgress) -> None:
            m = p.metrics
            steps_per_s = num * tc.num_envs * tc.steps_per_iteration / p.seconds
            if p.iteration > 1 + start_steps // (tc.num_envs * tc.steps_per_iteration):
                rates.append(steps_per_s)  # the first call of a process compiles
            record = {k: float(np.mean(v)) for k, v in m.items()}
            record.update(
                {
                    "train/episode_return_min": float(np.min(m["train/episode_return"])),
                    "train/episode_success_min": float(np.min(m["train/episode_success"])),
                    "env_steps_per_teacher": p.env_steps_per_teacher,
                    "env_steps_per_s": steps_per_s,
                    "wall_s": time.perf_counter() - t_start,
                }
            )
            sink.write(p.env_steps_per_teacher, record)
            bar.update(p.env_steps_per_teacher)
            bar.set_eval_return(record["train/episode_return"])
            if p.iteration % config.checkpoint_interval == 0 or p.env_steps_per_teacher >= tc.total_env_steps:
                _save_teachers(checkpointer, s, metadata)

        try:
            state = teachers.train_teachers(
                state, env, sac_config, until_env_steps=tc.total_env_steps, callback=callback
            )
            checkpointer.wait_until_finished()
        finally:
            bar.close()
            sink.close()
    records = rlog.read_jsonl(os.path.join(stage.workdir, "teachers.jsonl"))
    last = records[-1] if records else {}
    summary = {
        "num_teachers": num,
        "env_steps_per_teacher": int(np.max(state.env_steps)),
        "final_train_episode_return": last.get("train/episode_return"),
        "final_train_episode_success": last.get("train/episode_success"),
        "env_steps_per_s": float(np.median(rates)) if rates else None,
        "seconds": time.perf_counter() - t_start,
    }
    stage.finish(summary)
    return state.learner, summary


# ---- stage 2/3: distillation -----------------------------------------------------------------------


def distill_stage(
    config: RaptorConfig,
    stage: runs.Stage,
    recurrent: bool,
    teacher_states: Any,
    dynamics: dict,
    log: Callable[[str], None],
) -> tuple[Any, dict]:
    """Distil (or resume distilling) a student from the training teachers; returns its params."""
    dc = dataclasses.replace(config.distill, recurrent=recurrent)
    task_envs = tuple(teachers.make_task_env(t, dc.episode_length) for t in config.distill_tasks)
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 2 if recurrent else 3)
    state = learner.init_distill(key, dc)
    metadata = run_metadata(config)
    with stage.checkpointer() as checkpointer:
        if checkpointer.latest_step() is not None:
            state, _ = checkpointer.restore(state)
            log(f"{stage.name}: resumed at epoch {int(state.epoch)}")
        if stage.done and stage.summary()["epochs"] >= dc.epochs:
            return state.params, stage.summary()
        start_epoch = int(state.epoch)
        sink = stage.metrics(resume_step=start_epoch)
        bar = stage.progress(dc.epochs, initial=start_epoch, unit="epoch")
        t_start = time.perf_counter()
        last: dict = {}

        def callback(s: learner.DistillState, metrics: dict) -> None:
            nonlocal last
            epoch = int(s.epoch)
            last = {**metrics, "epoch": epoch, "wall_s": time.perf_counter() - t_start}
            sink.write(epoch, last)
            bar.update(epoch)
            bar.set_eval_return(metrics["rollout/success"])
            checkpointer.save(epoch, s, metadata=metadata)

        offsets = None
        if dc.position_correction:
            offsets = learner.steady_state_offsets(
                teachers.make_task_env("hover", dc.episode_length),
                teacher_states,
                dynamics,
                jax.random.fold_in(jax.random.PRNGKey(config.seed), 4),
                length=dc.episode_length,
            )
            log(
                f"{stage.name}: teachers' steady-state offsets, mean |x|,|y|,|z| (m):"
                f" {np.round(np.mean(np.abs(np.asarray(offsets)), axis=0), 3).tolist()}"
            )
        try:
            state = learner.distill_multi(
                state, task_envs, dc, teacher_states, dynamics, callback=callback, position_offsets=offsets
            )
            checkpointer.wait_until_finished()
        finally:
            bar.close()
            sink.close()
    summary = {
        "epochs": int(state.epoch),
        "final": last,
        "seconds": time.perf_counter() - t_start,
        "parameters": int(sum(np.size(x) for x in jax.tree.leaves(state.params))),
    }
    stage.finish(summary)
    return state.params, summary


# ---- stage 4: evaluation ---------------------------------------------------------------------------


def evaluate_stage(config: RaptorConfig, stage: runs.Stage, oracle: Any, dynamics: dict, students: dict) -> dict:
    """Held-out evaluation of student, oracle teachers and ablation on hover and track."""
    if stage.done:
        return stage.summary()
    ec = config.eval
    results, trajectories, wide = {}, {}, {}
    wide_dynamics = (
        evaluate.sample_quadrotors(config.seed, evaluate.WIDE_STREAM, ec.wide_quadrotors)
        if ec.wide_quadrotors
        else None
    )
    for i, task in enumerate(("hover", "track")):
        env = teachers.make_task_env(task, ec.episode_length)
        key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 100 + i)
        results[task], trajectories[task] = evaluate.evaluate_task(env, ec, dynamics, oracle, students, key)
        if wide_dynamics is not None:
            wide_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 200 + i)
            wide[task] = evaluate.evaluate_students(env, ec, wide_dynamics, students, wide_key)
    png = os.path.join(stage.workdir, "tracking.png")
    evaluate.plot_tracking(
        trajectories["track"], png, ec.plot_quadrotors, policies=("student", "teacher", "feedforward")
    )
    summary = {"results": results, "wide": wide, "plot": png}
    runs.write_json(os.path.join(stage.workdir, "results.json"), summary)
    stage.finish(summary)
    return summary


# ---- the pipeline ----------------------------------------------------------------------------------


def headline_eval(summary: dict) -> dict:
    """The GRU student's hover figures of an evaluation summary: the wide held-out set when there is one."""
    figures = (summary.get("wide") or summary["results"])["hover"]["student"]
    return {
        "eval/return": figures.get("return"),
        "eval/success": figures["success"],
        "eval/position_error": figures["position_error"],
    }


def run(config: RaptorConfig, *, log: Callable[[str], None] = print) -> RaptorResult:
    """Run every unfinished stage of a RAPTOR run in `config.workdir` (created if absent)."""
    with open_run(config) as pipeline:
        stage = {name: pipeline.stage(name) for name in STAGES}
        skipped = [name for name in STAGES if stage[name].done]
        seconds = {}
        train_dyn, held_dyn = quadrotors(config)
        n = config.num_teachers

        t = time.perf_counter()
        all_teachers, teacher_summary = train_teacher_stage(
            config, stage["teachers"], _concat(train_dyn, held_dyn), log
        )
        train_teachers, oracle_teachers = _split(all_teachers, n)
        seconds["teachers"] = time.perf_counter() - t
        log(f"teachers: {teacher_summary}")

        students = {}
        for name, recurrent in (("student", True), ("feedforward", False)):
            t = time.perf_counter()
            if stage[name].done and stage[name].summary()["epochs"] < config.distill.epochs:
                # More epochs asked for: continue from the checkpoint, then evaluate and export again.
                log(f"{name}: extending distillation to {config.distill.epochs} epochs")
                for later in ("evaluate", "export"):
                    stage[later].reopen()
                for s in (name, "evaluate", "export"):
                    if s in skipped:
                        skipped.remove(s)
            params, summary = distill_stage(config, stage[name], recurrent, train_teachers, train_dyn, log)
            students[name] = (networks.student_fns(recurrent), params)
            seconds[name] = time.perf_counter() - t
            log(f"{name}: {summary.get('final', {})}")

        t = time.perf_counter()
        evaluating = not stage["evaluate"].done
        summary = evaluate_stage(config, stage["evaluate"], oracle_teachers, held_dyn, students)
        headline = headline_eval(summary)
        if evaluating:  # metrics.jsonl: one record per evaluation, at the students' epoch count
            pipeline.log_eval(config.distill.epochs, {k: v for k, v in headline.items() if v is not None})
        seconds["evaluate"] = time.perf_counter() - t

        t = time.perf_counter()
        if not stage["export"].done:
            from robojax.agents.raptor.export import export_student_c

            out_dir = pipeline.path("export")
            exported = export_student_c(students["student"][1], out_dir)
            stage["export"].finish({"out_dir": out_dir, "files": _jsonable(exported)})
        seconds["export"] = time.perf_counter() - t

        # Teachers' throughput: median over compiled iterations of this or the original run.
        rate = teacher_summary.get("env_steps_per_s")
        wide = summary.get("wide") or {}
        table = evaluate.results_table(summary["results"])
        if wide:
            table += (
                "\n\nStudents alone on the wider held-out set"
                f" ({config.eval.wide_quadrotors} quadrotors x {config.eval.episodes_per_quadrotor} episodes):\n"
                + evaluate.results_table(wide)
            )
        return RaptorResult(
            summary["results"],
            wide,
            seconds,
            skipped,
            pipeline.workdir,
            rate,
            table,
            final_return=headline["eval/return"],
            final_success=headline["eval/success"],
            wall_s=pipeline.elapsed(),
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
