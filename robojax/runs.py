"""The run scaffold every train.py uses: run directory, config.json, metadata, resume, sinks, progress.

A training loop keeps its own iteration, evaluation and stopping rule; everything around it lives
in a `Run`:

    with runs.Run(workdir, resume=config.resume, checkpoints_to_keep=config.checkpoints_to_keep,
                  resumable=RESUMABLE_CHANGES) as run:            # refuses bad directories first
        env, state = make_env(...), init(...)
        run.describe(runs.run_metadata("robojax.x.loop/1", to_dict(config), env=config.env))
        if run.resuming:
            state, _ = run.restore(state)                        # checks the resume fingerprint
        run.start(step=int(state.step), total=config.total_steps)   # config.json, sinks, progress bar
        while step < config.total_steps:
            before, (state, metrics) = step, timed_call(state)
            step = int(state.step)
            run.advance(step, seconds=dt)                        # progress bar, first-iteration time
            run.log(step, metrics)
            if run.crossed(before, step, config.eval_interval):
                run.log_eval(step, evaluate(state))
            if run.checkpoint_due(before, step, config.checkpoint_interval, final=step >= config.total_steps):
                run.save(step, state)
        run.finish(policy=policy_tree)                           # policy/, learning_curve.png
    return Result(**vars(run.record()), state=state)

With `workdir=None` (tests, benchmarks) nothing is written, but metrics still reach stdout and the
progress bar. A pipeline of stages (RAPTOR) opens a `Run(..., checkpoints=False)`, whose config.json
is checked on rerun instead of a checkpoint's metadata, and asks `run.stage(name)` for each stage's
done marker, summary, checkpoint directory and metrics file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

import robojax
from robojax import checkpoint as ckpt
from robojax import logging as rlog

# Keys of the run metadata that a resume may differ in without continuing a different run.
VERSION_KEYS = ("robojax_version", "jax_version")


def open_checkpointer(workdir: str, *, resume: bool, keep: int, resume_flag: str | None = None) -> ckpt.Checkpointer:
    """The run's `workdir/checkpoints`, refusing to resume from nothing or to start over an existing run.

    Raises FileNotFoundError when resuming finds no checkpoint, FileExistsError when a new run finds
    one. resume_flag: how the messages name the resume switch: None for the config field
    ("run without resume", "resume to continue"), or a command-line flag such as "--resume"
    ("run without --resume", "pass --resume to continue").
    """
    directory = os.path.join(workdir, "checkpoints")
    without, to_continue = (resume_flag, f"pass {resume_flag}") if resume_flag else ("resume", "resume")
    missing = FileNotFoundError(
        f"resume: no checkpoint in {directory}; check the workdir, or run without {without} to start a new run"
    )
    if resume and not os.path.isdir(directory):
        raise missing
    checkpointer = ckpt.Checkpointer(directory, keep=keep, create=not resume)
    latest = checkpointer.latest_step()
    problem = None
    if resume and latest is None:
        problem = missing
    elif not resume and latest is not None:
        problem = FileExistsError(
            f"{directory} already holds checkpoints (latest step {latest}); {to_continue} to continue that run,"
            " or choose a new workdir"
        )
    if problem:
        checkpointer.close()
        raise problem
    return checkpointer


def write_text(path: str, text: str) -> None:
    """Write `text` to `path` atomically (to `path.tmp`, then renamed over `path`)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json(path: str, value: Any) -> None:
    """Write `value` as JSON to `path` atomically (to `path.tmp`, then renamed over `path`)."""
    write_text(path, json.dumps(value, indent=1))


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def crossed(before: int, after: int, interval: int) -> bool:
    """Whether a counter going from `before` to `after` passed a multiple of `interval` (never for interval <= 0)."""
    return interval > 0 and after // interval > before // interval


# ---- metadata and the resume fingerprint -----------------------------------------------------------


def run_metadata(fmt: str, config: Mapping, **fields: Any) -> dict:
    """What a run records about itself (config.json, every checkpoint, the saved policy).

    fmt: names the loop and its checkpoint layout, e.g. "robojax.sac.loop/1".
    config: the run's config as a JSON dict; fields: what else must match on resume (env, specs).
    """
    return {
        "format": fmt,
        "robojax_version": robojax.__version__,
        "jax_version": jax.__version__,
        **fields,
        "config": dict(config),
    }


def env_run_metadata(fmt: str, config: Mapping, env_name: str, env: Any, **fields: Any) -> dict:
    """`run_metadata` of a run on one env: its name and its observation and action specs, plus `fields`."""
    return run_metadata(
        fmt,
        config,
        env=env_name,
        observation_spec=env.observation_spec.to_dict(),
        action_spec=env.action_spec.to_dict(),
        **fields,
    )


def without_fields(config: Mapping, names: Sequence[str]) -> dict:
    """A JSON copy of `config` less the fields in `names`; dotted names reach nested configs ("distill.epochs")."""
    config = json.loads(json.dumps(config))
    for dotted in names:
        *groups, name = dotted.split(".")
        node = config
        for group in groups:
            node = node.get(group) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(name, None)
    return config


def resume_fingerprint(metadata: Mapping, resumable: Sequence[str] = ()) -> dict:
    """The part of the run metadata that must match for a resume: all but versions and `resumable` config fields."""
    fingerprint = {k: v for k, v in metadata.items() if k not in VERSION_KEYS and k != "config"}
    fingerprint["config"] = without_fields(metadata.get("config", {}), resumable)
    return fingerprint


# ---- the run ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class RunRecord:
    """What every loop's result reports, as the run saw it; loops build their result dataclass from it."""

    final_eval: dict | None  # the last evaluation record (None when the run never evaluated)
    eval_history: list[dict]  # every evaluation record of the run, resumed ones included
    steps: int  # the loop's counter at the end (env steps, gradient steps, epochs)
    wall_s: float  # since the Run was created
    first_iteration_s: float  # the first iteration of this process, compilation included (0 if none)
    workdir: str | None

    def result_fields(self, steps: int | None = None) -> dict:
        """The fields every loop's result dataclass shares: eval_history, steps, wall_s, first_iteration_s, workdir."""
        return {
            "eval_history": self.eval_history,
            "steps": self.steps if steps is None else steps,
            "wall_s": self.wall_s,
            "first_iteration_s": self.first_iteration_s,
            "workdir": self.workdir,
        }


class Run:
    """One training run: its directory, metadata, checkpoints, metric sinks, progress bar and results.

    Files in `workdir`: config.json (the run metadata), checkpoints/ (Orbax, the loop state at
    `save` steps), metrics.jsonl, tensorboard/, learning_curve.png and policy/ (at `finish`). Every
    file is written aside and renamed. Use as a context manager: leaving it closes the sinks and
    the progress bar and waits for asynchronous checkpoint saves, also when the loop raised.

    workdir: the run directory, or None for a run that writes nothing (logs and progress only).
    resume: continue the run in workdir from its latest checkpoint. The constructor already refuses
      a resume with nothing to resume (FileNotFoundError) and a new run over an existing one
      (FileExistsError), before the loop builds anything expensive.
    resumable: config fields that may change on resume (budget, intervals, workdir); dotted names
      reach nested configs. fingerprint: `metadata -> dict` of what must match on resume (default:
      `resume_fingerprint(metadata, resumable)`).
    checkpoints: whether the run has a top-level checkpoints/ (False for a pipeline of stages, whose
      config.json is then checked against the existing one instead).
    resume_flag: how errors name the resume switch (None: the config field; or e.g. "--resume").
    metadata: the run metadata (`run_metadata(...)`), or given later to `describe` once the env is built.
    stdout_keys: metrics printed as lines (through the progress bar) when a record holds one of them.
    eval_key: the headline figure of an evaluation record, shown on the progress bar; records
      holding it make up `eval_history` (also those read back from metrics.jsonl on resume).
    progress_bar: show a tqdm bar when stderr is a terminal. progress_unit: what the loop counts
      ("env step", "step", "epoch"); the bar shows its rate per second.
    started: the `time.perf_counter()` that wall-clock figures count from (default: now), for a
      loop that does work (loading a dataset) before it creates its Run.
    """

    def __init__(
        self,
        workdir: str | os.PathLike | None,
        *,
        resume: bool = False,
        resumable: Sequence[str] = (),
        fingerprint: Callable[[Mapping], dict] | None = None,
        checkpoints_to_keep: int = 3,
        checkpoints: bool = True,
        resume_flag: str | None = None,
        metadata: Mapping | None = None,
        stdout_keys: Sequence[str] | None = ("eval/return", "eval/success"),
        eval_key: str = "eval/return",
        progress_bar: bool = True,
        progress_unit: str = "step",
        started: float | None = None,
    ):
        self.started = time.perf_counter() if started is None else started
        self.workdir = os.path.abspath(os.fspath(workdir)) if workdir else None
        if resume and not self.workdir:
            raise ValueError("resume needs a workdir to resume from; give the run directory, or run without resume")
        self.resume, self.resumable, self.resume_flag = bool(resume), tuple(resumable), resume_flag
        self._fingerprint = fingerprint or (lambda metadata: resume_fingerprint(metadata, self.resumable))
        self.metadata: dict | None = dict(metadata) if metadata is not None else None
        self.stdout_keys, self.eval_key = stdout_keys, eval_key
        self.progress_bar, self.progress_unit = progress_bar, progress_unit
        self.checkpointer: ckpt.Checkpointer | None = None
        if self.workdir and checkpoints:  # cheap checks first
            self.checkpointer = open_checkpointer(
                self.workdir, resume=self.resume, keep=checkpoints_to_keep, resume_flag=resume_flag
            )
        self.eval_history: list[dict] = []
        self.last_eval: dict | None = None
        self.first_iteration_s: float | None = None
        self.step = 0
        self.logger: rlog.MetricsLogger | None = None
        self.progress: rlog.ProgressBar | None = None

    # -- context --
    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close progress bar and sinks, and wait for asynchronous checkpoint saves (idempotent)."""
        self._close_outputs()
        if self.checkpointer is not None:
            self.checkpointer.close()
            self.checkpointer = None

    def _close_outputs(self) -> None:
        if self.progress is not None:
            self.progress.close()
        if self.logger is not None:
            self.logger.close()
        self.progress = self.logger = None

    # -- metadata, resume --
    @property
    def resuming(self) -> bool:
        """Whether this run continues an earlier one from its latest checkpoint."""
        return self.resume and self.checkpointer is not None

    def path(self, *parts: str) -> str | None:
        """A path inside the run directory (None without one)."""
        return os.path.join(self.workdir, *parts) if self.workdir else None

    def describe(self, metadata: Mapping) -> None:
        """Set the run metadata (once the env or dataset it names is known)."""
        self.metadata = dict(metadata)

    def _require_metadata(self) -> dict:
        if self.metadata is None:
            raise RuntimeError("the run has no metadata yet: pass metadata= to Run or call run.describe(...) first")
        return self.metadata

    def check_compatible(self, saved: Mapping, where: str) -> None:
        """Raise `CheckpointMismatchError` listing the fields where `saved` metadata differs from this run's."""
        try:
            ckpt.check_compatible(self._fingerprint(saved), self._fingerprint(self._require_metadata()), where=where)
        except ckpt.CheckpointMismatchError as error:
            may_change = ", ".join(self.resumable) or "none"
            raise ckpt.CheckpointMismatchError(f"{error}\n(Settings a resume may change: {may_change}.)") from None

    def restore(self, template: Any, *, extras: Mapping[str, Any] | None = None, step: int | None = None):
        """The loop state of the latest (or `step`) checkpoint in the shapes of `template`, after the metadata check.

        Returns (state, {extra name: tree}) as `Checkpointer.restore` (extras absent from the
        checkpoint are left out). Raises CheckpointMismatchError for a checkpoint of another run.
        """
        if self.checkpointer is None:
            raise ValueError("this run has no checkpoints to restore from (no workdir, or checkpoints=False)")
        step = self.checkpointer.latest_step() if step is None else step
        self.check_compatible(self.checkpointer.read_metadata(step), where=self.checkpointer.step_path(step))
        return self.checkpointer.restore(template, step=step, extras=extras)

    # -- the loop --
    def start(self, step: int = 0, total: int = 0) -> Run:
        """Write config.json and open the sinks and the progress bar at the loop's counter `step` of `total`.

        On resume the JSONL log drops records past `step` (a killed run logged steps it will redo)
        and TensorBoard purges them; `eval_history` starts with the evaluations still in the log.
        total: the counter's end, for the progress bar (0: no bar, e.g. a pipeline of stages).
        """
        metadata = self._require_metadata()
        self.step = int(step)
        resume_step = self.step if self.resume else None
        if self.workdir:
            os.makedirs(self.workdir, exist_ok=True)
            config_path = self.path("config.json")
            if self.checkpointer is None and os.path.exists(config_path):
                # Without checkpoints (a pipeline of stages) a rerun continues the run in place:
                # config.json is what it must match, and the log keeps every record.
                self.check_compatible(read_json(config_path), where=config_path)
                resume_step = math.inf
            write_json(config_path, metadata)
        self.progress = rlog.ProgressBar(
            total, initial=self.step, enabled=self.progress_bar and total > 0, unit=self.progress_unit
        )
        sinks: list[rlog.MetricsSink] = [rlog.StdoutSink(keys=self.stdout_keys, print_fn=self.progress.write)]
        if self.workdir:
            sinks.append(rlog.JsonlSink(self.path("metrics.jsonl"), resume_step=resume_step))
            purge_step = resume_step if resume_step != math.inf else None
            sinks.append(rlog.TensorBoardSink(self.path("tensorboard"), purge_step=purge_step))
        self.logger = rlog.MetricsLogger(sinks)
        self.eval_history = [r for r in self.logger.history() if self.eval_key in r]
        return self

    def advance(self, step: int, seconds: float | None = None) -> None:
        """The loop's counter reached `step`; `seconds`: how long the iteration took (the first is kept)."""
        if seconds is not None and self.first_iteration_s is None:
            self.first_iteration_s = seconds
        self.step = int(step)
        self.progress.update(self.step)

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        """One record of metrics at `step` to every sink (stdout shows it only if it holds a stdout key)."""
        self.logger.write(step, metrics)

    def log_eval(self, step: int, record: Mapping[str, Any]) -> dict:
        """Log an evaluation record, add it to `eval_history` and show its headline figure on the bar."""
        record = dict(record)
        self.log(step, record)
        self.eval_history.append(record)
        self.last_eval = record
        if self.eval_key in record and record[self.eval_key] is not None:
            self.progress.set_eval_return(record[self.eval_key])
        return record

    crossed = staticmethod(crossed)

    def checkpoint_due(self, before: int, after: int, interval: int, *, final: bool = False) -> bool:
        """Whether to checkpoint: the counter crossed a multiple of `interval`, or `final` (never without a workdir)."""
        return self.checkpointer is not None and (crossed(before, after, interval) or final)

    def save(self, step: int, state: Any, *, extras: Mapping[str, Any] | None = None) -> None:
        """Start an asynchronous checkpoint of the loop state (and extra items) at `step`, with the run metadata."""
        if self.checkpointer is not None:
            self.checkpointer.save(int(step), state, extras=extras, metadata=self._require_metadata())

    def elapsed(self) -> float:
        """Seconds since the Run was created."""
        return time.perf_counter() - self.started

    def finish(
        self,
        *,
        policy: Any = None,
        policy_metadata: Mapping | None = None,
        save_policy: Callable[[str], Any] | None = None,
        plot: bool = True,
        plot_x: str = "env_steps",
        plot_y: Sequence[str] = ("eval/return", "train/episode_return"),
    ) -> None:
        """Close sinks and bar, then save the final policy to policy/ and plot learning_curve.png.

        policy: a parameter tree saved by `checkpoint.save_policy` with `policy_metadata` (default:
        the run metadata); or save_policy: `(directory) -> ...` for a loop with its own format.
        plot_x, plot_y: the metrics.jsonl keys the learning curve plots. Nothing is written without
        a workdir.
        """
        self._close_outputs()
        if not self.workdir:
            return
        if save_policy is not None:
            save_policy(self.path("policy"))
        elif policy is not None:
            ckpt.save_policy(self.path("policy"), policy, policy_metadata or self._require_metadata())
        if plot:
            rlog.plot_learning_curve(self.path("metrics.jsonl"), self.path("learning_curve.png"), x=plot_x, y=plot_y)

    def record(self) -> RunRecord:
        """The figures every loop's result reports."""
        return RunRecord(
            final_eval=self.last_eval,
            eval_history=self.eval_history,
            steps=self.step,
            wall_s=self.elapsed(),
            first_iteration_s=self.first_iteration_s or 0.0,
            workdir=self.workdir,
        )

    # -- stages --
    def stage(self, name: str) -> Stage:
        """One stage of a pipeline run (needs a workdir): done marker, summary, checkpoints, metrics file."""
        if not self.workdir:
            raise ValueError(f"stage {name!r} needs a run directory; give the Run a workdir")
        return Stage(self.workdir, name, progress_bar=self.progress_bar)


class Stage:
    """A resumable stage of a pipeline: stages/<name>.json marks it done and holds its summary.

    A rerun skips a done stage (`done`, `summary()`) and resumes an unfinished one from
    checkpoints/<name>/ (`checkpointer()`); its metrics go to <name>.jsonl (`metrics(step)`).
    """

    def __init__(self, workdir: str, name: str, *, progress_bar: bool = True):
        self.workdir, self.name, self.progress_bar = workdir, name, progress_bar
        self.marker = os.path.join(workdir, "stages", f"{name}.json")
        self.checkpoints = os.path.join(workdir, "checkpoints", name)

    @property
    def done(self) -> bool:
        return os.path.exists(self.marker)

    def finish(self, summary: Mapping) -> None:
        """Mark the stage done with its summary (written aside, then renamed)."""
        os.makedirs(os.path.dirname(self.marker), exist_ok=True)
        write_json(self.marker, dict(summary))

    def reopen(self) -> None:
        """Forget that the stage finished, so the next run redoes it (its checkpoints stay)."""
        if self.done:
            os.remove(self.marker)

    def summary(self) -> dict:
        return read_json(self.marker)

    def checkpointer(self, keep: int = 1) -> ckpt.Checkpointer:
        return ckpt.Checkpointer(self.checkpoints, keep=keep)

    def metrics(self, resume_step: int | None = None) -> rlog.JsonlSink:
        """The stage's <name>.jsonl, truncated to `resume_step` when resuming (None or 0: a fresh log)."""
        return rlog.JsonlSink(os.path.join(self.workdir, f"{self.name}.jsonl"), resume_step=resume_step or None)

    def progress(self, total: int, initial: int = 0, unit: str = "step") -> rlog.ProgressBar:
        return rlog.ProgressBar(total, initial=initial, enabled=self.progress_bar, unit=unit)
