"""SAC benchmarks for issue 3: time to threshold, sample efficiency vs UTD, loop throughput.

    python -m benchmarks.sac                                   # all three parts
    python -m benchmarks.sac --parts=targets --seeds=0,1,2
    python -m benchmarks.sac --parts=throughput --num_envs_list=1,16,128

targets:    the default config (`experiments.train_sac` defaults) on cartpole_balance (eval >= 900)
            and pendulum_swingup (eval >= 700), each run in a fresh process with the persistent
            compile cache off, so the wall-clock counts Python start-up, imports and all
            compilation. Evaluation every `--eval_interval` env steps (10 episodes, deterministic
            actor); reports env steps and seconds to the first evaluation at or above threshold.
utd:        the same on cartpole_balance with utd_ratio 1, 4 and 16 (env steps to threshold).
throughput: the jitted collect-and-update iteration alone at num_envs 1, 16, 128 (utd and batch as
            default): env steps/s and gradient updates/s once compiled, and collection alone.
gym:        gymnasium's own InvertedPendulum-v5 through the threaded host actor/learner loop
            (`config.HostTrainConfig` defaults), fresh process, no compile cache: env steps and
            seconds to the first evaluation (5 episodes, deterministic policy) at return 1000.
            `python -m benchmarks.sac --parts=gym --seeds=0,1,2`
Writes benchmarks/results/sac.md and sac.json; parts not run keep their previous results. The
`targets` part's runs are stored under "time_to_threshold"; the JSON's "targets" key is the
issue's targets block (benchmarks/targets.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags

from benchmarks.machine import machine_info
from benchmarks.targets import missing, target, targets_table, write_report

_PARTS = flags.DEFINE_list("parts", ["targets", "utd", "throughput", "gym"], "Which measurements to run.")
_GYM_ENV = flags.DEFINE_string("gym_env", "InvertedPendulum-v5", "Gymnasium id for the host-loop part.")
_GYM_THRESHOLD = flags.DEFINE_float("gym_threshold", 1000.0, "Eval return threshold of the host-loop part.")
_GYM_MAX_STEPS = flags.DEFINE_integer("gym_max_env_steps", 30_000, "Give up on a host-loop run after this many steps.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds for the time-to-threshold runs.")
_UTD_SEEDS = flags.DEFINE_list("utd_seeds", ["0"], "Seeds for the utd_ratio sweep.")
_UTDS = flags.DEFINE_list("utd_ratios", ["1", "4", "16"], "utd_ratio values for the sample-efficiency sweep.")
_NUM_ENVS = flags.DEFINE_list("num_envs_list", ["1", "16", "128"], "num_envs values for the throughput part.")
_EVAL_INTERVAL = flags.DEFINE_integer("eval_interval", 1000, "Env steps between evaluations in threshold runs.")
_MAX_STEPS = flags.DEFINE_integer("max_env_steps", 60_000, "Give up on a threshold run after this many env steps.")
_TIME_LIMIT = flags.DEFINE_float("time_limit_s", 600.0, "Kill a threshold run after this many seconds.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/sac", "Output path stem (.md, .json).")
_RENDER_ONLY = flags.DEFINE_boolean("render_only", False, "Re-write the markdown from the saved JSON.")
_CHILD = flags.DEFINE_string("child", None, "Internal: run one training from this JSON spec and print the result.")

THRESHOLDS = {"cartpole_balance": 900.0, "pendulum_swingup": 700.0}
BUDGET_S = 300.0  # issue 3: within 5 minutes wall-clock including compilation
TARGET_SEEDS = 3  # issue 3: report 3 seeds
TARGET_UTDS = (1, 4, 16)  # issue 3: env steps to threshold vs utd_ratio
TARGET_NUM_ENVS = (1, 16, 128)  # issue 3: on-device loop throughput


def _config(spec: dict):
    from robojax.agents.sac.config import SACConfig, TrainConfig

    sac = dataclasses.replace(SACConfig(), **spec.get("sac", {}))
    return dataclasses.replace(TrainConfig(), **{k: v for k, v in spec.items() if k != "sac"}, sac=sac)


def _host_config(spec: dict):
    from robojax.agents.sac.config import HOST_SAC_DEFAULTS, HostTrainConfig

    sac = dataclasses.replace(HOST_SAC_DEFAULTS, **spec.get("sac", {}))
    return dataclasses.replace(
        HostTrainConfig(), **{k: v for k, v in spec.items() if k not in ("sac", "host")}, sac=sac
    )


def run_child(spec: dict) -> None:
    """One training run in this (fresh) process; prints a JSON line with the learning curve."""
    import jax

    jax.config.update("jax_enable_compilation_cache", False)  # count all compilation
    if spec.get("host"):
        from robojax.agents.sac import host_loop

        train_start = time.time()
        result = host_loop.train(_host_config(spec))
        print(
            "RESULT "
            + json.dumps(
                {
                    "train_start_unix": train_start,
                    "first_iteration_s": 0.0,
                    "env_steps": result.steps,
                    "updates": result.updates,
                    "wall_s": result.wall_s,
                    "evals": [(e["env_steps"], e["wall_s"], e["eval/return"]) for e in result.eval_history],
                }
            ),
            flush=True,
        )
        return
    from robojax.agents.sac.train import train

    train_start = time.time()
    result = train(_config(spec))
    print(
        "RESULT "
        + json.dumps(
            {
                "train_start_unix": train_start,
                "first_iteration_s": result.first_iteration_s,
                "env_steps": result.steps,
                "wall_s": result.wall_s,
                "evals": [(e["env_steps"], e["wall_s"], e["eval/return"]) for e in result.eval_history],
            }
        ),
        flush=True,
    )


def threshold_run(env: str, seed: int, threshold: float, sac: dict | None = None, host: bool = False) -> dict:
    """Launch a fresh process, train until an evaluation reaches `threshold`, report when it did."""
    spec = {
        "env": env,
        "seed": seed,
        "total_env_steps": _GYM_MAX_STEPS.value if host else _MAX_STEPS.value,
        "eval_interval": _EVAL_INTERVAL.value,
        "target_eval_return": threshold,
        "progress_bar": False,
        "sac": sac or {},
    }
    if host:
        spec["host"] = True
    launch = time.time()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.sac", f"--child={json.dumps(spec)}"],
            capture_output=True,
            text=True,
            timeout=_TIME_LIMIT.value,
            env={**os.environ, "JAX_PLATFORMS": "cpu"},
        )
        lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        if proc.returncode or not lines:
            raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr[-2000:]}")
        out = json.loads(lines[-1][len("RESULT ") :])
    except subprocess.TimeoutExpired:
        return {
            "env": env,
            "seed": seed,
            "sac": sac or {},
            "threshold": threshold,
            "reached": False,
            "timed_out": True,
            "process_wall_s": time.time() - launch,
        }
    startup_s = out["train_start_unix"] - launch  # interpreter start and imports
    hit = next(((s, w, r) for s, w, r in out["evals"] if r >= threshold), None)
    row = {
        "env": env,
        "seed": seed,
        "sac": sac or {},
        "threshold": threshold,
        "reached": hit is not None,
        "env_steps_to_threshold": hit[0] if hit else None,
        "seconds_to_threshold": startup_s + hit[1] if hit else None,
        "return_at_threshold": hit[2] if hit else None,
        "best_return": max(r for _, _, r in out["evals"]),
        "startup_s": startup_s,
        "first_iteration_s": out["first_iteration_s"],
        "env_steps": out["env_steps"],
        "updates": out.get("updates"),
        "process_wall_s": time.time() - launch,
        "evals": out["evals"],
    }
    print(
        f"  {env} seed {seed} {sac or ''}: "
        + (
            f"{row['return_at_threshold']:.0f} at {row['env_steps_to_threshold']:,d} steps,"
            f" {row['seconds_to_threshold']:.0f} s"
            if hit
            else f"not reached (best {row['best_return']:.0f} in {out['env_steps']:,d} steps)"
        ),
        flush=True,
    )
    return row


def throughput(num_envs: int, iterations: int = 3) -> dict:
    """Env steps/s and gradient updates/s of the compiled iteration, and of collection alone."""
    import jax

    from robojax.agents.sac import train as sac_train

    base = _config({"env": "cartpole_balance"})
    steps = max(8, 2000 // num_envs)
    rows = {}
    for phase, learning_starts in (("train", 0), ("collect", 10**9)):
        config = dataclasses.replace(
            base, num_envs=num_envs, steps_per_iteration=steps, learning_starts=learning_starts
        )
        env = sac_train.default_env_factory(config.env, num_envs)
        state = jax.jit(sac_train.init_loop_state, static_argnums=(1, 2))(jax.random.PRNGKey(0), env, config)
        iteration = sac_train.make_iteration(env, config)
        t0 = time.perf_counter()
        state, metrics = iteration(state)
        jax.block_until_ready(state)
        compile_s = time.perf_counter() - t0
        times = []
        for _ in range(iterations):
            t0 = time.perf_counter()
            state, metrics = iteration(state)
            jax.block_until_ready(state)
            times.append(time.perf_counter() - t0)
        dt = statistics.median(times)
        rows[phase] = {
            "env_steps_per_s": num_envs * steps / dt,
            "critic_updates_per_s": (config.sac.utd_ratio * steps / dt) if phase == "train" else 0.0,
            "actor_updates_per_s": (steps / dt) if phase == "train" else 0.0,
            "first_call_s": compile_s,
            "iteration_s": dt,
        }
    row = {
        "num_envs": num_envs,
        "steps_per_iteration": steps,
        "utd_ratio": base.sac.utd_ratio,
        "batch_size": base.sac.batch_size,
        **{f"{p}_{k}": v for p, r in rows.items() for k, v in r.items()},
    }
    print(
        f"  num_envs {num_envs:4d}: {row['train_env_steps_per_s']:,.0f} env steps/s,"
        f" {row['train_critic_updates_per_s']:,.0f} critic updates/s; collection alone"
        f" {row['collect_env_steps_per_s']:,.0f} env steps/s",
        flush=True,
    )
    return row


def _summary(rows: list[dict]) -> dict:
    reached = [r for r in rows if r["reached"]]
    med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
    return {
        "runs": len(rows),
        "reached": len(reached),
        "within_budget": sum(r["seconds_to_threshold"] <= BUDGET_S for r in reached),
        "median_steps": med([r["env_steps_to_threshold"] for r in reached]),
        "median_seconds": med([r["seconds_to_threshold"] for r in reached]),
        "max_seconds": max((r["seconds_to_threshold"] for r in reached), default=None),
    }


def _fmt(value, spec=",.0f"):
    return "—" if value is None else format(value, spec)


def render_markdown(results: dict) -> list[str]:
    """The results as markdown tables (also used to re-render a saved JSON with --render_only)."""
    load_before, load_after = results["load_average_before_after"]
    d = results["defaults"]
    s = d["sac"]
    lines = [
        "# SAC benchmarks (issue 3)",
        "",
        f"Command: `{results['command']}`",
        "",
        f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, backend"
        f" {results['machine']['backend']}; jax {results['machine']['jax']}. Load average before/after:"
        f" {load_before[0]:.1f} / {load_after[0]:.1f} (the machine is shared, so"
        " wall-clock figures are noisy and pessimistic).",
        f"Defaults: num_envs {d['num_envs']}, utd_ratio {s['utd_ratio']}, batch {s['batch_size']}, critics"
        f" {s['critic_ensemble_size']} (subset {s['critic_subset_size']}), widths {s['critic_hidden_dims']},"
        f" lr {s['critic_lr']}, tau {s['tau']}, learning_starts {d['learning_starts']}.",
        "",
    ]
    if "time_to_threshold" in results:
        lines += [
            f"## Time to threshold (fresh process, no compile cache; eval every {results['eval_interval']} steps,"
            f" {d['eval_episodes']} episodes; budget {BUDGET_S:.0f} s)",
            "",
            "| task | threshold | seed | env steps to threshold | seconds to threshold"
            " | start-up + first iteration s | eval return then |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results["time_to_threshold"]:
            lines.append(
                f"| {r['env']} | {r['threshold']:.0f} | {r['seed']} | {_fmt(r.get('env_steps_to_threshold'))}"
                f" | {_fmt(r.get('seconds_to_threshold'))}"
                f" | {_fmt(r.get('startup_s', 0) + r.get('first_iteration_s', 0))}"
                f" | {_fmt(r.get('best_return'))} |"
            )
        lines += [
            "",
            "Runs stop at the first evaluation at or above the threshold; seconds count from process launch.",
        ]
        lines += [
            "",
            "| task | reached | within 5 min | median steps | median s | worst s |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for env in THRESHOLDS:
            sm = _summary([r for r in results["time_to_threshold"] if r["env"] == env and "best_return" in r])
            lines.append(
                f"| {env} | {sm['reached']}/{len(results['seeds'])} | {sm['within_budget']}/{len(results['seeds'])}"
                f" | {_fmt(sm['median_steps'])} | {_fmt(sm['median_seconds'])} | {_fmt(sm['max_seconds'])} |"
            )
        lines.append("")
    if "utd" in results:
        lines += [
            "## Env steps to threshold vs utd_ratio (cartpole_balance, eval >= 900)",
            "",
            "| utd_ratio | seed | env steps to threshold | seconds to threshold | eval return then |",
            "|---:|---:|---:|---:|---:|",
        ]
        for r in results["utd"]:
            lines.append(
                f"| {r['sac']['utd_ratio']} | {r['seed']} | {_fmt(r.get('env_steps_to_threshold'))}"
                f" | {_fmt(r.get('seconds_to_threshold'))} | {_fmt(r.get('best_return'))} |"
            )
        lines.append("")
    if "throughput" in results:
        lines += [
            "## On-device loop throughput (cartpole_balance, compiled iteration, median of 3 calls)",
            "",
            "utd_ratio counts critic updates per step of the vectorised env, so with N envs one update step"
            " serves N transitions: gradient updates/s stay flat while env steps/s grow with N. Collection"
            " alone is the same iteration during warm-up (random actions, no updates).",
            "",
            "| num_envs | env steps/s | critic updates/s | actor updates/s | collection-only env steps/s"
            " | first call (compile) s |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results["throughput"]:
            lines.append(
                f"| {r['num_envs']} | {r['train_env_steps_per_s']:,.0f} | {r['train_critic_updates_per_s']:,.0f}"
                f" | {r['train_actor_updates_per_s']:,.0f} | {r['collect_env_steps_per_s']:,.0f}"
                f" | {r['train_first_call_s']:.1f} |"
            )
        lines.append("")
    if "gym" in results:
        g = results["gym"]
        hs = g["defaults"]["sac"]
        lines += [
            f"## Gymnasium {g['env']} through the host actor/learner loop (eval return >= {g['threshold']:.0f})",
            "",
            f"Command: `{g['command']}`. Threaded actor (CPU act, jitted) and learner in one process;"
            f" `HostTrainConfig` defaults: utd_ratio {hs['utd_ratio']}, batch {hs['batch_size']}, widths"
            f" {hs['critic_hidden_dims']}, critics {hs['critic_ensemble_size']}, learning_starts"
            f" {g['defaults']['learning_starts']}, publish every {g['defaults']['publish_interval']} updates,"
            f" actor lead <= {g['defaults']['max_actor_lead']} steps; eval every {g['eval_interval']} steps,"
            f" {g['defaults']['eval_episodes']} episodes, deterministic policy. Seconds count from process"
            " launch (imports and all compilation included, no compile cache).",
            "",
            "| seed | env steps to threshold | seconds to threshold | learner updates at stop | eval return then |",
            "|---:|---:|---:|---:|---:|",
        ]
        for r in g["rows"]:
            lines.append(
                f"| {r['seed']} | {_fmt(r.get('env_steps_to_threshold'))} | {_fmt(r.get('seconds_to_threshold'))}"
                f" | {_fmt(r.get('updates'))} | {_fmt(r.get('best_return'))} |"
            )
        lines.append("")
    if "targets" in results:
        lines += [*targets_table(results["targets"]), ""]
    return lines


def _threshold_target(rows: list[dict], env: str, threshold: float) -> dict:
    goal = (
        f"{env} eval return >= {threshold:.0f} within {BUDGET_S:.0f} s wall-clock on 2 CPU cores, compilation"
        f" included, {TARGET_SEEDS} seeds (measured: the slowest seed's seconds to threshold)"
    )
    rows = [r for r in rows if r["env"] == env]
    if not rows:
        return missing(goal, "no time-to-threshold runs of this task in the results")
    reached = [r for r in rows if r.get("reached")]
    note = (
        f"{len(reached)}/{len(rows)} seeds reached it; env steps "
        + "/".join(_fmt(r.get("env_steps_to_threshold")) for r in rows)
        + ", seconds "
        + "/".join(_fmt(r.get("seconds_to_threshold")) for r in rows)
    )
    if len(reached) < len(rows):
        return target(None, goal, False, note)
    worst = max(r["seconds_to_threshold"] for r in rows)
    return target(worst, goal, len(rows) >= TARGET_SEEDS and worst <= BUDGET_S, note)


def targets(results: dict) -> dict:
    """Issue 3's targets block from the saved results (see benchmarks/targets.py)."""
    out = {
        f"{env}_{threshold:.0f}_within_5_min": _threshold_target(results.get("time_to_threshold", []), env, threshold)
        for env, threshold in THRESHOLDS.items()
    }
    for utd in TARGET_UTDS:
        goal = f"reported: env steps to eval return >= 900 on cartpole_balance at utd_ratio {utd} (median over seeds)"
        rows = [r for r in results.get("utd", []) if r["sac"].get("utd_ratio") == utd]
        reached = [r["env_steps_to_threshold"] for r in rows if r.get("reached")]
        if not rows:
            out[f"utd_{utd}_env_steps_to_900"] = missing(goal, "utd_ratio not in the sweep's results")
        else:
            out[f"utd_{utd}_env_steps_to_900"] = target(
                statistics.median(reached) if len(reached) == len(rows) else None,
                goal,
                len(reached) == len(rows),
                f"{len(reached)}/{len(rows)} seeds reached 900",
            )
    gym = results.get("gym")
    goal = "gymnasium InvertedPendulum-v5 solved (eval return 1000) through the host actor/learner loop"
    if not gym or not gym.get("rows"):
        out["gym_inverted_pendulum_solved"] = missing(goal, "no host-loop runs in the results")
    else:
        rows = gym["rows"]
        solved = [
            r for r in rows if r.get("reached") and gym["env"] == "InvertedPendulum-v5" and gym["threshold"] >= 1000
        ]
        best = [r["best_return"] for r in rows if "best_return" in r]  # a timed-out run has none
        out["gym_inverted_pendulum_solved"] = target(
            min(best) if len(best) == len(rows) else None,
            goal,
            len(solved) == len(rows),
            f"lowest best eval return over {len(rows)} seeds; {len(solved)}/{len(rows)} reached 1000, at env steps "
            + "/".join(_fmt(r.get("env_steps_to_threshold")) for r in rows),
        )
    by_envs = {r["num_envs"]: r for r in results.get("throughput", [])}
    for n in TARGET_NUM_ENVS:
        goal = f"reported: env steps/s and gradient updates/s of the on-device loop at num_envs {n}"
        if n not in by_envs:
            out[f"throughput_num_envs_{n}"] = missing(goal, f"num_envs {n} not in the throughput results")
        else:
            r = by_envs[n]
            out[f"throughput_num_envs_{n}"] = target(
                r["train_env_steps_per_s"],
                goal,
                True,
                f"env steps/s; {r['train_critic_updates_per_s']:,.0f} critic and {r['train_actor_updates_per_s']:,.0f}"
                " actor updates/s",
            )
    return out


def _migrate(results: dict) -> dict:
    """Results saved before the targets block held the time-to-threshold runs under "targets"."""
    if isinstance(results.get("targets"), list):
        results["time_to_threshold"] = results.pop("targets")
    return results


def _write(results: dict) -> None:
    """Add the targets block, then write the JSON and the markdown rendered from it."""
    results["targets"] = targets(results)
    lines = render_markdown(results)
    write_report(_OUT.value, results, lines)


def main(argv):
    del argv
    if _CHILD.value:
        run_child(json.loads(_CHILD.value))
        return
    if _RENDER_ONLY.value:
        with open(_OUT.value + ".json") as f:
            results = _migrate(json.load(f))
        results.setdefault("eval_interval", _EVAL_INTERVAL.value)
        results.setdefault("seeds", [int(seed) for seed in _SEEDS.value])
        _write(results)
        return
    from robojax.agents.sac.config import TrainConfig

    command = "python -m " + " ".join(["benchmarks.sac"] + sys.argv[1:])
    previous = {}
    if os.path.exists(_OUT.value + ".json"):
        with open(_OUT.value + ".json") as f:
            previous = _migrate(json.load(f))
    device_parts = [p for p in _PARTS.value if p != "gym"]
    if device_parts or not previous:
        results: dict = {
            **{k: v for k, v in previous.items() if k in ("time_to_threshold", "utd", "throughput", "gym")},
            "command": command,
            "machine": machine_info(),
            "defaults": dataclasses.asdict(TrainConfig()),
            "eval_interval": _EVAL_INTERVAL.value,
            "seeds": [int(seed) for seed in _SEEDS.value],
        }
    else:
        results = previous  # only the gym part: keep the rest as it was
    load_before = os.getloadavg()
    if "gym" in _PARTS.value:
        from robojax.agents.sac.config import HostTrainConfig

        print(f"host loop on gymnasium {_GYM_ENV.value}:", flush=True)
        results["gym"] = {
            "command": command,
            "machine": machine_info(),
            "env": _GYM_ENV.value,
            "threshold": _GYM_THRESHOLD.value,
            "eval_interval": _EVAL_INTERVAL.value,
            "defaults": dataclasses.asdict(HostTrainConfig()),
            "rows": [
                threshold_run(_GYM_ENV.value, int(seed), _GYM_THRESHOLD.value, host=True) for seed in _SEEDS.value
            ],
            "load_average_before_after": [load_before, os.getloadavg()],
        }
        if not device_parts:
            _write(results)
            return
    if "targets" in _PARTS.value:
        print("time to threshold, default config:", flush=True)
        results["time_to_threshold"] = [
            threshold_run(env, int(seed), threshold) for env, threshold in THRESHOLDS.items() for seed in _SEEDS.value
        ]
    if "utd" in _PARTS.value:
        print("env steps to threshold vs utd_ratio (cartpole_balance):", flush=True)
        results["utd"] = [
            threshold_run("cartpole_balance", int(seed), THRESHOLDS["cartpole_balance"], {"utd_ratio": int(utd)})
            for utd in _UTDS.value
            for seed in _UTD_SEEDS.value
        ]
    if "throughput" in _PARTS.value:
        import jax

        jax.config.update("jax_enable_compilation_cache", False)
        print("on-device loop throughput (cartpole_balance):", flush=True)
        results["throughput"] = [throughput(int(n)) for n in _NUM_ENVS.value]
    results["load_average_before_after"] = [load_before, os.getloadavg()]

    _write(results)


if __name__ == "__main__":
    app.run(main)
