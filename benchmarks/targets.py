"""The `targets` block of a benchmark's results: `{name: {"measured": value, "goal": text, "met": bool}}`.

Every benchmark script has a pure `targets(results) -> dict` that builds this block from the
figures it already writes, one entry per target its issue named, and calls it when it writes its
JSON; its markdown gets `targets_table(block)`. A target whose figure the results lack records
`measured: None, met: False` and a `note` saying why. No absl flags and no JAX here, so scripts,
tests and the backfill below can import it.

    python -m benchmarks.targets        # recompute the block of every committed results JSON

The backfill recomputes each block with that script's own `targets()` from the committed figures
(nothing is re-measured) and rewrites the JSON and the markdown's "## Targets" section.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
HEADING = "## Targets"

# results stem (benchmarks/results/<stem>.json) -> the benchmark script whose targets() builds its block
BENCHMARKS = {
    "deploy": "deploy",
    "deploy_train_sac": "deploy_train_sac",
    "diffusion_policy": "diffusion_policy",
    "ebt_policy": "ebt_policy",
    "env_throughput": "env_throughput",
    "env_throughput_arm": "env_throughput",  # the arm rows re-measured by the same script
    "quadrotor_throughput": "quadrotor_throughput",
    "raptor": "raptor",
    "ppo": "ppo",
    "sac": "sac",
}

_MEASURED_TYPES = (bool, int, float, str, type(None))


def target(measured, goal: str, met: bool, note: str | None = None) -> dict:
    """One entry of a targets block; a NaN or missing figure is recorded as None and never met."""
    if isinstance(measured, float) and not math.isfinite(measured):
        measured = None
    entry = {"measured": measured, "goal": goal, "met": bool(met) and measured is not None}
    if note:
        entry["note"] = note
    return entry


def missing(goal: str, why: str) -> dict:
    """A target whose figure the results do not hold: measured None, not met, and why."""
    return target(None, goal, False, why)


def check_targets(block) -> None:
    """Raise ValueError naming the first malformed entry of a targets block."""
    if not isinstance(block, dict) or not block:
        raise ValueError(f"a targets block is a non-empty dict {{name: entry}}, got {block!r}")
    for name, entry in block.items():
        if not isinstance(entry, dict) or not {"measured", "goal", "met"} <= set(entry):
            raise ValueError(f"target {name!r} needs the keys measured, goal and met, got {entry!r}")
        if not isinstance(entry["measured"], _MEASURED_TYPES):
            raise ValueError(
                f"target {name!r}: measured must be a number, bool, string or null,"
                f" got {type(entry['measured']).__name__}"
            )
        if isinstance(entry["measured"], float) and not math.isfinite(entry["measured"]):
            raise ValueError(f"target {name!r}: measured is {entry['measured']}; record a missing figure as null")
        if not isinstance(entry["goal"], str) or not entry["goal"]:
            raise ValueError(f"target {name!r}: goal must be a non-empty string")
        if not isinstance(entry["met"], bool):
            raise ValueError(f"target {name!r}: met must be true or false, got {entry['met']!r}")
        if entry["measured"] is None and entry["met"]:
            raise ValueError(f"target {name!r} has no measured figure, so it cannot be met")
        if entry["measured"] is None and not entry.get("note"):
            raise ValueError(f"target {name!r} has no measured figure: add a note saying why")


def _fmt(value) -> str:
    if value is None:
        return "not recorded"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,d}"
    return str(value)


def targets_table(block: dict) -> list[str]:
    """Markdown lines of the "## Targets" section: one row per target."""
    lines = [HEADING, "", "| target | goal | measured | met | note |", "|---|---|---:|---|---|"]
    for name, e in block.items():
        met = "yes" if e["met"] else "**no**"
        cells = [name, e["goal"], _fmt(e["measured"]), met, e.get("note", "")]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines


def with_targets_section(markdown: str, block: dict) -> str:
    """`markdown` with its "## Targets" section (up to the next "## " heading) replaced, or appended."""
    lines = markdown.rstrip("\n").split("\n")
    table = targets_table(block)
    if HEADING in lines:
        start = lines.index(HEADING)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = lines[end:]
        lines = lines[:start] + table + ([""] + tail if tail else [])
    else:
        lines = lines + [""] + table
    return "\n".join(lines) + "\n"


def _write_text(path: str, text: str) -> None:
    # robojax.runs.write_text does the same but importing robojax.runs loads JAX.
    tmp = path + ".tmp"  # written aside, then renamed
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_report(stem: str, results: dict, lines: list[str]) -> None:
    """Write `<stem>.json` (the results) and `<stem>.md` (the rendered lines), each aside then renamed; print the lines."""
    os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
    _write_text(stem + ".json", json.dumps(results, indent=1) + "\n")
    _write_text(stem + ".md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def record_targets(stem: str, targets_fn) -> dict:
    """Recompute the block of `<stem>.json` with `targets_fn` and write it into the JSON and the markdown."""
    with open(stem + ".json") as f:
        results = json.load(f)
    if not isinstance(results.get("targets", {}), dict):
        raise ValueError(
            f"{stem}.json: 'targets' holds {type(results['targets']).__name__}, not a targets block;"
            " move those figures to another key first (benchmarks.sac --render_only does so for sac)"
        )
    results["targets"] = block = targets_fn(results)
    check_targets(block)
    _write_text(stem + ".json", json.dumps(results, indent=1) + "\n")
    md = stem + ".md"
    text = open(md).read() if os.path.exists(md) else ""
    _write_text(md, with_targets_section(text, block))
    return block


def drop_script_flags() -> None:
    """Unregister every absl flag an `experiments.*` or `benchmarks.*` module defined.

    Each experiment and benchmark script defines its flags when imported, into absl's one global
    FLAGS, and absl refuses a name (`--out`, `--seed`, `--task`, ...) that a second module already
    defined. Each script runs alone as a CLI, so that is right for them; a process that imports
    several (pytest, or `python -m benchmarks.targets`) calls this before importing the next one.
    """
    from absl import flags

    # Copy first: deleting a flag also removes it from these live per-module lists.
    taken = {
        flag.name
        for module, module_flags in flags.FLAGS.flags_by_module_dict().items()
        if module.startswith(("experiments.", "benchmarks."))
        for flag in list(module_flags)
    }
    for name in taken:
        if name in flags.FLAGS:
            delattr(flags.FLAGS, name)


def benchmark_targets(module: str):
    """`benchmarks.<module>.targets`, importable beside other benchmarks and experiments in one process.

    Only the pure targets() is needed here, so the script flags already registered are dropped
    before the import (else its flag definitions collide with theirs) and its own ones after it.
    """
    drop_script_flags()
    try:
        mod = importlib.import_module(f"benchmarks.{module}")
    finally:
        drop_script_flags()
    return mod.targets


def main(argv: list[str]) -> int:
    stems = argv or sorted(BENCHMARKS)
    for stem in stems:
        if stem not in BENCHMARKS:
            raise SystemExit(f"unknown results {stem!r}; known: {', '.join(sorted(BENCHMARKS))}")
        block = record_targets(os.path.join(RESULTS_DIR, stem), benchmark_targets(BENCHMARKS[stem]))
        met = sum(e["met"] for e in block.values())
        print(f"{stem}: {met}/{len(block)} targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
