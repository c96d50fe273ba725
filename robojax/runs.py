"""Run-directory helpers shared by the training loops: the checkpoint directory, JSON files, intervals."""

from __future__ import annotations

import json
import os
from typing import Any

from robojax import checkpoint as ckpt


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


def crossed(before: int, after: int, interval: int) -> bool:
    """Whether a counter going from `before` to `after` passed a multiple of `interval` (never for interval <= 0)."""
    return interval > 0 and after // interval > before // interval
