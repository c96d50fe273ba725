"""SAC trained against a robot: the host actor/learner loop on `RobotEnv` over `SimRobotServer`.

    python -m benchmarks.deploy_train_sac                           # arm_reach, real_time_factor 8
    python -m benchmarks.deploy_train_sac --real_time_factor=4 --total_env_steps=10000

The way SERL trains on a real Franka, with the simulated arm standing in for it: two
`experiments.sim_robot_server` subprocesses (one robot collects, a second one evaluates, since
the host loop evaluates in its learner thread while the actor keeps stepping), each running the
C-MuJoCo arm_reach in real time sped up by `--real_time_factor`. SAC's threaded host loop
(`robojax.agents.sac.host_loop.train`, its default `HostTrainConfig` / `HOST_SAC_DEFAULTS` unless
flagged) drives `RobotEnv(address, autoreset=True)` over the protocol. Also records the loopback
round-trip time of a STATE request to the training server (`robojax.drivers.client.roundtrip_latency`)
before training. Writes benchmarks/results/deploy_train_sac.md and .json.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

from absl import app, flags

from benchmarks.machine import machine_info
from benchmarks.targets import missing, target, targets_table

_TASK = flags.DEFINE_enum("task", "arm_reach", ["arm_reach", "arm_push_cube"], "Simulated arm task.")
_RTF = flags.DEFINE_float("real_time_factor", 8.0, "Simulated seconds per wall second of both sim robots.")
_STEPS = flags.DEFINE_integer("total_env_steps", 20_000, "Env transitions to collect.")
_LEARNING_STARTS = flags.DEFINE_integer("learning_starts", 1_000, "Random-action transitions before updates.")
_EVAL_INTERVAL = flags.DEFINE_integer("eval_interval", 2_000, "Transitions between evaluations.")
_EVAL_EPISODES = flags.DEFINE_integer("eval_episodes", 5, "Evaluation episodes (on the second robot).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the run.")
_TIME_LIMIT = flags.DEFINE_float("time_limit_s", 900.0, "Stop collecting after this many seconds of training.")
_LATENCY_N = flags.DEFINE_integer("latency_n", 5000, "STATE round trips timed before training.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/deploy_train_sac", "Output path stem (.md, .json).")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn_server(task: str, rtf: float, seed: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "experiments.sim_robot_server",
            f"--task={task}",
            f"--port={_free_port()}",
            f"--real_time_factor={rtf}",
            f"--seed={seed}",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    match = re.search(r"at (tcp://\S+)", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"sim robot server did not start: {line!r}")
    return proc, match.group(1)


def main(argv):
    del argv
    import robojax  # noqa: F401
    from robojax.agents.sac import host_loop
    from robojax.agents.sac.config import HostTrainConfig
    from robojax.drivers.client import RobotClient, roundtrip_latency
    from robojax.drivers.robot_env import RobotEnv

    command = "python -m benchmarks.deploy_train_sac " + " ".join(sys.argv[1:])
    train_proc, train_addr = _spawn_server(_TASK.value, _RTF.value, 0)
    eval_proc, eval_addr = _spawn_server(_TASK.value, _RTF.value, 1)
    try:
        with RobotClient(train_addr, timeout_s=5.0) as client:
            client.reset(0)
            idle = roundtrip_latency(train_addr, _LATENCY_N.value)  # physics frozen after reset
            client.command([0.0] * client.info()["action_spec"]["shape"][0])
            running = roundtrip_latency(train_addr, _LATENCY_N.value)  # physics thread stepping
        print(f"loopback STATE round trip: idle {idle}, physics running {running}", flush=True)
        config = HostTrainConfig(
            env=f"sim_robot:{_TASK.value}",
            seed=_SEED.value,
            total_env_steps=_STEPS.value,
            learning_starts=_LEARNING_STARTS.value,
            eval_interval=_EVAL_INTERVAL.value,
            eval_episodes=_EVAL_EPISODES.value,
            log_interval=1_000,
            progress_bar=False,
        )
        start = time.time()

        def deadline_env(address):
            env = RobotEnv(address, autoreset=True, timeout_s=1.0)
            original = env.step

            def step(state, action):  # stop collecting at the time limit (raises in the actor)
                if time.time() - start > _TIME_LIMIT.value:
                    raise TimeoutError(f"time limit of {_TIME_LIMIT.value:.0f} s reached")
                return original(state, action)

            env.step = step
            return env

        error = None
        try:
            result = host_loop.train(
                config,
                env_factory=lambda: deadline_env(train_addr),
                eval_env_factory=lambda: RobotEnv(eval_addr, autoreset=True, timeout_s=1.0),
            )
            history, env_steps, updates, wall = result.eval_history, result.steps, result.updates, result.wall_s
        except host_loop.HostLoopError as e:
            error, history, env_steps, updates, wall = str(e).splitlines()[0], [], None, None, time.time() - start
    finally:
        for proc in (train_proc, eval_proc):
            proc.send_signal(signal.SIGTERM)
        for proc in (train_proc, eval_proc):
            try:
                proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    sim_seconds_per_step = 0.04
    record = {
        "command": command,
        "machine": machine_info(),
        "task": _TASK.value,
        "real_time_factor": _RTF.value,
        "config": dataclasses.asdict(config),
        "latency_idle": idle,
        "latency_running": running,
        "error": error,
        "env_steps": env_steps,
        "updates": updates,
        "train_wall_s": wall,
        "robot_time_s": env_steps * sim_seconds_per_step if env_steps else None,
        "evals": [
            {
                "env_steps": e["env_steps"],
                "wall_s": e["wall_s"],
                "return": e["eval/return"],
                "return_std": e["eval/return_std"],
                "success": e["eval/success"],
                "updates": e["updates"],
            }
            for e in history
        ],
    }
    record["targets"] = targets(record)
    os.makedirs(os.path.dirname(_OUT.value), exist_ok=True)
    tmp = _OUT.value + ".json.tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, _OUT.value + ".json")
    tmp = _OUT.value + ".md.tmp"
    with open(tmp, "w") as f:
        f.write(render(record))
    os.replace(tmp, _OUT.value + ".md")
    print(render(record))


def targets(r: dict) -> dict:
    """Issue 6's "training against a robot" target from the saved record (see benchmarks/targets.py)."""
    goal = (
        "SAC's host actor/learner loop trains on RobotEnv over the sim robot server end to end on arm_reach"
        " (measured: last eval return; met: the run finished its steps without error and eval return rose)"
    )
    if not r["evals"]:
        return {"sac_trains_against_robot": missing(goal, f"no evaluation recorded (error: {r['error']})")}
    first, last = r["evals"][0], r["evals"][-1]
    finished = r["error"] is None and (r["env_steps"] or 0) >= r["config"]["total_env_steps"]
    return {
        "sac_trains_against_robot": target(
            last["return"],
            goal,
            finished and r["task"] == "arm_reach" and last["return"] > first["return"],
            f"eval return {first['return']:.1f} at {first['env_steps']:,} steps -> {last['return']:.1f} at"
            f" {last['env_steps']:,}; eval success {last['success']:.2f}; {r['env_steps'] or 0:,} env steps,"
            f" error: {r['error'] or 'none'}",
        )
    }


def render(r: dict) -> str:
    m = r["machine"]
    lines = [
        "# SAC trained against a (simulated) robot over the robot protocol",
        "",
        f"Command: `{r['command']}`",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, jax {m['jax']} ({m['backend']}), mujoco {m['mujoco']},"
        f" python {m['python']}. Shared with other jobs during the run.",
        "",
        f"Task `{r['task']}` in `experiments.sim_robot_server` subprocesses (C MuJoCo) at real_time_factor"
        f" {r['real_time_factor']:g} (one robot collects, a second evaluates); SAC's threaded host loop"
        " (`host_loop.train`, default `HostTrainConfig`/`HOST_SAC_DEFAULTS`) on `RobotEnv(autoreset=True)`.",
        "",
    ]
    if r["error"]:
        lines += [f"Run ended early: {r['error']}", ""]
    if r["env_steps"]:
        lines += [
            f"{r['env_steps']:,} env steps ({r['robot_time_s'] / 60:.1f} min of robot time), {r['updates']:,}"
            f" learner updates, {r['train_wall_s']:.0f} s wall (including compilation).",
            "",
        ]
    lines += ["| env steps | wall s | eval return (mean ± std) | eval success |", "|---:|---:|---:|---:|"]
    for e in r["evals"]:
        lines.append(
            f"| {e['env_steps']:,} | {e['wall_s']:.0f} | {e['return']:.1f} ± {e['return_std']:.1f} | {e['success']:.2f} |"
        )
    lat = [("physics frozen", r["latency_idle"]), ("physics running", r["latency_running"])]
    lines += [
        "",
        "Loopback STATE round trip to the training server, before training (`roundtrip_latency`):",
        "",
        "| server state | n | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in lat:
        lines.append(
            f"| {name} | {s['n']} | {s['p50_ms']:.3f} | {s['p90_ms']:.3f} | {s['p99_ms']:.3f} | {s['max_ms']:.2f} |"
        )
    if "targets" in r:
        lines += ["", *targets_table(r["targets"])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    app.run(main)
