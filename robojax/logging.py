"""Metrics sinks (stdout, JSONL, TensorBoard), a progress bar, and learning-curve plots.

Learners return metrics once per jitted iteration; the host loop hands them to a `MetricsLogger`,
which fans out to sinks. JSONL is the record of a run (append-only, robust to new keys, truncated
to the resumed step on resume); TensorBoard goes through tensorboardX, which needs no TensorFlow.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


class MetricsSink:
    """Receives one flat dict of scalar metrics per step."""

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class StdoutSink(MetricsSink):
    """Prints a line per record that holds one of `keys` (all records when keys is None).

    print_fn: where lines go (e.g. `ProgressBar.write`, which keeps a live bar intact).
    """

    def __init__(self, keys: Sequence[str] | None = None, every: int = 1, stream=None, print_fn=None):
        self.keys, self.every, self._count = keys, max(1, every), 0
        self._print = print_fn or (lambda line: print(line, file=stream or sys.stdout, flush=True))

    def write(self, step, metrics):
        shown = metrics if self.keys is None else {k: metrics[k] for k in self.keys if k in metrics}
        if not shown:
            return
        self._count += 1
        if (self._count - 1) % self.every:
            return
        self._print(f"step {step:>10,d} | " + " | ".join(f"{k} {_format(v)}" for k, v in shown.items()))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """All records of a JSONL metrics file (a torn last line from a crash is skipped)."""
    records = []
    if not os.path.exists(path):
        return records
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


class JsonlSink(MetricsSink):
    """Appends `{"step": s, "time": t, **metrics}` lines; on resume drops records past the resumed step."""

    def __init__(self, path: str | os.PathLike, resume_step: int | None = None):
        self.path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        if resume_step is None:
            kept = []
        else:
            # A run killed after its last checkpoint logged steps that the resumed run will redo.
            kept = [r for r in read_jsonl(self.path) if r.get("step", math.inf) <= resume_step]
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
        os.replace(tmp, self.path)
        self._file = open(self.path, "a")

    def write(self, step, metrics):
        record = {"step": int(step), "time": time.time(), **{k: _json_scalar(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def history(self) -> list[dict]:
        self._file.flush()
        return read_jsonl(self.path)

    def close(self):
        self._file.close()


def _json_scalar(value: Any) -> Any:
    value = float(value) if not isinstance(value, (int, str, bool)) else value
    return None if isinstance(value, float) and not math.isfinite(value) else value


class TensorBoardSink(MetricsSink):
    """Scalars to a TensorBoard event file through tensorboardX (pure Python, no TensorFlow)."""

    def __init__(self, logdir: str | os.PathLike, purge_step: int | None = None):
        from tensorboardX import SummaryWriter

        # purge_step hides events a crashed run logged past its last checkpoint.
        self._writer = SummaryWriter(os.fspath(logdir), purge_step=purge_step)

    def write(self, step, metrics):
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self._writer.add_scalar(key, value, int(step))
        self._writer.flush()

    def close(self):
        self._writer.close()


class MetricsLogger(MetricsSink):
    """Fans metrics out to several sinks."""

    def __init__(self, sinks: Iterable[MetricsSink]):
        self.sinks = list(sinks)

    def write(self, step, metrics):
        for sink in self.sinks:
            sink.write(step, metrics)

    def history(self) -> list[dict]:
        """Records of the first JSONL sink (empty without one)."""
        for sink in self.sinks:
            if isinstance(sink, JsonlSink):
                return sink.history()
        return []

    def close(self):
        for sink in self.sinks:
            sink.close()


class ProgressBar:
    """A tqdm bar over the loop's counter showing its rate and the latest eval figure; silent when not a TTY.

    unit: what the counter counts ("step", "env step", "epoch"); the rate shows as "<unit>s/s".
    """

    def __init__(self, total: int, initial: int = 0, enabled: bool = True, stream=None, unit: str = "step"):
        stream = stream or sys.stderr
        self._bar = None
        self._rate_label = f"{unit}s/s"
        self._eval_return: float | None = None
        self._last = (time.perf_counter(), initial)
        if enabled and hasattr(stream, "isatty") and stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, unit=unit, unit_scale=True, file=stream, dynamic_ncols=True)

    @property
    def enabled(self) -> bool:
        return self._bar is not None

    def update(self, env_steps: int) -> None:
        now = time.perf_counter()
        rate = (env_steps - self._last[1]) / max(now - self._last[0], 1e-9)
        self._last = (now, env_steps)
        if self._bar is None:
            return
        self._bar.update(env_steps - self._bar.n)
        postfix = {self._rate_label: f"{rate:,.0f}"}
        if self._eval_return is not None:
            postfix["eval"] = f"{self._eval_return:.1f}"
        self._bar.set_postfix(postfix, refresh=True)

    def write(self, line: str) -> None:
        """Print a line above the bar (plain stdout when the bar is off)."""
        if self._bar is None:
            print(line, flush=True)
        else:
            self._bar.write(line)

    def set_eval_return(self, value: float) -> None:
        self._eval_return = float(value)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def plot_learning_curve(
    jsonl_path: str | os.PathLike,
    png_path: str | os.PathLike,
    x: str = "env_steps",
    y: Sequence[str] = ("eval/return", "train/episode_return"),
    title: str | None = None,
) -> str:
    """Plot metrics from a JSONL file against `x` into a PNG (written aside, then renamed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_jsonl(jsonl_path)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for key in y:
        # Iterations in which no training episode finished report a placeholder return: skip them.
        points = [
            (r.get(x, r["step"]), r[key])
            for r in records
            if r.get(key) is not None and not (key.startswith("train/") and r.get("train/episodes", 1) == 0)
        ]
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o" if key.startswith("eval") else None, markersize=3, label=key)
    ax.set_xlabel(x)
    ax.set_ylabel("return")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    ax.set_title(title or os.path.basename(os.path.dirname(os.path.abspath(png_path))))
    fig.tight_layout()
    png_path = os.fspath(png_path)
    tmp = png_path + ".tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, png_path)
    return png_path
