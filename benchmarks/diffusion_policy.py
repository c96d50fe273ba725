"""Diffusion Policy benchmark: success from demos, the MSE baseline, and RTI vs DDPM-100 vs DDIM-10 latency.

    python -m experiments.collect_demos --env=arm_push_cube --num_episodes=200 --out=demos/push
    python -m experiments.collect_demos --env=arm_pick_place --num_episodes=200 --out=demos/pick_place
    python -m benchmarks.diffusion_policy --push_dataset=demos/push --pick_dataset=demos/pick_place --seeds=0,1,2

Per task and seed it trains a Diffusion Policy (and, on arm_pick_place, the MSE baseline with the
same backbone), then evaluates every saved policy side by side in one process: success over
`--eval_episodes` closed-loop MJX episodes and per-action latency of the jitted single-env policy
step at batch 1 on this machine's CPU, for full DDPM (100 steps), DDIM-10 and RTI. Writes
benchmarks/results/diffusion_policy.{md,json} with the command and machine info. A run directory
that already holds a finished policy is evaluated without retraining (`--retrain` forces it).
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags

import robojax  # noqa: F401
from benchmarks.targets import missing, target, targets_table

_PUSH = flags.DEFINE_string("push_dataset", "", "arm_push_cube demos ('' skips the task).")
_PICK = flags.DEFINE_string("pick_dataset", "", "arm_pick_place demos ('' skips the task).")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Training seeds.")
_NUM_STEPS = flags.DEFINE_integer("num_steps", 3000, "Gradient steps per training run.")
_BATCH = flags.DEFINE_integer("batch_size", 256, "Windows per gradient step.")
_DOWN_DIMS = flags.DEFINE_list("down_dims", ["32", "64", "128"], "U-Net widths.")
_DENOISER = flags.DEFINE_string("denoiser", "unet", "unet or mlp.")
_MLP_DIMS = flags.DEFINE_list("mlp_hidden_dims", ["256", "256", "256"], "MLP denoiser widths.")
_LR = flags.DEFINE_float("learning_rate", 1e-3, "Peak learning rate (short runs need more than Chi et al.'s 1e-4).")
_EVAL_EPISODES = flags.DEFINE_integer("eval_episodes", 100, "Episodes per success evaluation.")
_NUM_ENVS = flags.DEFINE_integer("num_envs", 50, "Envs stepped together in evaluation.")
_LATENCY_ACTIONS = flags.DEFINE_integer("latency_actions", 200, "Single-env actions timed per mode.")
_MODES = flags.DEFINE_list("modes", ["ddpm", "ddim", "rti"], "Inference modes compared.")
_RTI_START = flags.DEFINE_integer("rti_start_step", 3, "RTI K'.")
_ACTION_STEPS = flags.DEFINE_integer(
    "action_steps", 0, "Actions executed per plan for every mode (0: the policy's Ta; RTI-DP replans every action: 1)."
)
_RTI_STEPS = flags.DEFINE_integer("rti_steps", 3, "RTI denoiser calls per warm chunk.")
_CHUNKED_TA = flags.DEFINE_integer(
    "chunked_action_steps",
    0,
    "Also evaluate --chunked_modes (and the MSE baseline) executing this many actions per"
    " plan (Chi et al.'s receding horizon: 8); 0 skips it.",
)
_CHUNKED_MODES = flags.DEFINE_list("chunked_modes", ["ddpm"], "Modes evaluated at --chunked_action_steps.")
_MSE = flags.DEFINE_boolean("mse_baseline", True, "Train and evaluate the MSE baseline on arm_pick_place.")
_RUNS = flags.DEFINE_string("runs_dir", "runs/bench_dp", "Where training runs go.")
_RETRAIN = flags.DEFINE_boolean("retrain", False, "Retrain even when a run directory holds a policy.")
_APPEND = flags.DEFINE_boolean(
    "append",
    False,
    "Merge into the existing results JSON: rows of the same task/seed/objective/mode are updated"
    " field by field (so one pass can measure success under load and a later one latency on an idle machine).",
)
_OUT = flags.DEFINE_string("out", "benchmarks/results/diffusion_policy", "Results path without extension.")


def inference_configs():
    from robojax.agents.diffusion_policy.config import InferenceConfig

    ta = {"action_steps": _ACTION_STEPS.value} if _ACTION_STEPS.value else {}
    table = {
        "ddpm": InferenceConfig(inference="ddpm", **ta),
        "ddim": InferenceConfig(inference="ddim", ddim_steps=10, **ta),
        "rti": InferenceConfig(
            inference="rti",
            ddim_steps=10,
            rti_first="ddim",
            rti_start_step=_RTI_START.value,
            rti_steps=_RTI_STEPS.value,
            **ta,
        ),
    }
    configs = {m: table[m] for m in _MODES.value}
    if _CHUNKED_TA.value:
        chunked = {
            "ddpm": InferenceConfig(inference="ddpm", action_steps=_CHUNKED_TA.value),
            "ddim": InferenceConfig(inference="ddim", ddim_steps=10, action_steps=_CHUNKED_TA.value),
        }
        configs.update({f"{m} (Ta={_CHUNKED_TA.value})": chunked[m] for m in _CHUNKED_MODES.value})
    return configs


def mse_configs():
    from robojax.agents.diffusion_policy.config import InferenceConfig

    configs = {"direct": InferenceConfig(action_steps=_ACTION_STEPS.value)}
    if _CHUNKED_TA.value:
        configs[f"direct (Ta={_CHUNKED_TA.value})"] = InferenceConfig(action_steps=_CHUNKED_TA.value)
    return configs


def train_one(dataset: str, task: str, seed: int, objective: str) -> tuple[str, float]:
    from robojax.agents.diffusion_policy.config import DiffusionPolicyConfig, TrainConfig
    from robojax.agents.diffusion_policy.train import train

    workdir = os.path.join(_RUNS.value, f"{task}_{objective}_s{seed}")
    if os.path.isfile(os.path.join(workdir, "policy", "policy.json")) and not _RETRAIN.value:
        return workdir, _recorded_train_seconds(workdir)
    if os.path.isdir(workdir):
        import shutil

        shutil.rmtree(workdir)
    policy = DiffusionPolicyConfig(
        objective=objective,
        denoiser=_DENOISER.value,
        down_dims=tuple(int(d) for d in _DOWN_DIMS.value),
        mlp_hidden_dims=tuple(int(d) for d in _MLP_DIMS.value),
        total_grad_steps=_NUM_STEPS.value,
        batch_size=_BATCH.value,
        learning_rate=_LR.value,
    )
    config = TrainConfig(
        dataset=dataset,
        workdir=workdir,
        seed=seed,
        eval_env="none",
        updates_per_call=100,
        checkpoint_interval=max(_NUM_STEPS.value // 2, 1),
        progress_bar=False,
        policy=policy,
    )
    start = time.perf_counter()
    train(config)
    return workdir, time.perf_counter() - start


def _recorded_train_seconds(workdir: str) -> float:
    """Training wall-clock of an existing run, from the last line of its metrics.jsonl (NaN if absent)."""
    try:
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            last = [line for line in f if line.strip()][-1]
        return float(json.loads(last)["wall_s"])
    except (OSError, IndexError, KeyError, ValueError):
        return float("nan")


_LATENCY_KEYS = (
    "nfe_per_chunk",
    "nfe_per_action",
    "per_action_ms_mean",
    "per_action_ms_p50",
    "per_action_ms_p99",
    "per_chunk_ms_p50",
)


def _merge(old_rows, new_rows):
    """Update old rows with the measured (non-NaN) fields of new rows of the same task/seed/objective/mode."""
    key = lambda r: (r["task"], r["seed"], r["objective"], r["mode"])
    merged = {key(r): dict(r) for r in old_rows}
    for r in new_rows:
        target = merged.setdefault(key(r), {})
        target.update({k: v for k, v in r.items() if not (isinstance(v, float) and v != v) or k not in target})
    return list(merged.values())


def main(argv):
    del argv
    from benchmarks.machine import machine_info
    from robojax.agents.diffusion_policy.train import evaluate_saved_policy

    tasks = [(t, d) for t, d in (("arm_push_cube", _PUSH.value), ("arm_pick_place", _PICK.value)) if d]
    rows = []
    for task, dataset in tasks:
        objectives = ["diffusion"] + (["mse"] if task == "arm_pick_place" and _MSE.value else [])
        for seed in (int(s) for s in _SEEDS.value):
            for objective in objectives:
                workdir, train_s = train_one(dataset, task, seed, objective)
                modes = inference_configs() if objective == "diffusion" else mse_configs()
                for mode, inference in modes.items():
                    out = evaluate_saved_policy(
                        workdir,
                        inference,
                        episodes=_EVAL_EPISODES.value,
                        num_envs=_NUM_ENVS.value,
                        latency_actions=_LATENCY_ACTIONS.value,
                        seed=1000 + seed,
                    )
                    nan = float("nan")
                    row = {
                        "task": task,
                        "seed": seed,
                        "objective": objective,
                        "mode": mode,
                        "train_s": train_s,
                        "success": out.get("success", nan),
                        "success_any_step": out.get("success_any_step", nan),
                        **{k: nan for k in _LATENCY_KEYS},
                        **out.get("latency", {}),
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    commands = ["python -m benchmarks.diffusion_policy " + " ".join(sys.argv[1:])]
    if _APPEND.value and os.path.isfile(_OUT.value + ".json"):
        with open(_OUT.value + ".json") as f:
            previous = json.load(f)
        rows = _merge(previous["rows"], rows)
        commands = previous.get("commands", [previous.get("command")]) + commands
    write_results(rows, machine_info(), commands)


def _mean(xs):
    xs = [x for x in xs if x == x]
    return sum(xs) / len(xs) if xs else float("nan")


TARGET_SUCCESS = {"arm_push_cube": 0.90, "arm_pick_place": 0.80}  # issue 4, Diffusion Policy success
TARGET_SEEDS = 3
MSE_CLEARLY_LOWER_POINTS = 10.0  # "clearly lower" on the multimodal task, read as >= 10 points
RTI_LATENCY_VS = {"ddpm": 1 / 20, "ddim": 1 / 2}  # RTI per-action latency <= these fractions
RTI_SUCCESS_POINTS = 5.0  # RTI success within 5 points of full DDPM


def _best(summary: list[dict], task: str, objective: str) -> dict | None:
    """The summary row of `task`/`objective` with the highest mean success over >= 3 seeds (else over any)."""
    rows = [
        s
        for s in summary
        if s["task"] == task and s["objective"] == objective and s["success_mean"] == s["success_mean"]
    ]
    full = [s for s in rows if len(s["seeds"]) >= TARGET_SEEDS]
    return max(full or rows, key=lambda s: s["success_mean"], default=None)


def targets(result: dict) -> dict:
    """Issue 4's targets block from the saved results (see benchmarks/targets.py)."""
    summary, out = result.get("summary", []), {}
    unrecorded = "episodes per seed and the demo count are not in the JSON (see the commands)"
    for task, goal_success in TARGET_SUCCESS.items():
        goal = (
            f"Diffusion Policy success >= {100 * goal_success:.0f}% on {task} (state observations, {TARGET_SEEDS}"
            " seeds, 100 eval episodes each, <= 200 demos; measured: the best inference mode's mean)"
        )
        best = _best(summary, task, "diffusion")
        if best is None:
            out[f"{task}_success"] = missing(goal, f"no Diffusion Policy success on {task} in the results")
            continue
        out[f"{task}_success"] = target(
            best["success_mean"],
            goal,
            best["success_mean"] >= goal_success and len(best["seeds"]) >= TARGET_SEEDS,
            f"mode {best['mode']}, seeds {best['seeds']}; {unrecorded}",
        )
    goal = (
        f"the MSE baseline clearly lower than Diffusion Policy on the multimodal arm_pick_place (measured:"
        f" best Diffusion Policy minus best MSE success, points; clearly read as >= {MSE_CLEARLY_LOWER_POINTS:g})"
    )
    dp, mse = _best(summary, "arm_pick_place", "diffusion"), _best(summary, "arm_pick_place", "mse")
    if dp is None or mse is None:
        out["mse_baseline_lower_on_arm_pick_place"] = missing(goal, "Diffusion Policy or MSE baseline not measured")
    else:
        gap = 100 * (dp["success_mean"] - mse["success_mean"])
        out["mse_baseline_lower_on_arm_pick_place"] = target(
            gap,
            goal,
            gap >= MSE_CLEARLY_LOWER_POINTS,
            f"Diffusion Policy {100 * dp['success_mean']:.1f}% ({dp['mode']}), MSE {100 * mse['success_mean']:.1f}%"
            f" ({mse['mode']})",
        )
    by = {(s["task"], s["mode"]): s for s in summary if s["objective"] == "diffusion"}
    for task in TARGET_SUCCESS:
        rti = by.get((task, "rti"))
        for mode, fraction in RTI_LATENCY_VS.items():
            name = {"ddpm": "DDPM-100", "ddim": "DDIM-10"}[mode]
            goal = (
                f"RTI per-action latency at batch 1 on CPU <= 1/{round(1 / fraction)} of {name} on {task}"
                f" (measured: the ratio, side by side in one run)"
            )
            other = by.get((task, mode))
            if rti is None or other is None:
                out[f"{task}_rti_latency_vs_{mode}"] = missing(goal, f"RTI or {name} not measured on {task}")
                continue
            ratio = rti["per_action_ms_mean"] / other["per_action_ms_mean"]
            out[f"{task}_rti_latency_vs_{mode}"] = target(
                ratio,
                goal,
                ratio <= fraction,
                f"RTI {rti['per_action_ms_mean']:.3f} ms/action, {name} {other['per_action_ms_mean']:.3f} ms/action",
            )
        goal = (
            f"RTI success within {RTI_SUCCESS_POINTS:g} points of full DDPM on {task}, i.e. at most that much"
            " lower (measured: DDPM minus RTI success, points)"
        )
        ddpm = by.get((task, "ddpm"))
        if rti is None or ddpm is None:
            out[f"{task}_rti_success_vs_ddpm"] = missing(goal, f"RTI or DDPM success not measured on {task}")
            continue
        drop = 100 * (ddpm["success_mean"] - rti["success_mean"])
        out[f"{task}_rti_success_vs_ddpm"] = target(
            drop,
            goal,
            drop <= RTI_SUCCESS_POINTS,
            f"RTI {100 * rti['success_mean']:.1f}%, DDPM {100 * ddpm['success_mean']:.1f}% (both at the same Ta)",
        )
    return out


def write_results(rows, machine, commands):
    summary = []
    keys = sorted({(r["task"], r["objective"], r["mode"]) for r in rows})
    for task, objective, mode in keys:
        sel = [r for r in rows if (r["task"], r["objective"], r["mode"]) == (task, objective, mode)]
        summary.append(
            {
                "task": task,
                "objective": objective,
                "mode": mode,
                "seeds": [r["seed"] for r in sel],
                "success_mean": _mean([r["success"] for r in sel]),
                "success_per_seed": [r["success"] for r in sel],
                "per_action_ms_mean": _mean([r["per_action_ms_mean"] for r in sel]),
                "per_action_ms_p50": _mean([r["per_action_ms_p50"] for r in sel]),
                "per_action_ms_p99": _mean([r["per_action_ms_p99"] for r in sel]),
                "per_chunk_ms_p50": _mean([r["per_chunk_ms_p50"] for r in sel]),
                "nfe_per_chunk": sel[0].get("nfe_per_chunk"),
                "nfe_per_action": sel[0].get("nfe_per_action"),
                "train_s_mean": _mean([r.get("train_s", float("nan")) for r in sel]),
            }
        )
    result = {
        "commands": commands,
        "machine": machine,
        "rows": rows,
        "summary": summary,
        "settings": {
            "num_steps": _NUM_STEPS.value,
            "batch_size": _BATCH.value,
            "denoiser": _DENOISER.value,
            "down_dims": _DOWN_DIMS.value,
            "mlp_hidden_dims": _MLP_DIMS.value,
            "learning_rate": _LR.value,
            "eval_episodes": _EVAL_EPISODES.value,
            "rti_start_step": _RTI_START.value,
            "rti_steps": _RTI_STEPS.value,
            "action_steps": _ACTION_STEPS.value or "Ta",
            "chunked_action_steps": _CHUNKED_TA.value,
        },
    }
    result["targets"] = targets(result)
    os.makedirs(os.path.dirname(_OUT.value), exist_ok=True)
    with open(_OUT.value + ".json.tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(_OUT.value + ".json.tmp", _OUT.value + ".json")
    lines = [
        "# Diffusion Policy: success from demos, and RTI warm-start latency",
        "",
        "Commands (later passes update the rows of earlier ones field by field):",
        "",
        *[f"    {c}" for c in commands],
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, backend {machine['backend']}; jax {machine['jax']}.",
        f"Training: {_DENOISER.value} (U-Net down_dims {','.join(_DOWN_DIMS.value)} / MLP widths"
        f" {','.join(_MLP_DIMS.value)}), {_NUM_STEPS.value} steps, batch"
        f" {_BATCH.value}, lr {_LR.value}. Success: task flag at episode end, {_EVAL_EPISODES.value} episodes per"
        f" seed. Latency: jitted single-env policy step at batch 1, per executed action (replanning every"
        f" {_ACTION_STEPS.value or 'Ta=8'} actions, the same for ddpm, ddim and rti; rows marked (Ta=N) execute N"
        " actions per plan) and per replanning call. Every mode of a seed runs the same evaluation episodes.",
        "",
        "| task | objective | inference | seeds | success (mean) | per seed | NFE/chunk | NFE/action |"
        " ms/action mean | p50 | p99 | ms/chunk call p50 |",
        "|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summary:
        lines.append(
            f"| {s['task']} | {s['objective']} | {s['mode']} | {len(s['seeds'])} | {100 * s['success_mean']:.1f}% |"
            f" {', '.join(f'{100 * x:.0f}' for x in s['success_per_seed'])} | {s['nfe_per_chunk']} |"
            f" {s['nfe_per_action']:.3f} | {s['per_action_ms_mean']:.3f} | {s['per_action_ms_p50']:.3f} |"
            f" {s['per_action_ms_p99']:.3f} | {s['per_chunk_ms_p50']:.3f} |"
        )
    by = {(s["task"], s["mode"]): s for s in summary if s["objective"] == "diffusion"}
    lines.append("")
    for task in sorted({s["task"] for s in summary}):
        if (task, "rti") in by and (task, "ddpm") in by and (task, "ddim") in by:
            rti, ddpm, ddim = by[(task, "rti")], by[(task, "ddpm")], by[(task, "ddim")]
            lines.append(
                f"- {task}: RTI per-action latency is {rti['per_action_ms_mean'] / ddpm['per_action_ms_mean']:.3f} of"
                f" DDPM-100 (target <= 0.05) and {rti['per_action_ms_mean'] / ddim['per_action_ms_mean']:.3f} of DDIM-10"
                f" (target <= 0.5); success RTI {100 * rti['success_mean']:.1f}% vs DDPM {100 * ddpm['success_mean']:.1f}%"
                " (target: within 5 points)."
            )
        chunked = by.get((task, f"ddpm (Ta={_CHUNKED_TA.value})"))
        if chunked and (task, "rti") in by:
            lines.append(
                f"- {task}: Diffusion Policy as Chi et al. run it (DDPM-100, Ta={_CHUNKED_TA.value}):"
                f" {100 * chunked['success_mean']:.1f}%; RTI (Ta={_ACTION_STEPS.value or 'Ta'})"
                f" {100 * by[(task, 'rti')]['success_mean']:.1f}%."
            )
    lines += ["", *targets_table(result["targets"])]
    with open(_OUT.value + ".md.tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(_OUT.value + ".md.tmp", _OUT.value + ".md")


if __name__ == "__main__":
    app.run(main)
