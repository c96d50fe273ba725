"""RAPTOR teacher study: what makes the SAC teachers better within a CPU budget.

    python -m benchmarks.raptor_teachers --variant=force_200k --settings="{'total_env_steps': 200000}"
    python -m benchmarks.raptor_teachers --render_only

Trains one SAC teacher on each of the 8 held-out quadrotors of the RAPTOR evaluation (seed 0, the
oracle set) with the given TeacherConfig overrides (`sac` holds SACConfig overrides), then flies
each teacher's deterministic policy on its own quadrotor for 16 hover and 16 tracking episodes
(the evaluation's starts). The student can only be as good as these teachers, so this is the
cheapest way to compare teacher settings. One variant per call; results are appended to
benchmarks/results/raptor_teachers.jsonl and rendered to raptor_teachers.md.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import time

from absl import app, flags

from robojax.runs import write_text

_VARIANT = flags.DEFINE_string("variant", None, "Name of this variant (a row of the table).")
_SETTINGS = flags.DEFINE_string(
    "settings", "{}", "TeacherConfig overrides as a Python dict literal; 'sac' for SAC fields."
)
_EPISODES = flags.DEFINE_integer("episodes", 16, "Evaluation episodes per quadrotor and task.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/raptor_teachers", "Output path stem (.jsonl, .md).")
_RENDER_ONLY = flags.DEFINE_boolean("render_only", False, "Only re-write the markdown from the jsonl.")


def run_variant(name: str, settings: dict, episodes: int) -> dict:
    import jax

    import robojax  # noqa: F401  (XLA CPU flags before JAX initialises)
    from robojax.agents.raptor import config as rc
    from robojax.agents.raptor import evaluate, teachers

    settings = dict(settings)
    sac = dataclasses.replace(rc.default_teacher_sac(), **settings.pop("sac", {}))
    tc = rc.TeacherConfig(**settings, sac=sac)
    env = teachers.make_teacher_env("track", tc.num_envs, tc.episode_length, tc.observation_size)
    sac_config = teachers.sac_train_config(tc, "track")
    held = evaluate.sample_quadrotors(0, evaluate.HELD_OUT_STREAM, 8)
    t0 = time.perf_counter()
    state = teachers.init_teachers(jax.random.PRNGKey(0), env, sac_config, held)
    state = teachers.train_teachers(state, env, sac_config, until_env_steps=tc.total_env_steps)
    out = {
        "name": name,
        "settings": _SETTINGS.value,
        "train_s": round(time.perf_counter() - t0),
        "updates_per_teacher": tc.iterations * tc.steps_per_iteration * sac.utd_ratio,
        "load_after": os.getloadavg()[0],
    }
    for i, task in enumerate(("hover", "track")):
        task_env = teachers.make_task_env(task, 500)
        key = jax.random.fold_in(jax.random.PRNGKey(0), 100 + i)
        per_episode, eps = evaluate.fly(task_env, 500, episodes, held, teachers_state=state.learner, key=key)
        m = evaluate.summarize(per_episode, eps)
        out[task] = {
            "success": round(m["success"], 3),
            "position_error": round(m["position_error"], 3),
            "steady_state_error_xyz": evaluate.steady_state_error(eps),
        }
    return out


def render(rows: list[dict]) -> str:
    lines = [
        "# RAPTOR teacher study",
        "",
        "SAC teachers trained on the 8 held-out quadrotors of the evaluation (seed 0), each flying its own"
        " quadrotor for 16 hover and 16 tracking episodes (128 per task): what the student imitates. One"
        " command per row: `python -m benchmarks.raptor_teachers --variant=NAME --settings=SETTINGS`.",
        "Training seconds are wall-clock on the 2-core machine, some rows next to other jobs (compare quality,"
        " not time; the cost of a setting is its updates per teacher x batch size).",
        "",
        "| variant | settings | updates per teacher | train s | hover success | hover error m | track success |"
        " track error m | steady-state error x/y/z m (hover) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        h, t = r["hover"], r["track"]
        ss = "/".join(f"{v:.2f}" for v in h["steady_state_error_xyz"])
        lines.append(
            f"| {r['name']} | `{r['settings']}` | {r.get('updates_per_teacher', '')} | {r['train_s']} |"
            f" {100 * h['success']:.0f}% | {h['position_error']:.3f} | {100 * t['success']:.0f}% |"
            f" {t['position_error']:.3f} | {ss} |"
        )
    notes = sorted({r["note"] for r in rows if r.get("note")})
    if notes:
        lines += [""] + [f"Note: {n} (rows {', '.join(r['name'] for r in rows if r.get('note') == n)})." for n in notes]
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    jsonl, md = _OUT.value + ".jsonl", _OUT.value + ".md"
    if not _RENDER_ONLY.value:
        if not _VARIANT.value:
            raise app.UsageError("--variant is required (or --render_only)")
        try:
            settings = ast.literal_eval(_SETTINGS.value)
        except (ValueError, SyntaxError) as e:
            raise app.UsageError(f"--settings must be a Python dict literal, got {_SETTINGS.value!r}: {e}") from None
        if not isinstance(settings, dict):
            raise app.UsageError(f"--settings must be a dict, got {type(settings).__name__}")
        row = run_variant(_VARIANT.value, settings, _EPISODES.value)
        print(json.dumps(row))
        with open(jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
    rows = [json.loads(line) for line in open(jsonl)] if os.path.exists(jsonl) else []
    text = render(rows)
    write_text(md, text)
    print(text)


if __name__ == "__main__":
    app.run(main)
