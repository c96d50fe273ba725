"""Deployment latency (issue 6): exported SAC actor, loopback robot round trip, a 100 Hz control loop.

    python -m benchmarks.deploy                                        # random-init default-size actor
    python -m benchmarks.deploy --checkpoint=runs/sac_arm_reach        # the actor of a real SAC run

compute:   the exported SAC actor (jax.export artifact, loaded by robojax.deploy.load) called at
           batch 1 on the CPU, `--calls` times, one observation at a time through `DeployedPolicy`
           (shape/NaN checks, call, finite check and clip included): p50/p99/max per call.
roundtrip: `experiments.sim_robot_server` (arm_reach, real time) in its own process; back-to-back
           STATE and COMMAND requests over loopback TCP from `RobotClient`: p50/p99/max.
loop:      `robojax.deploy.Controller` at `--rate_hz` for `--loop_s` seconds against that server
           (read state, run the policy, send the command, every tick): deadline misses and latency
           percentiles (max_missed is set beyond reach, so every miss is counted, not acted on).
With `--realtime_priority=N` the round-trip and loop parts run a second time with the client/controller
thread and the server process under SCHED_FIFO priority N (Linux, root or CAP_SYS_NICE), as a real
controller would run; the default-scheduling figures are always measured too.
Targets (issue 6): compute p99 < 1 ms; round trip p99 < 2 ms; 100 Hz held 60 s with 0 misses, on
an idle machine (the load average before and after is recorded with the results).
The checkpoint used for the recorded results came from
    python -m experiments.train_sac --env=arm_reach --total_env_steps=3000 --learning_starts=1000 \
        --eval_interval=3000 --eval_episodes=2 --steps_per_iteration=500 --workdir=runs/sac_arm_reach_short
Writes benchmarks/results/deploy.md and deploy.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

import robojax  # noqa: F401  (XLA CPU flags before JAX initialises)
from benchmarks.machine import machine_info
from benchmarks.targets import missing, target, targets_table

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "SAC run/policy/checkpoint dir (default: a random-init actor).")
_CALLS = flags.DEFINE_integer("calls", 20_000, "Policy calls for the compute part.")
_RTT_CALLS = flags.DEFINE_integer("rtt_calls", 5_000, "Requests of each kind for the round-trip part.")
_RATE = flags.DEFINE_float("rate_hz", 100.0, "Control rate of the loop part.")
_LOOP_S = flags.DEFINE_float("loop_s", 60.0, "Duration of the loop part in seconds.")
_LOOP_TIMEOUT_MS = flags.DEFINE_float(
    "loop_timeout_ms",
    100.0,
    "Robot call timeout in the loop part: long, so a slow reply is counted as a missed deadline instead of"
    " ending the run (run_controller's default is half a period, which stops the robot instead).",
)
_RT_PRIORITY = flags.DEFINE_integer(
    "realtime_priority",
    0,
    "> 0: also run the loop part with the controller thread and the sim server under SCHED_FIFO at this"
    " priority (needs root or CAP_SYS_NICE); the plain run is always measured.",
)
_PARTS = flags.DEFINE_list("parts", ["compute", "roundtrip", "loop"], "Which parts to run.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/deploy", "Output path stem (.md, .json).")

TARGETS = {"compute_p99_ms": 1.0, "roundtrip_p99_ms": 2.0, "loop_misses": 0}
TARGET_LOOP = (100.0, 60.0)  # issue 6: a 100 Hz loop held for 60 s
# Issue 6's fault-survival targets are tests, not figures of this benchmark.
FAULT_TESTS = {
    "fault_server_killed_mid_run": "tests/deploy/test_faults.py::test_server_killed_then_restarted",
    "fault_server_restarted_reconnects": "tests/drivers/test_robot_env.py::test_server_killed_then_restarted_reconnects_on_reset",
    "fault_1000_fuzzed_messages": "tests/drivers/test_server.py::test_fuzzed_messages_get_error_replies_and_server_survives",
    "fault_wrong_token_rejected": "tests/drivers/test_server.py::test_wrong_or_missing_token_rejected",
}
FAULT_GOALS = {
    "fault_server_killed_mid_run": "server killed mid-run: the controller detects it within 2 periods, sends nothing"
    " further, exits non-zero with a clear message, and the episode log is readable",
    "fault_server_restarted_reconnects": "server restarted: the driver reconnects on the next reset",
    "fault_1000_fuzzed_messages": "1000 fuzzed malformed messages: the server answers errors and stays up",
    "fault_wrong_token_rejected": "a wrong token is rejected",
}


def _percentiles(samples_ms) -> dict:
    import numpy as np

    x = np.asarray(samples_ms, np.float64)
    p50, p90, p99, p999 = np.percentile(x, [50, 90, 99, 99.9])
    return {
        "n": int(x.size),
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "p99.9_ms": float(p999),
        "max_ms": float(x.max()),
        "mean_ms": float(x.mean()),
    }


def make_artifact(out_dir: str) -> dict:
    """Export the SAC actor (from --checkpoint, or random-init at the default SACConfig size) for arm_reach."""
    import jax
    import numpy as np

    from robojax.agents.sac import learner
    from robojax.agents.sac.config import SACConfig
    from robojax.agents.sac.export import export_sac, load_sac_source, source_from_train_state
    from robojax.envs.core import ArraySpec

    if _CHECKPOINT.value:
        source = load_sac_source(_CHECKPOINT.value)
        desc = f"trained SAC actor from {_CHECKPOINT.value} (env {source.env}, step {source.step or 'final'})"
    else:
        obs_spec = ArraySpec((24,), np.float32, name="observation")  # arm_reach's spaces
        act_spec = ArraySpec((3,), np.float32, -1.0, 1.0, name="action")
        state = learner.init(jax.random.PRNGKey(0), obs_spec, act_spec, SACConfig())
        source = source_from_train_state(state, obs_spec, act_spec, "arm_reach")
        desc = "random-init SAC actor, default SACConfig size (latency does not depend on the weights)"
    path = export_sac(source, out_dir, control_dt=0.04)
    cfg = source.config
    return {
        "artifact": path,
        "policy": desc,
        "actor_hidden_dims": list(cfg.actor_hidden_dims),
        "layer_norm": cfg.use_layer_norm,
        "normalize_observations": cfg.normalize_observations,
        "env": source.env,
        "artifact_bytes": os.path.getsize(os.path.join(path, "policy_step.jax")),
    }


def bench_compute(artifact: str, calls: int) -> dict:
    import numpy as np

    import robojax.deploy as deploy

    t = time.perf_counter()
    policy = deploy.load(artifact)
    load_s = time.perf_counter() - t
    obs = np.random.default_rng(0).normal(size=(calls, *policy.observation_spec.shape)).astype(np.float32)
    for o in obs[:500]:  # warm caches
        policy(o)
    samples = np.empty(calls)
    for i, o in enumerate(obs):
        t0 = time.perf_counter()
        policy(o)
        samples[i] = time.perf_counter() - t0
    return {"load_s": load_s, **_percentiles(samples * 1e3)}


def start_server(realtime_priority: int = 0):
    def fifo():
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(realtime_priority))

    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.sim_robot_server", "--task=arm_reach", "--port=0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=fifo if realtime_priority else None,
    )
    line = proc.stdout.readline()
    if "server at" not in line:
        proc.kill()
        raise RuntimeError(f"sim robot server did not start: {line!r} {proc.stderr.read()[-2000:]}")
    return proc, line.split("server at", 1)[1].split()[0]


def bench_roundtrip(address: str, calls: int) -> dict:
    import numpy as np

    from robojax.drivers.client import RobotClient

    with RobotClient(address, timeout_s=1.0) as client:
        client.reset(seed=0, timeout_s=5.0)
        for _ in range(200):
            client.state()
        state_ms, command_ms = np.empty(calls), np.empty(calls)
        action = np.zeros(3, np.float32)
        for i in range(calls):
            t0 = time.perf_counter()
            client.state()
            t1 = time.perf_counter()
            client.command(action)
            t2 = time.perf_counter()
            state_ms[i], command_ms[i] = t1 - t0, t2 - t1
        client.stop()
    return {"state": _percentiles(state_ms * 1e3), "command": _percentiles(command_ms * 1e3)}


def bench_loop(
    artifact: str, address: str, rate_hz: float, seconds: float, timeout_s: float, realtime_priority: int = 0
) -> dict:
    import dataclasses

    import robojax.deploy as deploy
    from robojax.deploy.controller import Controller, ControllerConfig
    from robojax.drivers.client import RobotClient

    policy = deploy.load(artifact)
    steps = int(round(rate_hz * seconds))
    config = ControllerConfig(
        rate_hz=rate_hz, episodes=1, episode_steps=steps, max_missed=10**9, realtime_priority=realtime_priority
    )
    with RobotClient(address, timeout_s=timeout_s) as client:
        report = Controller(policy, client, config).run()
    out = {
        "rate_hz": rate_hz,
        "seconds": seconds,
        "call_timeout_s": timeout_s,
        "realtime_priority": realtime_priority,
        "steps": report.steps,
        "deadline_misses": report.deadline_misses,
        "end_reason": report.end_reason,
        "fault": report.fault,
        "wall_s": report.wall_s,
        "latency": {k: dataclasses.asdict(v) for k, v in report.latency.items()},
    }
    print(report.table(), flush=True)
    return out


def _load() -> list[float]:
    return list(os.getloadavg())


def targets(results: dict) -> dict:
    """Issue 6's targets block from the saved results (see benchmarks/targets.py)."""
    out = {}
    goal = f"exported SAC actor at batch 1 on CPU: p99 compute latency < {TARGETS['compute_p99_ms']:g} ms"
    if "compute" in results:
        p99 = results["compute"]["p99_ms"]
        out["compute_p99_ms"] = target(p99, goal, p99 < TARGETS["compute_p99_ms"], f"{results['compute']['n']:,} calls")
    else:
        out["compute_p99_ms"] = missing(goal, "the compute part was not run")
    goal = (
        f"loopback round trip to the sim server: p99 < {TARGETS['roundtrip_p99_ms']:g} ms"
        " (measured: the slower of STATE and COMMAND, default scheduling)"
    )
    if "roundtrip" in results:
        r = results["roundtrip"]
        p99 = max(r["state"]["p99_ms"], r["command"]["p99_ms"])
        out["roundtrip_p99_ms"] = target(
            p99,
            goal,
            p99 < TARGETS["roundtrip_p99_ms"],
            f"STATE p99 {r['state']['p99_ms']:.3f} ms, COMMAND p99 {r['command']['p99_ms']:.3f} ms",
        )
    else:
        out["roundtrip_p99_ms"] = missing(goal, "the roundtrip part was not run")
    rate, seconds = TARGET_LOOP
    goal = (
        f"a {rate:g} Hz control loop holds for {seconds:g} s with no deadline miss on an idle machine"
        " (measured: deadline misses, default scheduling)"
    )
    if "loop" in results:
        lp = results["loop"]
        held = lp["rate_hz"] == rate and lp["steps"] >= rate * seconds and lp["end_reason"] == "completed"
        load = max(results["load_before"][0], results["load_after"][0])
        out["loop_100_hz_60_s_no_miss"] = target(
            lp["deadline_misses"],
            goal,
            held and lp["deadline_misses"] <= TARGETS["loop_misses"],
            f"{lp['steps']:,} steps at {lp['rate_hz']:g} Hz, ended {lp['end_reason']}; 1-min load average up to"
            f" {load:.1f} on {results['machine'].get('cores')} cores",
        )
    else:
        out["loop_100_hz_60_s_no_miss"] = missing(goal, "the loop part was not run")
    for name, test in FAULT_TESTS.items():
        out[name] = missing(
            FAULT_GOALS[name],
            f"checked by the test {test}, which a benchmark run does not execute;"
            " its pass/fail is in the test suite's output, not in these results",
        )
    return out


def render(results: dict) -> str:
    m = results["machine"]
    lines = [
        "# Deployment latency (issue 6)",
        "",
        f"Command: `{results['command']}`",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, backend {m['backend']}; jax {m['jax']}, python {m['python']}."
        f" Load average (1/5/15 min) before: {', '.join(f'{x:.1f}' for x in results['load_before'])};"
        f" after: {', '.join(f'{x:.1f}' for x in results['load_after'])}.",
        "",
        f"Policy: {results['policy']['policy']}; actor MLP {results['policy']['actor_hidden_dims']}"
        f" (LayerNorm {results['policy']['layer_norm']}), obs 24 -> action 3 (arm_reach);"
        f" artifact `policy_step.jax` {results['policy']['artifact_bytes']:,} bytes.",
        "",
        "| measurement | n | p50 ms | p99 ms | max ms | target | met |",
        "|---|---|---|---|---|---|---|",
    ]

    def row(name, s, target=None, met=None):
        t = "" if target is None else target
        ok = "" if met is None else ("yes" if met else "**no**")
        lines.append(
            f"| {name} | {s['n'] if 'n' in s else s['count']:,} | {s['p50_ms']:.3f} | {s['p99_ms']:.3f}"
            f" | {s['max_ms']:.3f} | {t} | {ok} |"
        )

    if "compute" in results:
        c = results["compute"]
        row("exported SAC actor, batch 1, CPU (DeployedPolicy call)", c, "p99 < 1 ms", c["p99_ms"] < 1.0)
    if "roundtrip" in results:
        r = results["roundtrip"]
        row("loopback STATE round trip (sim server process)", r["state"], "p99 < 2 ms", r["state"]["p99_ms"] < 2.0)
        row("loopback COMMAND round trip", r["command"], "p99 < 2 ms", r["command"]["p99_ms"] < 2.0)
    if "roundtrip_fifo" in results:
        r = results["roundtrip_fifo"]
        row(
            "loopback STATE round trip, SCHED_FIFO client and server",
            r["state"],
            "p99 < 2 ms",
            r["state"]["p99_ms"] < 2.0,
        )
        row(
            "loopback COMMAND round trip, SCHED_FIFO client and server",
            r["command"],
            "p99 < 2 ms",
            r["command"]["p99_ms"] < 2.0,
        )
    loops = [(k, results[k]) for k in ("loop", "loop_fifo") if k in results]
    for key, lp in loops:
        lat = lp["latency"]
        sched = f"SCHED_FIFO {lp['realtime_priority']}" if lp.get("realtime_priority") else "default scheduling"
        names = {
            "compute": "policy compute",
            "roundtrip": "state round trip",
            "command": "command round trip",
            "step": "whole step (read+policy+command)",
            "wakeup": "tick start lateness (sleep+spin jitter)",
        }
        for name, label in names.items():
            if name in lat:
                row(f"loop {lp['rate_hz']:g} Hz, {sched}: {label}", lat[name])
    for key, lp in loops:
        sched = (
            f"SCHED_FIFO priority {lp['realtime_priority']} (controller thread and server)"
            if lp.get("realtime_priority")
            else "default scheduling"
        )
        lines += [
            "",
            f"Control loop, {sched}: {lp['rate_hz']:g} Hz for {lp['seconds']:g} s against the sim server:"
            f" {lp['steps']:,} steps, **{lp['deadline_misses']} deadline misses** (target 0:"
            f" {'met' if lp['deadline_misses'] == 0 else 'not met'}); ended: {lp['end_reason']}"
            f"{'' if not lp['fault'] else ' - ' + lp['fault']}.",
        ]
    if "compute" in results:
        lines += ["", f"Artifact load (validate, deserialise, compile, warm-up): {results['compute']['load_s']:.2f} s."]
    cores = m.get("cores") or 1
    if max(results["load_before"][0], results["load_after"][0]) > 0.5 * cores:
        lines += [
            "",
            f"Note: the machine was not idle (load average up to"
            f" {max(results['load_before'][0], results['load_after'][0]):.1f} on {cores} cores, shared with"
            " other jobs): tail latencies and deadline misses reflect that contention; the issue's targets"
            " assume an idle machine.",
        ]
    if results.get("notes"):
        lines += ["", *[f"Note: {n}" for n in results["notes"]]]
    if "targets" in results:
        lines += ["", *targets_table(results["targets"])]
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    import jax

    # As experiments.run_controller does: synchronous CPU dispatch halves batch-1 call overhead
    # (openxla/xla#18608; measured here p50 ~65 us async vs ~30 us sync). Set before any computation.
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    command = "python -m " + " ".join(["benchmarks.deploy"] + sys.argv[1:])
    results: dict = {
        "command": command,
        "machine": machine_info(),
        "load_before": _load(),
        "jax_cpu_enable_async_dispatch": False,
    }
    with tempfile.TemporaryDirectory() as tmp:
        results["policy"] = make_artifact(os.path.join(tmp, "sac"))
        artifact = results["policy"]["artifact"]
        print(f"policy: {results['policy']['policy']}", flush=True)
        if "compute" in _PARTS.value:
            results["compute"] = bench_compute(artifact, _CALLS.value)
            print("compute", json.dumps(results["compute"]), flush=True)
        if {"roundtrip", "loop"} & set(_PARTS.value):
            server, address = start_server()
            try:
                if "roundtrip" in _PARTS.value:
                    results["roundtrip"] = bench_roundtrip(address, _RTT_CALLS.value)
                    print("roundtrip", json.dumps(results["roundtrip"]), flush=True)
                if "loop" in _PARTS.value:
                    results["loop"] = bench_loop(
                        artifact, address, _RATE.value, _LOOP_S.value, _LOOP_TIMEOUT_MS.value / 1e3
                    )
            finally:
                server.terminate()
                server.wait(10)
        if "loop" in _PARTS.value and _RT_PRIORITY.value:
            server, address = start_server(_RT_PRIORITY.value)
            try:
                if "roundtrip" in _PARTS.value:
                    previous = (os.sched_getscheduler(0), os.sched_getparam(0))
                    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(_RT_PRIORITY.value))
                    try:
                        results["roundtrip_fifo"] = bench_roundtrip(address, _RTT_CALLS.value)
                    finally:
                        os.sched_setscheduler(0, *previous)
                    print("roundtrip_fifo", json.dumps(results["roundtrip_fifo"]), flush=True)
                results["loop_fifo"] = bench_loop(
                    artifact, address, _RATE.value, _LOOP_S.value, _LOOP_TIMEOUT_MS.value / 1e3, _RT_PRIORITY.value
                )
            finally:
                server.terminate()
                server.wait(10)
    results["load_after"] = _load()
    results["policy"].pop("artifact")
    results["targets"] = targets(results)
    os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
    with open(_OUT.value + ".json", "w") as f:
        json.dump(results, f, indent=1)
    with open(_OUT.value + ".md", "w") as f:
        f.write(render(results))
    print(render(results))


if __name__ == "__main__":
    app.run(main)
