"""RAPTOR benchmark (issue 5): teachers + distillation wall-clock, held-out student quality, scaling.

    python -m benchmarks.raptor                        # the 32-teacher run (the default config)
    python -m benchmarks.raptor --counts=8,16,32,64    # teacher-count scaling (one full run each)
    python -m benchmarks.raptor --render_only          # rewrite the markdown from the saved JSON

Each count runs `python -m experiments.train_raptor --num_teachers=N` in a fresh process with the
persistent compile cache off, so the wall-clock counts start-up and all compilation; every other
setting is the experiment's default (CPU-sized, see robojax/agents/raptor/config.py). Reported:
total and per-stage wall-clock, held-out success (hover) and mean position error (track, hover)
for the GRU student, the oracle teachers and the feedforward ablation on the oracle held-out set,
the students alone on the wide held-out set (the headline figures), the estimated share of hover
starts that can be survived at all (envs/quadrotor/feasibility.py, cached in the JSON), and the
teachers' training throughput in env steps/s across all teachers. The 1000-teacher GPU figure is a *projection* from
the CPU measurement and XLA's FLOP count of one teacher iteration (no GPU was used).
Writes benchmarks/results/raptor.md and raptor.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from benchmarks.machine import machine_info
from benchmarks.targets import missing, target, targets_table
from robojax.runs import write_json, write_text

_COUNTS = flags.DEFINE_list("counts", ["32"], "Teacher counts to run (one full pipeline each).")
_OUT = flags.DEFINE_string("out", "benchmarks/results/raptor", "Output path stem (.md, .json).")
_RENDER_ONLY = flags.DEFINE_boolean("render_only", False, "Re-write the markdown from the saved JSON.")
_EXTRA = flags.DEFINE_list("extra_flags", [], "Extra flags passed to experiments.train_raptor (e.g. --seed=1).")
_REPARSE = flags.DEFINE_boolean(
    "reparse", False, "Re-read failed runs of the saved JSON from their run directories (keeps their wall-clock)."
)
_VARIANT = flags.DEFINE_string(
    "record_variant",
    "",
    "Record the held-out results of a finished run directory (e.g. one re-distilled with other"
    " settings on the same teachers) under --variant_title, without running anything; shown in the markdown.",
)
_VARIANT_TITLE = flags.DEFINE_string(
    "variant_title", "", "Title of the --record_variant entry (replaces one of that title)."
)
_VARIANT_COMMAND = flags.DEFINE_string("variant_command", "", "The command that produced the --record_variant run.")
_SURVIVABLE = flags.DEFINE_boolean(
    "survivable",
    True,
    "Estimate which evaluation hover starts are survivable at all (about 3 CPU-min; cached in the JSON).",
)
_FLOPS = flags.DEFINE_boolean("flops", True, "Count FLOPs of one teacher iteration for the GPU projection.")

TARGET_MINUTES = 30.0
TARGET_HOVER_SUCCESS = 0.90
TARGET_TRACK_ERROR_M = 0.2
# Projection assumptions (stated in the report): H100 SXM FP32 non-tensor peak, and the fraction of
# it small per-teacher MLP updates (batched over 1000 teachers) reach.
H100_FP32_FLOPS = 67e12
ASSUMED_UTILISATION = (0.05, 0.25)
PAPER_TEACHER_STEPS = 1_000_000
TARGET_COUNTS = (8, 16, 32, 64)  # issue 5: teacher-count scaling


def _loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def run_count(n: int, root: str) -> dict:
    workdir = os.path.join(root, f"raptor_{n}")
    cmd = [
        sys.executable,
        "-m",
        "experiments.train_raptor",
        f"--num_teachers={n}",
        f"--workdir={workdir}",
        "--progress_bar=false",
        "--compile_cache_dir=",
        *_EXTRA.value,
    ]
    load_before = _loadavg()
    cpu0 = _children_cpu_s()
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    cpu = _children_cpu_s() - cpu0
    if proc.returncode != 0:
        return {
            "num_teachers": n,
            "failed": True,
            "stderr_tail": proc.stderr[-3000:],
            "wall_s": wall,
            "workdir": workdir,
            "command": " ".join(["python", *cmd[1:]]),
            "load_before": load_before,
            "load_after": _loadavg(),
        }
    record = parse_run(n, workdir, wall, load_before, _loadavg(), " ".join(["python", *cmd[1:]]))
    record["stdout_tail"] = proc.stdout[-2500:]
    record["cpu_s"] = cpu
    return record


def _settings(config: dict) -> str:
    """The settings that changed between benchmark rounds, so rows of different rounds are told apart."""
    t = config["teacher"]
    force = "yes" if t.get("observe_disturbance") else "no"
    steps = t.get("total_env_steps", t.get("env_steps"))  # env_steps: results stored before the rename
    return f"{steps // 1000}k / {config['distill']['epochs']} / {force}"


def _cpu_min(record: dict) -> str:
    return f"{record['cpu_s'] / 60:.1f}" if "cpu_s" in record else "not recorded"


def _children_cpu_s() -> float:
    """User + system CPU seconds of finished child processes: less sensitive to a shared machine than wall-clock."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def parse_run(n: int, workdir: str, wall: float, load_before: float, load_after: float, command: str) -> dict:
    """The figures of a finished run directory."""
    stages = {}
    for name in ("teachers", "student", "feedforward", "evaluate", "export"):
        with open(os.path.join(workdir, "stages", f"{name}.json")) as f:
            stages[name] = json.load(f)
    with open(os.path.join(workdir, "results.json")) as f:
        saved = json.load(f)
    results, wide = saved["results"], saved.get("wide") or {}
    with open(os.path.join(workdir, "config.json")) as f:
        config = json.load(f)["config"]
    return {
        "num_teachers": n,
        "command": command,
        "workdir": workdir,
        "wall_s": wall,
        "load_before": load_before,
        "load_after": load_after,
        "teachers": stages["teachers"],
        "student_seconds": stages["student"]["seconds"],
        "feedforward_seconds": stages["feedforward"]["seconds"],
        "student_final": stages["student"]["final"],
        "results": results,
        "wide": wide,
        "config": config,
    }


def survivable(config: dict) -> dict:
    """Which hover starts of a run's evaluation can be survived at all (envs/quadrotor/feasibility.py).

    Both held-out sets: the oracle set (quadrotors with teachers) and the wide set (students only);
    the starts are exactly the evaluation's (same quadrotors, same reset keys)."""
    import jax

    from envs.quadrotor import QuadrotorHover
    from envs.quadrotor.feasibility import survivable_starts
    from robojax.agents.raptor import evaluate

    seed, ec = config["seed"], config["eval"]
    env = QuadrotorHover()
    out = {"seed": seed, "episodes_per_quadrotor": ec["episodes_per_quadrotor"]}
    for name, stream, count, key_offset in (
        ("oracle_set", evaluate.HELD_OUT_STREAM, ec["num_quadrotors"], 100),
        ("wide_set", evaluate.WIDE_STREAM, ec.get("wide_quadrotors", 0), 200),
    ):
        if not count:
            continue
        t0 = time.time()
        dynamics = evaluate.sample_quadrotors(seed, stream, count)
        keys = jax.random.split(
            jax.random.fold_in(jax.random.PRNGKey(seed), key_offset), (count, ec["episodes_per_quadrotor"])
        )
        ok = survivable_starts(env, dynamics, keys)
        out[name] = {
            "num_quadrotors": count,
            "survivable": jax.device_get(ok).tolist(),
            "fraction": float(ok.mean()),
            "seconds": time.time() - t0,
        }
    return out


def _survivable_key(config: dict) -> list:
    ec = config["eval"]
    return [config["seed"], ec["num_quadrotors"], ec.get("wide_quadrotors", 0), ec["episodes_per_quadrotor"]]


def success_on_survivable(crashed: list, survivable_mask: list) -> tuple[int, int]:
    """(episodes flown without a crash, survivable episodes), counted over the survivable starts only."""
    import numpy as np

    crashed, mask = np.asarray(crashed, bool), np.asarray(survivable_mask, bool)
    return int(np.sum(~crashed & mask)), int(np.sum(mask))


def teacher_iteration_flops(num_teachers: int = 32) -> dict:
    """XLA's FLOP count of one vmapped teacher iteration at the default config, per env step."""
    import jax

    from robojax.agents.raptor import evaluate, teachers
    from robojax.agents.raptor.config import RaptorConfig

    config = RaptorConfig(num_teachers=num_teachers)
    tc = config.teacher
    env = teachers.make_teacher_env(config.teacher_task, tc.num_envs, tc.episode_length, tc.observation_size)
    sac_config = teachers.sac_train_config(tc, config.teacher_task)
    dynamics = evaluate.sample_quadrotors(0, 0, num_teachers)
    state = jax.eval_shape(lambda: teachers.init_teachers(jax.random.PRNGKey(0), env, sac_config, dynamics))
    compiled = teachers.make_teachers_iteration(env, sac_config).lower(state).compile()
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    # XLA's cost analysis counts a while loop's body once, not times its trip count: the figure is
    # one vectorised step of the scan (every teacher's envs step once, every teacher updates once).
    flops = float(analysis.get("flops", float("nan")))
    env_steps = num_teachers * tc.num_envs
    return {
        "num_teachers": num_teachers,
        "flops_per_vector_step": flops,
        "env_steps_per_vector_step": env_steps,
        "flops_per_env_step": flops / env_steps,
        "num_envs_per_teacher": tc.num_envs,
    }


def projection(runs: list[dict], flops: dict | None) -> dict:
    ok = [r for r in runs if not r.get("failed") and r["teachers"].get("env_steps_per_s")]
    if not ok:
        return {}
    # The fastest measured rate: the runs differ in load (the machine is shared), and a loaded run
    # understates what the code does.
    best = max(ok, key=lambda r: r["teachers"]["env_steps_per_s"])
    rate = best["teachers"]["env_steps_per_s"]
    teacher = best["config"]["teacher"]
    steps = teacher.get("total_env_steps", teacher.get("env_steps"))  # env_steps: stored before the rename
    out = {
        "measured_on": f"{best['teachers']['num_teachers']} teachers trained together ({best['num_teachers']}"
        " training + the held-out oracles), CPU",
        "cpu_env_steps_per_s": rate,
        "cpu_hours_1000_teachers_this_budget": 1000 * steps / rate / 3600,
        "cpu_hours_1000_teachers_paper_budget": 1000 * PAPER_TEACHER_STEPS / rate / 3600,
        "teacher_env_steps": steps,
    }
    if flops and flops.get("flops_per_env_step") == flops.get("flops_per_env_step"):
        f = flops["flops_per_env_step"]
        out["cpu_achieved_flops"] = rate * f
        lo, hi = (H100_FP32_FLOPS * u / f for u in ASSUMED_UTILISATION)
        out["gpu_env_steps_per_s_range"] = [lo, hi]
        out["gpu_minutes_1000_teachers_this_budget"] = [1000 * steps / hi / 60, 1000 * steps / lo / 60]
        out["gpu_hours_1000_teachers_paper_budget"] = [
            1000 * PAPER_TEACHER_STEPS / hi / 3600,
            1000 * PAPER_TEACHER_STEPS / lo / 3600,
        ]
    return out


def _held_out(r: dict) -> tuple[dict, str]:
    """The headline held-out results of a run (the wide set when it has one) and where they come from."""
    res = r.get("wide") or r["results"]
    episodes = res["hover"]["student"].get("episodes")
    count = f", {episodes} episodes" if episodes else ""
    return res, (f"wide held-out set{count}" if r.get("wide") else f"oracle held-out set{count}")


def targets(data: dict) -> dict:
    """Issue 5's targets block from the saved results (see benchmarks/targets.py)."""
    runs = {r["num_teachers"]: r for r in data.get("runs", []) if not r.get("failed")}
    out = {}
    goals = {
        "32_teachers_under_30_min": f"on 2 CPU cores, 32 teachers trained and distilled in under {TARGET_MINUTES:g} min"
        " (measured: wall-clock minutes, compilation included)",
        "hover_success_90": f"the student survives >= {100 * TARGET_HOVER_SUCCESS:.0f}% of held-out hover episodes"
        " (32-teacher run; measured: success fraction)",
        "tracking_error_under_0_2_m": f"the student tracks within {TARGET_TRACK_ERROR_M:g} m mean error on held-out"
        " quadrotors (32-teacher run; measured: metres)",
    }
    r32 = runs.get(32)
    if r32 is None:
        out.update({k: missing(g, "no finished 32-teacher run in the results") for k, g in goals.items()})
    else:
        res, where = _held_out(r32)
        out["32_teachers_under_30_min"] = target(
            r32["wall_s"] / 60, goals["32_teachers_under_30_min"], r32["wall_s"] / 60 < TARGET_MINUTES
        )
        hover, track = res["hover"]["student"]["success"], res["track"]["student"]["position_error"]
        out["hover_success_90"] = target(hover, goals["hover_success_90"], hover >= TARGET_HOVER_SUCCESS, where)
        out["tracking_error_under_0_2_m"] = target(
            track, goals["tracking_error_under_0_2_m"], track < TARGET_TRACK_ERROR_M, where
        )
    for n in TARGET_COUNTS:
        goal = f"teacher-count scaling reported: wall-clock and held-out error with {n} teachers (measured: minutes)"
        if n not in runs:
            out[f"scaling_{n}_teachers"] = missing(goal, f"no finished {n}-teacher run in the results")
            continue
        res, where = _held_out(runs[n])
        out[f"scaling_{n}_teachers"] = target(
            runs[n]["wall_s"] / 60,
            goal,
            True,
            f"student hover success {100 * res['hover']['student']['success']:.1f}%, track error"
            f" {res['track']['student']['position_error']:.3f} m ({where})",
        )
    p = data.get("projection") or {}
    goal = "training throughput reported in env steps/s across all teachers (measured on CPU)"
    out["teacher_env_steps_per_s"] = (
        target(p["cpu_env_steps_per_s"], goal, True, p["measured_on"])
        if p
        else missing(goal, "no projection in the results (every run failed?)")
    )
    goal = (
        "a projection (measured on CPU, stated as such) of 1000 teachers on one GPU"
        " (measured: projected minutes at this budget, the pessimistic end)"
    )
    if "gpu_minutes_1000_teachers_this_budget" in p:
        lo, hi = p["gpu_minutes_1000_teachers_this_budget"]
        out["gpu_projection_1000_teachers"] = target(
            hi,
            goal,
            True,
            f"a projection, not a measurement: {lo:.1f}-{hi:.1f} min for 1000 teachers x"
            f" {p['teacher_env_steps']:,d} steps from XLA's FLOP count and an assumed GPU utilisation",
        )
    else:
        out["gpu_projection_1000_teachers"] = missing(goal, "no FLOP count in the results (run without --noflops)")
    return out


def render(data: dict) -> str:
    m = data["machine"]
    lines = [
        "# RAPTOR benchmark (issue 5)",
        "",
        f"Last command: `{data['command']}` (each run's own command is under Settings).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, backend {m['backend']}; jax {m['jax']}. The machine is shared"
        " with other agents: load averages are listed per run, and wall-clock figures under load are pessimistic.",
        "Each run is a fresh process with the compile cache off: wall-clock includes start-up and all compilation.",
        "",
    ]
    runs = data["runs"]
    lines += [
        "## Wall-clock and held-out quality",
        "",
        "| training teachers | teacher steps / distill epochs / teacher sees force | total min | CPU min (user+sys) |"
        " teachers min (incl. oracles) | student min | ablation min | load before/after |"
        " hover success: student / teacher / feedforward | track success: student / teacher / feedforward |"
        " hover error m: student / teacher / ff | track error m: student / teacher / ff |",
        "|---:|---|---:|---:|---:|---:|---:|---|---|---|---|---|",
    ]
    for r in runs:
        if r.get("failed"):
            lines.append(f"| {r['num_teachers']} | | failed after {r['wall_s'] / 60:.1f} min | | | | | | | | | |")
            continue
        res = r["results"]
        s = lambda task, k: " / ".join(
            f"{100 * res[task][p]['success']:.0f}%" if k == "success" else f"{res[task][p]['position_error']:.3f}"
            for p in ("student", "teacher", "feedforward")
        )
        lines.append(
            f"| {r['num_teachers']} | {_settings(r['config'])} | {r['wall_s'] / 60:.1f} | {_cpu_min(r)} | {r['teachers']['seconds'] / 60:.1f} |"
            f" {r['student_seconds'] / 60:.1f} | {r['feedforward_seconds'] / 60:.1f} |"
            f" {r['load_before']:.1f} / {r['load_after']:.1f} | {s('hover', 'success')} | {s('track', 'success')} |"
            f" {s('hover', 'error')} | {s('track', 'error')} |"
        )
    lines += [
        "",
        "Success: no crash (termination) over the whole 500-step episode. Position error: mean ||p - p_ref||"
        " over the steps flown (crashed episodes count up to the crash). Held-out quadrotors come from a"
        " separate key stream; 'teacher' is the oracle: SAC teachers trained on the held-out quadrotors"
        " themselves; 'feedforward' is the non-recurrent student of about the same size (2082 parameters)."
        " Each cell is 8 held-out quadrotors x 4 episodes = 32 episodes, so about +-10 points of success is"
        " sampling noise: the oracle teachers fly the same 8 quadrotors in every row but are retrained with"
        " different keys per run.",
        "",
    ]
    wide_runs = [r for r in runs if not r.get("failed") and r.get("wide")]
    surv = data.get("survivable") or {}
    if wide_runs:
        lines += [
            "## Students on the wider held-out set",
            "",
            "The headline figures: the students alone, zero-shot, on held-out quadrotors from a third key stream"
            " (no teachers there), so each cell has many more episodes than the oracle comparison above. The"
            " target counts the whole episode, including the recovery from the perturbed start (up to 0.3 m per"
            " axis and 90 degrees tilt); 'after the first second' is the tracking error once recovered."
            " (That column was added after these runs by re-running only their evaluation stage; every other"
            " figure reproduced exactly.)",
            "",
            "| training teachers | episodes per task | hover success: student / feedforward |"
            " hover success on survivable starts: student / feedforward | track success: student / feedforward |"
            " hover error m: student / ff | track error m: student / ff |"
            " track error after the first second m: student / ff | crashes by bound, hover student (pos/vel/ang vel) |",
            "|---:|---:|---|---|---|---|---|---|---|",
        ]
        for r in wide_runs:
            w = r["wide"]
            pair = lambda task, f: " / ".join(f(w[task][p]) for p in ("student", "feedforward"))
            pct = lambda m: f"{100 * m['success']:.1f}%"
            err = lambda m: f"{m['position_error']:.3f}"
            after = lambda m: (
                f"{m['position_error_after_1s']:.3f}" if m.get("position_error_after_1s") is not None else "n/a"
            )
            mask = (
                (surv.get("wide_set") or {}).get("survivable")
                if surv.get("key") == _survivable_key(r["config"])
                else None
            )

            def on_survivable(m):
                if mask is None or "crashed" not in m:
                    return "n/a"
                ok, total = success_on_survivable(m["crashed"], mask)
                return f"{100 * ok / total:.1f}% ({ok}/{total})"

            causes = w["hover"]["student"].get("crash_causes") or {}
            lines.append(
                f"| {r['num_teachers']} | {w['hover']['student'].get('episodes', '?')} | {pair('hover', pct)} |"
                f" {pair('hover', on_survivable)} | {pair('track', pct)} | {pair('hover', err)} | {pair('track', err)} |"
                f" {pair('track', after)} |"
                f" {'/'.join(str(causes.get(k, 0)) for k in ('position', 'velocity', 'angular_velocity'))} |"
            )
        lines.append("")
    if surv:
        lines += [
            "## Survivable starts: the ceiling on hover success",
            "",
            "RAPTOR's starts (up to 90 degrees tilt, 1 m/s and 1 rad/s per axis, motors anywhere in 0.3-0.9) and"
            " its termination bounds (2 m/s per axis, 35 rad/s, 20 arm lengths) include starts that no controller"
            " survives: a strong quadrotor whose motors start fast, tilted and already moving sideways passes 2 m/s"
            " before its slow motors spin down. `envs/quadrotor/feasibility.py` optimises, for every evaluation start"
            " and with full knowledge of quadrotor, start and disturbance, a 0.6 s action sequence through the"
            " differentiable simulator (6 random initialisations x 2000 Adam steps) and counts the start survivable"
            " when some sequence keeps every bound. An optimiser can miss a solution, so this estimates the ceiling;"
            " it is not a proof.",
            "",
            "| held-out set | hover starts | survivable | ceiling on success | seconds |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, title in (("oracle_set", "with oracle teachers"), ("wide_set", "wide (students only)")):
            if name in surv:
                m = surv[name]
                n = sum(len(row) for row in m["survivable"])
                k = sum(sum(row) for row in m["survivable"])
                lines.append(
                    f"| {title}: {m['num_quadrotors']} quadrotors | {n} | {k} | {100 * m['fraction']:.1f}% |"
                    f" {m['seconds']:.0f} |"
                )
        lines.append("")
    lines += [
        "Tracking trajectories of the 32-teacher run (3 held-out quadrotors, reference vs student, oracle"
        " teacher and ablation): `benchmarks/results/raptor_tracking.png` (copied from the run's tracking.png).",
        "",
    ]
    ext = data.get("extended")
    if ext:
        res = ext["results"]
        round_note = f" ({ext['round']})" if ext.get("round") else ""
        lines += [
            f"### Longer distillation on the same {ext['num_teachers']} teachers{round_note}",
            "",
            f"`{ext['command']}` continues both students of the 32-teacher run from epoch"
            f" {ext['from_epochs']} to {ext['epochs']} ({ext['seconds']:.0f} s for both students, evaluation"
            " included; the teachers are reused).",
            "",
            "| task | policy | success | mean position error (m) |",
            "|---|---|---:|---:|",
        ]
        for task in ("hover", "track"):
            for policy in ("student", "teacher", "feedforward"):
                m = res[task][policy]
                lines.append(f"| {task} | {policy} | {100 * m['success']:.0f}% | {m['position_error']:.3f} |")
        lines.append("")
    for variant in data.get("variants", []):
        from robojax.agents.raptor.evaluate import results_table

        lines += [f"### {variant['title']}", "", f"`{variant['command']}`", "", results_table(variant["results"]), ""]
        if variant.get("wide"):
            lines += ["The students alone on the wide held-out set:", "", results_table(variant["wide"]), ""]
    if "targets" in data:
        lines += [*targets_table(data["targets"]), ""]
    p = data.get("projection") or {}
    if p:
        lines += [
            "## Teacher training throughput and the 1000-teacher projection",
            "",
            f"Measured ({p['measured_on']}): **{p['cpu_env_steps_per_s']:,.0f} env steps/s across all teachers**"
            " (compiled iterations, median; each env step includes that teacher's SAC update share).",
            f"- 1000 teachers x {p['teacher_env_steps']:,d} steps on these 2 CPU cores: "
            f"{p['cpu_hours_1000_teachers_this_budget']:.1f} h (measured rate, linear in teachers);"
            f" at the paper's 1M steps per teacher: {p['cpu_hours_1000_teachers_paper_budget']:.0f} h.",
        ]
        if "gpu_env_steps_per_s_range" in p:
            f = data["flops"]
            lo, hi = p["gpu_env_steps_per_s_range"]
            lines += [
                f"- XLA counts {f['flops_per_env_step'] / 1e6:.2f} MFLOP per env step (one vectorised step of the teacher"
                f" iteration at the default config: {f['num_envs_per_teacher']} envs and one SAC update per teacher,"
                f" {f['flops_per_env_step'] * f['num_envs_per_teacher'] / 1e6:.1f} MFLOP per teacher update); the CPU achieves"
                f" {p['cpu_achieved_flops'] / 1e9:.1f} GFLOP/s.",
                f"- **Projection, not a measurement**: one H100 at {ASSUMED_UTILISATION[0]:.0%}-{ASSUMED_UTILISATION[1]:.0%}"
                f" of its {H100_FP32_FLOPS / 1e12:.0f} TFLOP/s FP32 peak would run {lo:,.0f}-{hi:,.0f} env steps/s;"
                f" 1000 teachers x {p['teacher_env_steps']:,d} steps in {p['gpu_minutes_1000_teachers_this_budget'][0]:.1f}-"
                f"{p['gpu_minutes_1000_teachers_this_budget'][1]:.1f} min, and at the paper's 1M steps each in"
                f" {p['gpu_hours_1000_teachers_paper_budget'][0]:.1f}-{p['gpu_hours_1000_teachers_paper_budget'][1]:.1f} h"
                " (the paper: about 34 h on a 16-core laptop). The utilisation range is an assumption (small"
                " per-teacher matmuls batched over 1000 teachers; a 250-step scan of many small kernels may"
                " instead be launch-latency bound); no GPU was available to this benchmark.",
            ]
        lines.append("")
    lines += ["## Settings", ""]
    for r in runs:
        if not r.get("failed"):
            c = r["config"]
            lines.append(
                f"- {r['num_teachers']} teachers: `{r['command']}`; teacher {json.dumps(c['teacher'])};"
                f" distill {json.dumps(c['distill'])}; eval {json.dumps(c['eval'])}"
            )
    return "\n".join(lines) + "\n"


def _update_survivable(data: dict) -> None:
    """(Re)compute the survivable starts for the 32-teacher run's evaluation settings unless cached."""
    if not _SURVIVABLE.value:
        return
    ref = [r for r in data["runs"] if not r.get("failed") and r["num_teachers"] == 32] or [
        r for r in data["runs"] if not r.get("failed")
    ]
    if not ref:
        return
    key = _survivable_key(ref[0]["config"])
    if (data.get("survivable") or {}).get("key") == key:
        return
    print("estimating survivable starts ...", flush=True)
    data["survivable"] = {"key": key, **survivable(ref[0]["config"])}


def main(argv):
    del argv
    json_path, md_path = _OUT.value + ".json", _OUT.value + ".md"
    if _VARIANT.value:
        if not _VARIANT_TITLE.value:
            raise app.UsageError("--record_variant needs --variant_title")
        with open(json_path) as f:
            data = json.load(f)
        with open(os.path.join(_VARIANT.value, "results.json")) as f:
            saved = json.load(f)
        variants = [v for v in data.get("variants", []) if v["title"] != _VARIANT_TITLE.value]
        data["variants"] = variants + [
            {
                "title": _VARIANT_TITLE.value,
                "workdir": _VARIANT.value,
                "command": _VARIANT_COMMAND.value,
                "results": saved["results"],
                "wide": saved.get("wide") or {},
            }
        ]
        write_json(json_path, data)
    elif _RENDER_ONLY.value or _REPARSE.value:
        with open(json_path) as f:
            data = json.load(f)
        if _REPARSE.value:
            data["runs"] = [
                parse_run(r["num_teachers"], r["workdir"], r["wall_s"], r["load_before"], r["load_after"], r["command"])
                if r.get("failed") and os.path.exists(os.path.join(r["workdir"], "stages", "export.json"))
                else r
                for r in data["runs"]
            ]
            data["projection"] = projection(data["runs"], data.get("flops"))
            _update_survivable(data)
            write_json(json_path, data)
    else:
        root = tempfile.mkdtemp(prefix="raptor_bench_")
        runs = []
        for n in [int(c) for c in _COUNTS.value]:
            print(f"running {n} teachers in {root} ...", flush=True)
            runs.append(run_count(n, root))
            print(
                json.dumps({k: v for k, v in runs[-1].items() if k not in ("config", "stdout_tail")})[:2000], flush=True
            )
        previous = {}
        if os.path.exists(json_path):
            with open(json_path) as f:
                previous = json.load(f)
        # Counts not run this time keep their previous results.
        kept = [r for r in previous.get("runs", []) if r["num_teachers"] not in {r2["num_teachers"] for r2 in runs}]
        runs = sorted(kept + runs, key=lambda r: r["num_teachers"])
        flops = teacher_iteration_flops() if _FLOPS.value else previous.get("flops")
        data = {
            "command": "python -m benchmarks.raptor " + " ".join(sys.argv[1:]),
            "machine": machine_info(),
            "runs": runs,
            "flops": flops,
            "projection": projection(runs, flops),
        }
        for kept_key in ("extended", "variants"):
            if kept_key in previous:
                data[kept_key] = previous[kept_key]
        data["survivable"] = previous.get("survivable")
        _update_survivable(data)
        os.makedirs(os.path.dirname(json_path), exist_ok=True)
        write_json(json_path, data)
    # Every path (a run, --reparse, --record_variant, --render_only) leaves the targets block current.
    data["targets"] = targets(data)
    write_json(json_path, data)
    text = render(data)
    write_text(md_path, text)
    print(text)


if __name__ == "__main__":
    app.run(main)
