"""The targets block of every committed benchmark result, and the scripts' targets() on tiny fake results."""

import copy
import glob
import json
import os

import pytest

from benchmarks.targets import (
    BENCHMARKS,
    RESULTS_DIR,
    benchmark_targets,
    check_targets,
    target,
    targets_table,
    with_targets_section,
)

RESULTS = sorted(glob.glob(os.path.join(RESULTS_DIR, "*.json")))


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def test_results_exist():
    assert len(RESULTS) >= 8


@pytest.mark.parametrize("path", RESULTS, ids=_stem)
def test_results_json_has_well_formed_targets(path):
    with open(path) as f:
        results = json.load(f)
    assert "targets" in results, f"{path} has no targets block: run python -m benchmarks.targets"
    check_targets(results["targets"])
    for entry in results["targets"].values():
        assert isinstance(entry["measured"], (bool, int, float, str, type(None)))
        assert isinstance(entry["goal"], str) and entry["goal"]
        assert isinstance(entry["met"], bool)


@pytest.mark.parametrize("path", RESULTS, ids=_stem)
def test_committed_block_is_what_the_script_computes(path):
    stem = _stem(path)
    assert stem in BENCHMARKS, f"{stem}.json: add it to benchmarks.targets.BENCHMARKS with the script that wrote it"
    with open(path) as f:
        results = json.load(f)
    computed = benchmark_targets(BENCHMARKS[stem])(results)
    assert json.loads(json.dumps(computed)) == results["targets"]
    with open(os.path.splitext(path)[0] + ".md") as f:
        assert "\n".join(targets_table(results["targets"])) in f.read()


@pytest.mark.parametrize(
    "block, message",
    [
        ({}, "non-empty"),
        ({"x": {"measured": 1.0, "goal": "g"}}, "needs the keys"),
        ({"x": {"measured": [1.0], "goal": "g", "met": True}}, "measured must be"),
        ({"x": {"measured": float("nan"), "goal": "g", "met": False}}, "record a missing figure as null"),
        ({"x": {"measured": 1.0, "goal": "", "met": True}}, "goal must be"),
        ({"x": {"measured": 1.0, "goal": "g", "met": 1}}, "met must be"),
        ({"x": {"measured": None, "goal": "g", "met": True, "note": "n"}}, "cannot be met"),
        ({"x": {"measured": None, "goal": "g", "met": False}}, "add a note"),
    ],
)
def test_check_targets_rejects_malformed(block, message):
    with pytest.raises(ValueError, match=message):
        check_targets(block)


def test_target_never_met_without_a_figure():
    assert target(float("nan"), "g", True) == {"measured": None, "goal": "g", "met": False}
    assert target(None, "g", True, "why")["met"] is False
    assert target(0.5, "g", True)["met"] is True


def test_with_targets_section_replaces_or_appends():
    block = {"a": target(1.0, "goal a", True)}
    table = "\n".join(targets_table(block))
    appended = with_targets_section("# T\n\ntext\n", block)
    assert appended == f"# T\n\ntext\n\n{table}\n"
    replaced = with_targets_section("# T\n\n## Targets\n\nold\n\n## Later\n\nkept\n", block)
    assert replaced == f"# T\n\n{table}\n\n## Later\n\nkept\n"
    assert with_targets_section(appended, block) == appended


# ---- each script's targets() marks a target unmet when its figure misses -----------------------------


def _sac_run(env, seed, seconds, reached=True):
    return {
        "env": env,
        "seed": seed,
        "sac": {},
        "threshold": 900.0,
        "reached": reached,
        "env_steps_to_threshold": 5000 if reached else None,
        "seconds_to_threshold": seconds if reached else None,
        "best_return": 950.0 if reached else 500.0,
    }


def test_sac_targets():
    fn = benchmark_targets("sac")
    runs = [_sac_run(env, s, 60.0) for env in ("cartpole_balance", "pendulum_swingup") for s in range(3)]
    good = {"time_to_threshold": runs}
    assert fn(good)["cartpole_balance_900_within_5_min"]["met"]
    slow = copy.deepcopy(good)
    slow["time_to_threshold"][1]["seconds_to_threshold"] = 301.0
    assert not fn(slow)["cartpole_balance_900_within_5_min"]["met"]
    assert fn(slow)["pendulum_swingup_700_within_5_min"]["met"]
    missed = copy.deepcopy(good)
    missed["time_to_threshold"][4] = _sac_run("pendulum_swingup", 1, None, reached=False)
    assert fn(missed)["pendulum_swingup_700_within_5_min"] == {
        **fn(missed)["pendulum_swingup_700_within_5_min"],
        "measured": None,
        "met": False,
    }
    two_seeds = {"time_to_threshold": runs[:2]}
    assert not fn(two_seeds)["cartpole_balance_900_within_5_min"]["met"]
    assert not fn(good)["gym_inverted_pendulum_solved"]["met"]  # no host-loop runs
    check_targets(fn(good))


def test_deploy_targets():
    fn = benchmark_targets("deploy")
    p = lambda p99: {"n": 10, "p99_ms": p99}
    results = {
        "machine": {"cores": 2},
        "load_before": [0.1],
        "load_after": [0.2],
        "compute": p(0.05),
        "roundtrip": {"state": p(0.5), "command": p(0.7)},
        "loop": {"rate_hz": 100.0, "steps": 6000, "end_reason": "completed", "deadline_misses": 0},
    }
    block = fn(results)
    assert (
        block["compute_p99_ms"]["met"] and block["roundtrip_p99_ms"]["met"] and block["loop_100_hz_60_s_no_miss"]["met"]
    )
    bad = copy.deepcopy(results)
    bad["compute"]["p99_ms"] = 1.5
    bad["roundtrip"]["command"]["p99_ms"] = 2.5
    bad["loop"]["deadline_misses"] = 1
    block = fn(bad)
    assert not block["compute_p99_ms"]["met"]
    assert not block["roundtrip_p99_ms"]["met"] and block["roundtrip_p99_ms"]["measured"] == 2.5
    assert not block["loop_100_hz_60_s_no_miss"]["met"]
    short = copy.deepcopy(results)
    short["loop"]["steps"] = 3000
    assert not fn(short)["loop_100_hz_60_s_no_miss"]["met"]
    check_targets(block)


def test_env_throughput_targets():
    fn = benchmark_targets("env_throughput")
    row = lambda task, ratio: {
        "task": task,
        "batch": 1024,
        "steps_per_s": 1e5 * ratio,
        "c_mujoco_steps_per_s": 1e5,
        "ratio_vs_c": ratio,
        "ratio_vs_c_rollout": ratio,
    }
    result = {
        "command": "c",
        "machine": {"cores": 2},
        "rows": [
            row("cartpole_balance", 2.0),
            row("reacher", 0.9),
            {"task": "pendulum_swingup", "batch": 1024, "stalled": True},
        ],
    }
    block = fn(result)
    assert block["cartpole_balance_beats_c_at_batch_1024"]["met"]
    assert not block["reacher_beats_c_at_batch_1024"]["met"]
    assert block["pendulum_swingup_beats_c_at_batch_1024"]["measured"] is None
    assert block["cartpole_swingup_beats_c_at_batch_1024"]["measured"] is None
    check_targets(block)


def _dp_summary(task, objective, mode, success, ms, seeds=(0, 1, 2)):
    return {
        "task": task,
        "objective": objective,
        "mode": mode,
        "seeds": list(seeds),
        "success_mean": success,
        "per_action_ms_mean": ms,
    }


def test_diffusion_policy_targets():
    fn = benchmark_targets("diffusion_policy")
    summary = []
    for task in ("arm_push_cube", "arm_pick_place"):
        summary += [
            _dp_summary(task, "diffusion", "ddpm", 0.93, 25.0),
            _dp_summary(task, "diffusion", "ddim", 0.9, 3.0),
            _dp_summary(task, "diffusion", "rti", 0.92, 1.0),
        ]
    summary.append(_dp_summary("arm_pick_place", "mse", "direct", 0.7, 0.7))
    block = fn({"summary": summary})
    assert all(e["met"] for e in block.values()), block
    push_low = [dict(s, success_mean=0.85) if s["task"] == "arm_push_cube" else s for s in summary]
    assert not fn({"summary": push_low})["arm_push_cube_success"]["met"]
    one_seed = [dict(s, seeds=[0]) for s in summary]
    assert not fn({"summary": one_seed})["arm_pick_place_success"]["met"]
    slow_rti = [dict(s, per_action_ms_mean=1.4) if s["mode"] == "rti" else s for s in summary]
    block = fn({"summary": slow_rti})
    assert not block["arm_push_cube_rti_latency_vs_ddpm"]["met"] and block["arm_push_cube_rti_latency_vs_ddim"]["met"]
    worse_rti = [dict(s, success_mean=0.8) if s["mode"] == "rti" else s for s in summary]
    assert not fn({"summary": worse_rti})["arm_push_cube_rti_success_vs_ddpm"]["met"]
    close_mse = summary[:-1] + [_dp_summary("arm_pick_place", "mse", "direct", 0.88, 0.7)]
    assert not fn({"summary": close_mse})["mse_baseline_lower_on_arm_pick_place"]["met"]
    check_targets(fn({"summary": []}))


def _raptor_run(n, minutes, hover, track_error):
    m = lambda success, error: {"success": success, "position_error": error}
    res = {"hover": {"student": m(hover, 0.1)}, "track": {"student": m(0.9, track_error)}}
    return {"num_teachers": n, "wall_s": 60 * minutes, "results": res}


def test_raptor_targets():
    fn = benchmark_targets("raptor")
    data = {
        "runs": [_raptor_run(n, 20.0, 0.95, 0.1) for n in (8, 16, 32, 64)],
        "projection": {
            "cpu_env_steps_per_s": 5000.0,
            "measured_on": "cpu",
            "teacher_env_steps": 1000,
            "gpu_minutes_1000_teachers_this_budget": [1.0, 5.0],
        },
    }
    assert all(e["met"] for e in fn(data).values())
    data["runs"][2] = _raptor_run(32, 31.0, 0.89, 0.21)
    block = fn(data)
    assert not block["32_teachers_under_30_min"]["met"]
    assert not block["hover_success_90"]["met"]
    assert not block["tracking_error_under_0_2_m"]["met"]
    data["runs"][3] = {"num_teachers": 64, "failed": True, "wall_s": 10.0}
    del data["projection"]["gpu_minutes_1000_teachers_this_budget"]
    block = fn(data)
    assert not block["scaling_64_teachers"]["met"] and not block["gpu_projection_1000_teachers"]["met"]
    check_targets(block)


def test_deploy_train_sac_targets():
    fn = benchmark_targets("deploy_train_sac")
    ev = lambda steps, ret: {"env_steps": steps, "return": ret, "success": 0.5}
    record = {
        "task": "arm_reach",
        "error": None,
        "env_steps": 2000,
        "config": {"total_env_steps": 2000},
        "evals": [ev(1000, 50.0), ev(2000, 90.0)],
    }
    assert fn(record)["sac_trains_against_robot"]["met"]
    assert not fn({**record, "error": "robot timed out", "env_steps": 1500})["sac_trains_against_robot"]["met"]
    assert not fn({**record, "evals": [ev(1000, 90.0), ev(2000, 50.0)]})["sac_trains_against_robot"]["met"]
    check_targets(fn({**record, "evals": []}))


def test_quadrotor_throughput_targets():
    fn = benchmark_targets("quadrotor_throughput")
    c = {"selftest_passed": True, "max_abs_error": 2e-7}
    assert fn({"student_latency": {"c": c}})["c_export_parity"]["met"]
    assert not fn({"student_latency": {"c": {**c, "selftest_passed": False}}})["c_export_parity"]["met"]
    assert fn({"student_latency": {}})["c_export_parity"]["measured"] is None


def _ebt_row(learner, mode, success, **kw):
    row = {
        "task": "arm_push_cube",
        "seed": 0,
        "learner": learner,
        "mode": mode,
        "success": success,
        "per_action_ms_mean": kw.pop("ms", 1.0),
        "curve": kw.pop("curve", []),
    }
    return {**row, **kw}


def test_ebt_policy_targets():
    fn = benchmark_targets("ebt_policy")
    curve = lambda *points: [{"steps": s, "wall_s": w, "success": x} for s, w, x in points]
    rows = [
        _ebt_row("ebt", "K=1", 0.90, mean_steps_per_plan=1.0, mean_work_per_action=0.5),
        _ebt_row(
            "ebt",
            "K=2",
            0.95,
            ms=2.0,
            mean_steps_per_plan=2.0,
            mean_work_per_action=0.875,
            auroc_max_energy=0.8,
            auroc_mean_energy=0.7,
            mean_plan_energy=-1.0,
            perturbed_mean_plan_energy=-0.5,
            perturbed_success=0.9,
            perturbed_fraction=1.0,
            curve=curve((500, 100, 0.5), (1000, 200, 0.9)),
        ),
        _ebt_row("ebt", "K=1 escalate", 0.96, mean_steps_per_plan=1.5, mean_work_per_action=0.8, escalation_rate=0.2),
        _ebt_row("ebt", "adaptive", 0.95, mean_steps_per_plan=3.0, mean_work_per_action=1.2),
        _ebt_row("ebt", "adaptive+warm", 0.95, mean_steps_per_plan=1.5, mean_work_per_action=0.7),
        _ebt_row("dp", "ddpm (Ta=8)", 0.93, ms=25.0, perturbed_success=0.8, curve=curve((1000, 300, 0.9))),
        _ebt_row("dp", "rti", 0.92, ms=1.0, perturbed_success=0.7),
    ]
    full = {"num_demos": 200, "eval_episodes": 100, "ebt_steps": 1000, "dp_steps": 1000}
    block = fn({"rows": [dict(r, seed=s) for s in (0, 1, 2) for r in rows], "settings": full})
    check_targets(block)
    for name in (
        "success_vs_dp",
        "descent_steps",
        "latency_vs_ddpm",
        "training_compute",
        "energy_auroc",
        "energy_perturbed_vs_nominal",
        "adaptive_compute",
        "warm_start_steps_saved",
        "recovery",
    ):
        assert block[f"arm_push_cube_{name}"]["met"], (name, block[f"arm_push_cube_{name}"])
    assert block["arm_push_cube_training_compute"]["measured"] == pytest.approx(200 / 300)
    assert block["arm_push_cube_descent_steps"]["measured"] == 1.5  # adaptive+warm, within 2 points of the best
    assert not block["arm_pick_place_success_vs_dp"]["met"] and block["arm_pick_place_success_vs_dp"]["note"]
    # One seed, or fewer episodes, cannot meet the success target; a worse EBT fails it.
    assert not fn({"rows": rows, "settings": full})["arm_push_cube_success_vs_dp"]["met"]
    worse = [dict(r, success=0.5) if r["learner"] == "ebt" else r for r in rows]
    assert not fn({"rows": worse, "settings": full})["arm_push_cube_success_vs_dp"]["met"]
    slow = [dict(r, per_action_ms_mean=5.0) if r["learner"] == "ebt" else r for r in rows]
    assert not fn({"rows": slow, "settings": full})["arm_push_cube_latency_vs_ddpm"]["met"]
    check_targets(fn({"rows": [], "settings": {}}))
