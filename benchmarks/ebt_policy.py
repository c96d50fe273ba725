"""EBT-Policy against Diffusion Policy on the same demos and the same evaluation episodes.

    python -m experiments.collect_demos --env=arm_push_cube --num_episodes=220 --out=demos/push220
    python -m benchmarks.ebt_policy --push_dataset=demos/push220 --num_demos=200 --seeds=0,1,2

Per task and seed, in one process: trains an EBT-Policy and a Diffusion Policy (the MLP denoiser
of benchmarks/diffusion_policy.py; optionally the MSE baseline) on the first `--num_demos`
episodes, each with a success evaluation every `--curve_interval` steps (the training-compute
curve: wall-clock and gradient steps to reach DP's final success), then evaluates every saved
policy on the same `--eval_episodes` episodes (same reset keys):

- EBT: K = 1, 2, 4 fixed descent steps; adaptive (||grad_a E|| > tol, up to 8 steps); adaptive
  with warm start; best-of-N; energy-triggered escalation with the threshold calibrated on the
  `--heldout` episodes after the training ones (`--calibration_quantile`);
- DP: DDPM-100 and DDIM-10 (Ta=8, Chi et al.'s receding horizon) and RTI (Ta=1, K'=20, 2 steps);
- batch-1 per-action latency of the jitted policy step for each, side by side in this process;
- uncertainty: AUROC of each episode's max / mean plan energy for predicting failure, and plan
  energy on perturbed vs nominal episodes;
- recovery: success with the task's mid-episode perturbation (`robojax.envs` Perturbation:
  arm_push_cube's cube moved 3-5 cm after first contact; arm_pick_place's cube dropped and moved
  after the grasp) for EBT, DP (DDPM and RTI) and the MSE baseline.

Writes benchmarks/results/ebt_policy.{md,json} with a `targets` block for every target of the
issue (figures this run did not measure are recorded as missing, with why).
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from absl import app, flags

import robojax  # noqa: F401
from benchmarks.targets import missing, target, targets_table, write_report

_PUSH = flags.DEFINE_string("push_dataset", "", "arm_push_cube demos, at least num_demos + heldout episodes.")
_PICK = flags.DEFINE_string("pick_dataset", "", "arm_pick_place demos ('' skips the task).")
_NUM_DEMOS = flags.DEFINE_integer("num_demos", 200, "Training demos (the first episodes of the dataset).")
_HELDOUT = flags.DEFINE_integer("heldout", 20, "Episodes after the training ones used to calibrate the threshold.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Training seeds.")
_EBT_STEPS = flags.DEFINE_integer("ebt_steps", 3000, "EBT gradient steps per run.")
_DP_STEPS = flags.DEFINE_integer("dp_steps", 3000, "Diffusion Policy gradient steps per run.")
_EBT_WIDTH = flags.DEFINE_integer("ebt_width", 64, "EBT token width.")
_EBT_BATCH = flags.DEFINE_integer("ebt_batch_size", 64, "EBT windows per gradient step.")
_DP_BATCH = flags.DEFINE_integer("dp_batch_size", 256, "DP windows per gradient step.")
_DP_DIMS = flags.DEFINE_list("dp_mlp_hidden_dims", ["1024", "1024", "1024"], "DP MLP denoiser widths.")
_MSE = flags.DEFINE_boolean("mse_baseline", False, "Also train the MSE baseline (DP's backbone, regression).")
_MSE_STEPS = flags.DEFINE_integer("mse_steps", 0, "MSE baseline gradient steps (0: --dp_steps).")
_CURVE = flags.DEFINE_integer("curve_interval", 1000, "Steps between training-curve success evaluations (0: none).")
_CURVE_EPISODES = flags.DEFINE_integer("curve_episodes", 25, "Episodes per training-curve evaluation.")
_EVAL_EPISODES = flags.DEFINE_integer("eval_episodes", 100, "Episodes per final evaluation.")
_NUM_ENVS = flags.DEFINE_integer("num_envs", 50, "Envs stepped together in evaluation.")
_LATENCY_ACTIONS = flags.DEFINE_integer("latency_actions", 200, "Single-env actions timed per mode (0: none).")
_QUANTILE = flags.DEFINE_float("calibration_quantile", 0.9, "Held-out plan-energy quantile of the threshold.")
_GRAD_TOL = flags.DEFINE_float("grad_tol", 0.05, "Adaptive descent's ||grad_a E|| tolerance.")
_PERTURBED_MODES = flags.DEFINE_list(
    "perturbed_modes",
    ["ebt:K=2", "dp:ddpm (Ta=8)", "dp:rti", "mse:direct (Ta=8)"],
    "learner:mode rows also evaluated under the task's perturbation (recovery; empty: none).",
)
_MODES = flags.DEFINE_list(
    "ebt_modes", ["K=1", "K=2", "K=4", "adaptive", "adaptive+warm", "best-of-4 K=2", "K=1 escalate"], "EBT rows."
)
_RUNS = flags.DEFINE_string("runs_dir", "runs/bench_ebt", "Where training runs go.")
_RETRAIN = flags.DEFINE_boolean("retrain", False, "Retrain even when a run directory holds a policy.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/ebt_policy", "Results path without extension.")

PERTURBATIONS = {"arm_push_cube": "cube_shift", "arm_pick_place": "cube_drop"}


# --------------------------------------------------------------------------------------------- training


def _done(workdir: str) -> bool:
    return os.path.isfile(os.path.join(workdir, "policy", "policy.json")) and not _RETRAIN.value


def _curve(workdir: str) -> list[dict]:
    """The run's success evaluations from metrics.jsonl: [{steps, wall_s, success}]."""
    out = []
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if "eval/success" in rec:
                out.append({"steps": rec["steps"], "wall_s": rec["wall_s"], "success": rec["eval/success"]})
    return out


def _loop_fields(dataset: str, workdir: str, seed: int, steps: int) -> dict:
    return dict(
        dataset=dataset,
        workdir=workdir,
        seed=seed,
        max_episodes=_NUM_DEMOS.value,
        updates_per_call=100,
        eval_interval=_CURVE.value,
        eval_episodes=_CURVE_EPISODES.value,
        eval_env="" if _CURVE.value else "none",
        checkpoint_interval=max(steps // 2, 1),
        progress_bar=False,
    )


def train_ebt(dataset: str, task: str, seed: int) -> str:
    from robojax.agents.ebt_policy.config import EBTPolicyConfig, InferenceConfig, TrainConfig
    from robojax.agents.ebt_policy.train import train

    workdir = os.path.join(_RUNS.value, f"{task}_ebt_s{seed}")
    if not _done(workdir):
        _fresh(workdir)
        policy = EBTPolicyConfig(width=_EBT_WIDTH.value, total_grad_steps=_EBT_STEPS.value, batch_size=_EBT_BATCH.value)
        loop = _loop_fields(dataset, workdir, seed, _EBT_STEPS.value)
        train(TrainConfig(**loop, policy=policy, inference=InferenceConfig(inference_steps=2)))
    return workdir


def train_dp(dataset: str, task: str, seed: int, objective: str = "diffusion") -> str:
    from robojax.agents.diffusion_policy.config import DiffusionPolicyConfig, InferenceConfig, TrainConfig
    from robojax.agents.diffusion_policy.train import train

    workdir = os.path.join(_RUNS.value, f"{task}_{objective}_s{seed}")
    steps = _MSE_STEPS.value if objective == "mse" and _MSE_STEPS.value else _DP_STEPS.value
    if not _done(workdir):
        _fresh(workdir)
        policy = DiffusionPolicyConfig(
            objective=objective,
            denoiser="mlp",
            mlp_hidden_dims=tuple(int(d) for d in _DP_DIMS.value),
            total_grad_steps=steps,
            batch_size=_DP_BATCH.value,
            learning_rate=1e-3,
        )
        loop = _loop_fields(dataset, workdir, seed, steps)
        # The curve evaluates DDIM-10 at Ta=8 (cheap); the final rows evaluate every mode.
        train(TrainConfig(**loop, policy=policy, inference=InferenceConfig(inference="ddim", action_steps=8)))
    return workdir


def _fresh(workdir: str) -> None:
    if os.path.isdir(workdir):
        import shutil

        shutil.rmtree(workdir)


# --------------------------------------------------------------------------------------------- evaluation


def ebt_modes(threshold: float | None) -> dict:
    from robojax.agents.ebt_policy.config import InferenceConfig

    tol = _GRAD_TOL.value
    modes = {
        "K=1": InferenceConfig(inference_steps=1),
        "K=2": InferenceConfig(inference_steps=2),
        "K=4": InferenceConfig(inference_steps=4),
        "adaptive": InferenceConfig(adaptive=True, grad_tol=tol, max_steps=8),
        "adaptive+warm": InferenceConfig(adaptive=True, grad_tol=tol, max_steps=8, warm_start=True),
        "best-of-4 K=2": InferenceConfig(inference_steps=2, num_samples=4),
    }
    if threshold is not None:
        modes["K=1 escalate"] = InferenceConfig(
            inference_steps=1, escalate=True, energy_threshold=threshold, escalate_steps=4, escalate_samples=4
        )
    return {m: c for m, c in modes.items() if m in _MODES.value}


def dp_modes(objective: str) -> dict:
    from robojax.agents.diffusion_policy.config import InferenceConfig

    if objective == "mse":
        return {"direct (Ta=8)": InferenceConfig(action_steps=8)}
    return {
        "ddpm (Ta=8)": InferenceConfig(inference="ddpm", action_steps=8),
        "ddim (Ta=8)": InferenceConfig(inference="ddim", ddim_steps=10, action_steps=8),
        "rti": InferenceConfig(
            inference="rti", ddim_steps=10, rti_first="ddim", rti_start_step=20, rti_steps=2, action_steps=1
        ),
    }


def auroc(scores, positives) -> float:
    """Area under the ROC curve of `scores` for the boolean `positives` (ties count half); NaN if one class is empty."""
    scores, positives = np.asarray(scores, np.float64), np.asarray(positives, bool)
    pos, neg = scores[positives], scores[~positives]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def _perturbed_env_factory(task: str):
    from robojax.envs import registry

    name = PERTURBATIONS[task]

    def make(env_name, num_envs, episode_length):
        return registry.make(env_name, num_envs=num_envs, episode_length=episode_length or None, perturbation=name)

    return make


def _perturbed_trace(state, action, nxt):
    return {"perturbed": nxt.info["perturbed"]}


def evaluate_policy(module, workdir: str, mode: str, inference, task: str, seed: int, learner: str) -> list[dict]:
    """Rows for one saved policy under one inference setting: nominal (+ latency) and perturbed."""
    loaded = module.load_policy(workdir)
    nominal = module.evaluate_success(
        loaded, inference, episodes=_EVAL_EPISODES.value, num_envs=_NUM_ENVS.value, seed=1000 + seed, keep_episodes=True
    )
    row = {
        "task": task,
        "seed": seed,
        "learner": learner,
        "mode": mode,
        "success": nominal["success"],
        "train_steps": loaded.metadata.get("train_steps"),
        "curve": _curve(workdir),
    }
    failures = ~np.asarray(nominal["per_episode"]["success"], bool)
    if "plans" in nominal:
        plans = nominal["plans"]
        row.update(
            mean_steps_per_plan=plans["mean_steps_per_plan"],
            mean_work_per_action=plans["mean_work_per_action"],
            escalation_rate=plans["escalation_rate"],
            mean_plan_energy=plans["mean_plan_energy"],
            auroc_max_energy=auroc(plans["per_episode_max_energy"], failures),
            auroc_mean_energy=auroc(plans["per_episode_mean_energy"], failures),
        )
    if _LATENCY_ACTIONS.value:
        lat = module.measure_latency(loaded, inference, num_actions=_LATENCY_ACTIONS.value, seed=seed)
        row.update(
            per_action_ms_mean=lat["per_action_ms_mean"],
            per_action_ms_p50=lat["per_action_ms_p50"],
            per_chunk_ms_p50=lat.get("per_chunk_ms_p50"),
            evals_per_action=lat.get("evals_per_action"),
        )
    if f"{learner}:{mode}" in _PERTURBED_MODES.value and task in PERTURBATIONS:
        perturbed = module.evaluate_success(
            loaded,
            inference,
            episodes=_EVAL_EPISODES.value,
            num_envs=_NUM_ENVS.value,
            seed=1000 + seed,
            make_env=_perturbed_env_factory(task),
            trace=_perturbed_trace,
            keep_episodes=True,
        )
        traced = perturbed["traced"]
        hit = np.any(np.asarray(traced["trace"]["perturbed"]) & np.asarray(traced["valid"]), axis=0)
        ok = np.asarray(perturbed["per_episode"]["success"], bool)
        row.update(
            perturbed_success=perturbed["success"],
            perturbed_fraction=float(hit.mean()),
            success_when_perturbed=float(ok[hit].mean()) if hit.any() else float("nan"),
        )
        if "plans" in perturbed:
            row["perturbed_mean_plan_energy"] = perturbed["plans"]["mean_plan_energy"]
    print(json.dumps({k: v for k, v in row.items() if k != "curve"}), flush=True)
    return [row]


def main(argv):
    del argv
    from benchmarks.machine import machine_info
    from robojax.agents.diffusion_policy import train as dp_train
    from robojax.agents.ebt_policy import train as ebt_train
    from robojax.agents.ebt_policy.config import InferenceConfig

    tasks = [(t, d) for t, d in (("arm_push_cube", _PUSH.value), ("arm_pick_place", _PICK.value)) if d]
    rows, calibrations, train_times = [], [], []
    for task, dataset in tasks:
        heldout = _heldout_dataset(dataset, task)
        for seed in (int(s) for s in _SEEDS.value):
            t0 = time.perf_counter()
            ebt_dir = train_ebt(dataset, task, seed)
            t1 = time.perf_counter()
            dp_dir = train_dp(dataset, task, seed)
            t2 = time.perf_counter()
            train_times.append({"task": task, "seed": seed, "ebt_s": t1 - t0, "dp_s": t2 - t1})
            cal = ebt_train.calibrate(
                ebt_dir, heldout, InferenceConfig(inference_steps=1), quantile=_QUANTILE.value, seed=seed
            )
            calibrations.append({"task": task, "seed": seed, **cal})
            for mode, inference in ebt_modes(cal["threshold"]).items():
                rows += evaluate_policy(ebt_train, ebt_dir, mode, inference, task, seed, "ebt")
            for mode, inference in dp_modes("diffusion").items():
                rows += evaluate_policy(dp_train, dp_dir, mode, inference, task, seed, "dp")
            if _MSE.value:
                mse_dir = train_dp(dataset, task, seed, "mse")
                for mode, inference in dp_modes("mse").items():
                    rows += evaluate_policy(dp_train, mse_dir, mode, inference, task, seed, "mse")
    settings = {
        "num_demos": _NUM_DEMOS.value,
        "heldout": _HELDOUT.value,
        "ebt_steps": _EBT_STEPS.value,
        "dp_steps": _DP_STEPS.value,
        "mse_steps": _MSE_STEPS.value or _DP_STEPS.value if _MSE.value else None,
        "ebt_width": _EBT_WIDTH.value,
        "ebt_batch_size": _EBT_BATCH.value,
        "dp_batch_size": _DP_BATCH.value,
        "dp_mlp_hidden_dims": [int(d) for d in _DP_DIMS.value],
        "eval_episodes": _EVAL_EPISODES.value,
        "curve_interval": _CURVE.value,
        "curve_episodes": _CURVE_EPISODES.value,
        "grad_tol": _GRAD_TOL.value,
        "calibration_quantile": _QUANTILE.value,
        "perturbed_modes": list(_PERTURBED_MODES.value),
    }
    result = {
        "command": "python -m benchmarks.ebt_policy " + " ".join(sys.argv[1:]),
        "machine": machine_info(),
        "settings": settings,
        "rows": rows,
        "calibrations": calibrations,
        "train_times": train_times,
    }
    result = json.loads(json.dumps(_json_ready(result)))  # the block is computed from what the JSON holds
    result["targets"] = targets(result)
    write_report(_OUT.value, result, render(result))


def _heldout_dataset(dataset: str, task: str) -> str:
    """A dataset directory of the `--heldout` episodes after the training ones (written once, beside the runs)."""
    from robojax.data.episodes import EpisodeWriter, load_episodes

    path = os.path.join(_RUNS.value, f"{task}_heldout_{_NUM_DEMOS.value}_{_HELDOUT.value}")
    if os.path.isdir(path):
        return path
    data = load_episodes(dataset)
    episodes = data.episodes[_NUM_DEMOS.value : _NUM_DEMOS.value + _HELDOUT.value]
    if len(episodes) < _HELDOUT.value or _HELDOUT.value < 1:
        raise ValueError(
            f"{dataset} holds {len(data.episodes)} episodes: it needs num_demos + heldout ="
            f" {_NUM_DEMOS.value + _HELDOUT.value} (collect more, or lower --heldout)"
        )
    with EpisodeWriter(
        path,
        data.observation_spec,
        data.action_spec,
        env=data.env,
        control_dt=data.control_dt,
        discrete_action_dims=data.discrete_action_dims,
    ) as writer:
        for e in episodes:
            writer.add_episode(np.asarray(e.observations), np.asarray(e.actions))
    return path


def _json_ready(x):
    if isinstance(x, dict):
        return {k: _json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_ready(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, float) and x != x:
        return None
    return x


# --------------------------------------------------------------------------------------------- targets


def _mean(xs):
    xs = [x for x in xs if x is not None and x == x]
    return sum(xs) / len(xs) if xs else float("nan")


def summarize(rows: list[dict]) -> list[dict]:
    keys = sorted({(r["task"], r["learner"], r["mode"]) for r in rows})
    out = []
    for task, learner, mode in keys:
        sel = [r for r in rows if (r["task"], r["learner"], r["mode"]) == (task, learner, mode)]
        entry = {"task": task, "learner": learner, "mode": mode, "seeds": [r["seed"] for r in sel]}
        for k in (
            "success",
            "per_action_ms_mean",
            "evals_per_action",
            "mean_steps_per_plan",
            "mean_work_per_action",
            "escalation_rate",
            "auroc_max_energy",
            "auroc_mean_energy",
            "mean_plan_energy",
            "perturbed_mean_plan_energy",
            "perturbed_success",
            "success_when_perturbed",
            "perturbed_fraction",
        ):
            entry[k] = _mean([r.get(k) for r in sel])
        out.append(entry)
    return out


DP_PAPER = {"arm_push_cube": 0.937, "arm_pick_place": 0.997}  # benchmarks/results/diffusion_policy.json, best modes
SEEDS, EPISODES, DEMOS = 3, 100, 200


def _steps_to_reach(curve: list[dict], level: float):
    for point in curve:
        if point["success"] >= level:
            return point
    return None


def targets(result: dict) -> dict:
    """Issue 13's targets from the saved rows (see benchmarks/targets.py)."""
    rows = result.get("rows", [])
    settings = result.get("settings", {})
    summary = summarize(rows)
    out = {}
    scale = (
        f"this run: {settings.get('num_demos')} demos, {settings.get('eval_episodes')} episodes,"
        f" EBT {settings.get('ebt_steps')} / DP {settings.get('dp_steps')} steps"
    )
    for task in ("arm_push_cube", "arm_pick_place"):
        here = [s for s in summary if s["task"] == task]
        ebt = [s for s in here if s["learner"] == "ebt" and s["success"] == s["success"]]
        dp = [s for s in here if s["learner"] == "dp" and s["success"] == s["success"]]
        goal = (
            f"EBT-Policy success >= Diffusion Policy's best on {task}, same {DEMOS} demos, {SEEDS} seeds x"
            f" {EPISODES} episodes (DP measured in the same run; measured: EBT best minus DP best, points)"
        )
        if not ebt or not dp:
            out[f"{task}_success_vs_dp"] = missing(goal, f"{task} not run in this benchmark pass")
        else:
            best_ebt = max(ebt, key=lambda s: s["success"])
            best_dp = max(dp, key=lambda s: s["success"])
            gap = 100 * (best_ebt["success"] - best_dp["success"])
            full = len(best_ebt["seeds"]) >= SEEDS and settings.get("eval_episodes", 0) >= EPISODES
            full = full and settings.get("num_demos", 0) >= DEMOS
            out[f"{task}_success_vs_dp"] = target(
                gap,
                goal,
                gap >= 0 and full,
                f"EBT {100 * best_ebt['success']:.1f}% ({best_ebt['mode']}), DP {100 * best_dp['success']:.1f}%"
                f" ({best_dp['mode']}), seeds {best_ebt['seeds']}; {scale}",
            )
        out[f"{task}_success_vs_dp_50_demos"] = missing(
            f"the same comparison on {task} with 50 demos", "not run in this benchmark pass (one demo count per pass)"
        )
        # Inference: <= 4 steps at that success, latency <= 1/10 of DDPM-100.
        goal = (
            f"EBT at <= 4 energy-descent steps per plan reaches its best success on {task} (measured: the fewest"
            " mean steps per plan of a single-sample EBT mode within 2 points of EBT's best)"
        )
        if ebt:
            best = max(s["success"] for s in ebt)
            # Single-sample, non-escalating modes: their steps per plan are their whole descent.
            single = [s for s in ebt if s["mode"].startswith(("K=", "adaptive")) and "escalate" not in s["mode"]]
            near = [
                s
                for s in single
                if s["success"] >= best - 0.02 and s["mean_steps_per_plan"] == s["mean_steps_per_plan"]
            ]
            fewest = min(near, key=lambda s: s["mean_steps_per_plan"]) if near else None
            out[f"{task}_descent_steps"] = (
                target(
                    fewest["mean_steps_per_plan"],
                    goal,
                    fewest["mean_steps_per_plan"] <= 4,
                    f"{fewest['mode']}: {100 * fewest['success']:.1f}% vs best {100 * best:.1f}%",
                )
                if fewest
                else missing(goal, "no EBT steps recorded")
            )
        else:
            out[f"{task}_descent_steps"] = missing(goal, f"{task} not run")
        goal = (
            f"EBT per-action latency at batch 1 <= 1/10 of DDPM-100 on {task} (measured: the ratio for the"
            " EBT mode of the descent-steps target, side by side in one run; RTI and DDIM-10 reported beside it)"
        )
        ddpm = next((s for s in dp if s["mode"].startswith("ddpm")), None)
        step_mode = out[f"{task}_descent_steps"].get("note", "").split(":")[0]
        ebt_row = next((s for s in ebt if s["mode"] == step_mode), None)
        if ddpm is None or ebt_row is None or ebt_row["per_action_ms_mean"] != ebt_row["per_action_ms_mean"]:
            out[f"{task}_latency_vs_ddpm"] = missing(goal, "EBT or DDPM-100 latency not measured")
        else:
            ratio = ebt_row["per_action_ms_mean"] / ddpm["per_action_ms_mean"]
            others = ", ".join(
                f"{s['mode']} {s['per_action_ms_mean']:.3f} ms"
                for s in dp
                if s["per_action_ms_mean"] == s["per_action_ms_mean"]
            )
            out[f"{task}_latency_vs_ddpm"] = target(
                ratio,
                goal,
                ratio <= 0.1,
                f"EBT {ebt_row['mode']} {ebt_row['per_action_ms_mean']:.3f} ms/action; DP {others} (both Ta as listed)",
            )
        # Training compute: wall-clock and steps to reach DP's final success.
        goal = (
            f"EBT reaches DP's success on {task} in less training wall-clock than DP, same machine (the paper: ~66%"
            " faster; measured: EBT seconds / DP seconds to the first curve point at DP's final curve success)"
        )
        ebt_rows = [r for r in rows if r["task"] == task and r["learner"] == "ebt" and r["mode"] == "K=2"]
        dp_rows = [r for r in rows if r["task"] == task and r["learner"] == "dp" and r["mode"].startswith("ddpm")]
        ratios, notes = [], []
        for er in ebt_rows:
            dr = next((d for d in dp_rows if d["seed"] == er["seed"]), None)
            if not dr or not dr.get("curve") or not er.get("curve"):
                continue
            level = dr["curve"][-1]["success"]
            e_hit, d_hit = _steps_to_reach(er["curve"], level), _steps_to_reach(dr["curve"], level)
            if e_hit is None:
                notes.append(
                    f"seed {er['seed']}: EBT never reached DP's {100 * level:.0f}% (curve max {100 * max(p['success'] for p in er['curve']):.0f}%)"
                )
                ratios.append(float("inf"))
                continue
            ratios.append(e_hit["wall_s"] / d_hit["wall_s"])
            notes.append(
                f"seed {er['seed']}: DP {100 * level:.0f}% at {d_hit['steps']} steps / {d_hit['wall_s']:.0f} s;"
                f" EBT at {e_hit['steps']} steps / {e_hit['wall_s']:.0f} s"
            )
        if not ratios:
            out[f"{task}_training_compute"] = missing(goal, "no training curves recorded")
        else:
            med = float(np.median(ratios))
            out[f"{task}_training_compute"] = target(
                med if np.isfinite(med) else None, goal, bool(np.isfinite(med) and med < 1.0), "; ".join(notes)
            )
        # Uncertainty.
        goal = f"AUROC of the episode's plan energy (max or mean) for predicting failure >= 0.75 on {task}"
        k2 = next((s for s in ebt if s["mode"] == "K=2"), None)
        if k2 is None:
            out[f"{task}_energy_auroc"] = missing(goal, f"{task} not run")
        else:
            best = max((k2["auroc_max_energy"], k2["auroc_mean_energy"]), key=lambda v: -1 if v != v else v)
            out[f"{task}_energy_auroc"] = target(
                best,
                goal,
                best == best and best >= 0.75,
                f"K=2: max-energy {k2['auroc_max_energy']:.3f}, mean-energy {k2['auroc_mean_energy']:.3f}"
                f" (NaN when every episode succeeded or failed); {100 * (1 - k2['success']):.0f}% failures",
            )
            goal = f"plan energy on perturbed vs nominal episodes on {task} (reported: perturbed minus nominal mean)"
            diff = k2["perturbed_mean_plan_energy"] - k2["mean_plan_energy"]
            out[f"{task}_energy_perturbed_vs_nominal"] = (
                target(
                    diff if diff == diff else None,
                    goal,
                    diff == diff and diff > 0,
                    f"nominal {k2['mean_plan_energy']:.4f}, perturbed {k2['perturbed_mean_plan_energy']:.4f}",
                )
                if diff == diff
                else missing(goal, "perturbed episodes not evaluated")
            )
        # Adaptive compute.
        goal = (
            f"adaptive compute (energy-triggered escalation) beats fixed K at equal or lower mean compute per action"
            f" on {task} (measured: escalated success minus the best fixed-K success at <= its compute, points)"
        )
        esc = next((s for s in ebt if s["mode"] == "K=1 escalate"), None)
        fixed = [s for s in ebt if s["mode"] in ("K=1", "K=2", "K=4")]
        if esc is None or not fixed:
            out[f"{task}_adaptive_compute"] = missing(goal, "no escalation row")
        else:
            cheaper = [s for s in fixed if s["mean_work_per_action"] <= esc["mean_work_per_action"] + 1e-9]
            ref = (
                max(cheaper, key=lambda s: s["success"])
                if cheaper
                else min(fixed, key=lambda s: s["mean_work_per_action"])
            )
            gap = 100 * (esc["success"] - ref["success"])
            out[f"{task}_adaptive_compute"] = target(
                gap,
                goal,
                gap > 0,
                f"escalate {100 * esc['success']:.1f}% at {esc['mean_work_per_action']:.2f} forwards/action"
                f" ({100 * esc['escalation_rate']:.0f}% plans escalated) vs {ref['mode']} {100 * ref['success']:.1f}%"
                f" at {ref['mean_work_per_action']:.2f}",
            )
        # Warm start.
        goal = f"warm start saves descent steps on {task} (measured: adaptive cold minus adaptive warm mean steps per plan)"
        cold = next((s for s in ebt if s["mode"] == "adaptive"), None)
        warm = next((s for s in ebt if s["mode"] == "adaptive+warm"), None)
        if cold is None or warm is None:
            out[f"{task}_warm_start_steps_saved"] = missing(goal, "adaptive rows not run")
        else:
            saved = cold["mean_steps_per_plan"] - warm["mean_steps_per_plan"]
            out[f"{task}_warm_start_steps_saved"] = target(
                saved,
                goal,
                saved > 0,
                f"cold {cold['mean_steps_per_plan']:.2f} steps ({100 * cold['success']:.1f}%), warm"
                f" {warm['mean_steps_per_plan']:.2f} ({100 * warm['success']:.1f}%)",
            )
        # Recovery.
        goal = (
            f"success after the mid-episode perturbation on {task}, 100 episodes, EBT vs DP (DDPM and RTI) and the"
            " MSE baseline (measured: EBT K=2 minus the best of the others, points)"
        )
        others = [s for s in here if s["learner"] != "ebt" and s["perturbed_success"] == s["perturbed_success"]]
        if k2 is None or k2["perturbed_success"] != k2["perturbed_success"] or not others:
            out[f"{task}_recovery"] = missing(goal, "perturbed episodes not evaluated")
        else:
            best_other = max(others, key=lambda s: s["perturbed_success"])
            gap = 100 * (k2["perturbed_success"] - best_other["perturbed_success"])
            listing = ", ".join(f"{s['learner']} {s['mode']} {100 * s['perturbed_success']:.0f}%" for s in others)
            out[f"{task}_recovery"] = target(
                gap,
                goal,
                gap >= 0 and k2["perturbed_fraction"] >= 0.5,
                f"EBT K=2 {100 * k2['perturbed_success']:.0f}% ({100 * k2['perturbed_fraction']:.0f}% of episodes"
                f" perturbed); {listing}; MSE baseline {'in' if any(s['learner'] == 'mse' for s in others) else 'not in'} this run",
            )
    out["arm_pick_place_multimodality"] = missing(
        "fraction of left vs right pillar passes over 100 episodes, EBT and demos, on arm_pick_place",
        "not measured in this pass: arm_pick_place was not run and the pass classification is not built",
    )
    return out


# --------------------------------------------------------------------------------------------- report


def render(result: dict) -> list[str]:
    s = result["settings"]
    lines = [
        "# EBT-Policy vs Diffusion Policy: success, inference compute, uncertainty, recovery",
        "",
        "Command:",
        "",
        f"    {result['command']}",
        "",
        f"Machine: {result['machine'].get('cpu', '?')}, backend {result['machine'].get('backend', '?')}."
        f" Demos: {s['num_demos']} (threshold calibrated on the next {s['heldout']}). EBT width {s['ebt_width']},"
        f" {s['ebt_steps']} steps, batch {s['ebt_batch_size']}; DP MLP {s['dp_mlp_hidden_dims']}, {s['dp_steps']}"
        f" steps, batch {s['dp_batch_size']}. {s['eval_episodes']} evaluation episodes per row (the same reset keys"
        " for every row of a seed); latency: jitted single-env step at batch 1, per executed action.",
        "",
        "| task | learner | mode | seeds | success | perturbed success | steps/plan | fwd/action | ms/action"
        " | AUROC max E | AUROC mean E | energy nominal | energy perturbed |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def f(x, fmt):
        return "" if x is None or x != x else format(x, fmt)

    def perturbed_hit(r):
        x = r["perturbed_fraction"]
        return "" if x is None or x != x else f" ({100 * x:.0f}% hit)"

    def pct(x, fmt=".1f"):
        return "" if x is None or x != x else format(100 * x, fmt) + "%"

    for r in summarize(result["rows"]):
        lines.append(
            f"| {r['task']} | {r['learner']} | {r['mode']} | {len(r['seeds'])} | {pct(r['success'])}"
            f" | {pct(r['perturbed_success'])}{perturbed_hit(r)} | {f(r['mean_steps_per_plan'], '.2f')}"
            f" | {f(r['mean_work_per_action'] if r['mean_work_per_action'] == r['mean_work_per_action'] else r['evals_per_action'], '.2f')}"
            f" | {f(r['per_action_ms_mean'], '.3f')} | {f(r['auroc_max_energy'], '.3f')}"
            f" | {f(r['auroc_mean_energy'], '.3f')} | {f(r['mean_plan_energy'], '.4f')}"
            f" | {f(r['perturbed_mean_plan_energy'], '.4f')} |"
        )
    lines += ["", "Training (wall-clock, s):", ""]
    for t in result["train_times"]:
        lines.append(f"- {t['task']} seed {t['seed']}: EBT {t['ebt_s']:.0f} s, DP {t['dp_s']:.0f} s (0: reused run)")
    lines += ["", "Energy thresholds:", ""]
    for c in result["calibrations"]:
        lines.append(
            f"- {c['task']} seed {c['seed']}: {c['threshold']:.4f} (quantile {c['quantile']} of {c['windows']} held-out"
            f" windows; mean {c['energy_mean']:.4f}, std {c['energy_std']:.4f})"
        )
    lines += ["", *targets_table(result["targets"])]
    return lines


if __name__ == "__main__":
    app.run(main)
