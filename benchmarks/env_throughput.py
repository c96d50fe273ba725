"""Env throughput: batched MJX steps/s per task vs the same model stepped by C MuJoCo.

    python -m benchmarks.env_throughput                      # all tasks, batch 1/64/1024/4096
    python -m benchmarks.env_throughput --tasks=cartpole_balance --batch_sizes=1,1024

For each task and batch size it jits one `lax.scan` of control steps of the full
training stack (time limit, episode statistics, vmap, autoreset) with uniform random actions,
reports compile time and the median steps/s over `--repeats` timed calls. The scan length is
chosen per task and batch (4 to 200 steps) so that one call lasts about `--seconds_per_call`. Beside it, the same
MJCF model stepped by C MuJoCo (`mujoco.mj_step`, one thread, same substeps per control step).
Writes a markdown table and JSON to benchmarks/results/.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from absl import app, flags

from benchmarks.machine import machine_info
from benchmarks.targets import missing, target, targets_table, write_report

_TASKS = flags.DEFINE_list("tasks", None, "Tasks to measure (default: all registered).")
_BATCH = flags.DEFINE_list("batch_sizes", ["1", "64", "1024", "4096"], "Batch sizes.")
_CALL_S = flags.DEFINE_float(
    "seconds_per_call", 0.5, "Target duration of one timed call; sets the scan length per task and batch."
)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per configuration (median reported).")
_C_SECONDS = flags.DEFINE_float("c_seconds", 2.0, "Seconds of C MuJoCo stepping per task.")
_MAX_BYTES = flags.DEFINE_float("max_state_gb", 6.0, "Skip batch sizes whose state exceeds this.")
# Every configuration runs in a child process with a timeout: with the implicitfast integrator, jaxlib
# 0.10.2's XLA:CPU deadlocked on batched arm steps (two batched LAPACK Cholesky kernels waiting on the
# same thread pool; see third_party_assets/panda_arm/README.md). The arm models now use Euler; the
# guard stays so that any such stall is recorded, not hung on.
_SKIP = flags.DEFINE_list("skip", [], "task:batch pairs not to measure.")
_TIMEOUT = flags.DEFINE_integer(
    "config_timeout_s", 300, "Each task/batch runs in a child process; give up on it after this long."
)
_CHILD = flags.DEFINE_string("child", None, "Internal: measure one 'task:batch:scan_steps' and print JSON.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/env_throughput", "Output path stem (.md, .json).")


def c_mujoco_steps_per_s(env, seconds: float) -> float:
    """Control steps/s of the task's C model, one thread, from its home/initial state."""
    import mujoco
    import numpy as np

    model = env.unwrapped.mj_model
    data = mujoco.MjData(model)
    if model.nkey:
        mujoco.mj_resetDataKeyframe(model, data, 0)
    n_sub = env.unwrapped.n_substeps
    rng = np.random.default_rng(0)
    lo, hi = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
    ctrls = rng.uniform(lo, hi, size=(1024, model.nu))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for i in range(256):
            data.ctrl[:] = ctrls[(steps + i) % 1024]
            mujoco.mj_step(model, data, nstep=n_sub)
        steps += 256
    loop_rate = steps / (time.perf_counter() - start)

    # The same stepping without the Python loop: mujoco.rollout runs mj_step in C, one thread.
    from mujoco import rollout

    nstep = 20000 * n_sub
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    state0 = np.empty(mujoco.mj_stateSize(model, spec))
    mujoco.mj_getState(model, data, state0, spec)
    controls = np.repeat(ctrls, nstep // 1024 + 1, axis=0)[:nstep][None]
    rollout.rollout(model, data, state0[None], controls[:, :100])  # warm-up
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        rollout.rollout(model, data, state0[None], controls)
        times.append(time.perf_counter() - t0)
    return loop_rate, 20000 / statistics.median(times)


def mjx_steps_per_s(name: str, batch: int, scan_steps: int, repeats: int) -> dict:
    import jax

    import envs

    env = envs.make(name, num_envs=batch)
    spec = env.action_spec

    @jax.jit
    def rollout(state, key):
        def body(s, k):
            a = jax.random.uniform(k, (batch,) + spec.shape, minval=spec.low, maxval=spec.high)
            s = env.step(s, a)
            return s, s.reward.mean()

        return jax.lax.scan(body, state, jax.random.split(key, scan_steps))

    state = jax.jit(env.reset)(jax.random.key(0))
    state_bytes = sum(x.nbytes for x in jax.tree.leaves(state) if hasattr(x, "nbytes"))
    t0 = time.perf_counter()
    compiled = rollout.lower(state, jax.random.key(1)).compile()
    compile_s = time.perf_counter() - t0
    state, _ = compiled(state, jax.random.key(1))  # warm-up
    jax.block_until_ready(state)
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        state, r = compiled(state, jax.random.key(2 + i))
        jax.block_until_ready((state, r))
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {
        "steps_per_s": batch * scan_steps / med,
        "compile_s": compile_s,
        "state_mb_per_env": state_bytes / batch / 1e6,
        "call_s_median": med,
        "scan_steps": scan_steps,
    }


def _measure_in_child(name: str, batch: int, scan_steps: int) -> dict | None:
    """One configuration in a fresh process, so a stalled XLA call cannot hang the whole table."""
    import subprocess

    cmd = [
        sys.executable,
        "-m",
        "benchmarks.env_throughput",
        f"--child={name}:{batch}:{scan_steps}",
        f"--repeats={_REPEATS.value}",
    ]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT.value, check=True).stdout
    except subprocess.TimeoutExpired:
        return None
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"measuring {name} at batch {batch} failed:\n{e.stderr[-3000:]}") from None
    return json.loads(out.strip().splitlines()[-1])


# Issue 2's throughput target names the cheap tasks; the arm tasks are a GPU workload (see issue 2's note).
CHEAP_TASKS = ("cartpole_balance", "cartpole_swingup", "pendulum_swingup", "reacher")
TARGET_BATCH = 1024


def targets(result: dict) -> dict:
    """Issue 2's targets block from the saved results (see benchmarks/targets.py)."""
    out = {}
    for task in CHEAP_TASKS:
        goal = (
            f"on 2 CPU cores, batched MJX throughput of {task} beats single-thread C MuJoCo (mj_step) at batch"
            f" {TARGET_BATCH} (measured: MJX / C steps/s)"
        )
        row = next((r for r in result["rows"] if r["task"] == task and r["batch"] == TARGET_BATCH), None)
        if row is None:
            out[f"{task}_beats_c_at_batch_{TARGET_BATCH}"] = missing(
                goal, f"not measured by this run: `{result['command']}`"
            )
        elif row.get("stalled"):
            out[f"{task}_beats_c_at_batch_{TARGET_BATCH}"] = missing(goal, "the MJX run stalled (no result)")
        else:
            out[f"{task}_beats_c_at_batch_{TARGET_BATCH}"] = target(
                row["ratio_vs_c"],
                goal,
                row["ratio_vs_c"] > 1.0,
                f"MJX {row['steps_per_s']:,.0f} vs C mj_step loop {row['c_mujoco_steps_per_s']:,.0f} steps/s"
                f" ({row['ratio_vs_c_rollout']:.2f}x mujoco.rollout); {result['machine']['cores']} cores",
            )
    return out


def main(argv):
    del argv
    if _CHILD.value:
        name, batch, scan_steps = _CHILD.value.split(":")
        print(json.dumps(mjx_steps_per_s(name, int(batch), int(scan_steps), _REPEATS.value)))
        return
    import envs

    tasks = _TASKS.value or envs.names()
    batches = [int(b) for b in _BATCH.value]
    info = machine_info()
    rows = []
    for name in tasks:
        env = envs.make(name)
        c_rate, c_pure = c_mujoco_steps_per_s(env, _C_SECONDS.value)
        print(f"{name}: C MuJoCo {c_rate:,.0f} steps/s (Python loop), {c_pure:,.0f} (rollout, pure C)", flush=True)
        per_env_mb = None
        for batch in batches:
            if f"{name}:{batch}" in _SKIP.value:
                print(f"  batch {batch}: skipped (--skip)")
                continue
            if per_env_mb is not None and per_env_mb * batch / 1e3 > _MAX_BYTES.value:
                print(f"  batch {batch}: skipped (state would exceed {_MAX_BYTES.value} GB)")
                continue
            scan_steps = int(min(200, max(4, round(c_rate * _CALL_S.value / batch))))
            r = _measure_in_child(name, batch, scan_steps)
            if r is None:
                rows.append(
                    {
                        "task": name,
                        "batch": batch,
                        "stalled": True,
                        "c_mujoco_steps_per_s": c_rate,
                        "c_rollout_steps_per_s": c_pure,
                    }
                )
                print(f"  batch {batch:5d}: no result within {_TIMEOUT.value} s", flush=True)
                continue
            per_env_mb = r["state_mb_per_env"]
            r.update(
                task=name,
                batch=batch,
                c_mujoco_steps_per_s=c_rate,
                c_rollout_steps_per_s=c_pure,
                ratio_vs_c=r["steps_per_s"] / c_rate,
                ratio_vs_c_rollout=r["steps_per_s"] / c_pure,
            )
            rows.append(r)
            print(
                f"  batch {batch:5d}: {r['steps_per_s']:12,.0f} steps/s  compile {r['compile_s']:5.1f}s"
                f"  ({r['ratio_vs_c']:.2f}x C)",
                flush=True,
            )
    command = "python -m " + " ".join(["benchmarks.env_throughput"] + sys.argv[1:])
    lines = [
        "# Env throughput: MJX (batched, jitted) vs C MuJoCo (single thread)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, backend {info['backend']};"
        f" jax {info['jax']}, mujoco {info['mujoco']}, Python {info['python']}.",
        f"MJX: median of {_REPEATS.value} calls of a jitted `lax.scan` over 4-200 control steps (about"
        f" {_CALL_S.value} s a call) of the full training stack (time limit, episode stats, vmap,"
        " autoreset), random actions. C MuJoCo, one thread, same model and substeps per control step:"
        " `mj_step` called from a Python loop (what a host-side env pays), and `mujoco.rollout`"
        " (the C loop, no Python overhead). Steps are control steps.",
        f"Not measured (--skip): {', '.join(_SKIP.value) or 'none'}. 'Stalled' means the child process's first"
        " jitted call never returned (XLA:CPU blocked at 0% CPU; see the --skip flag's comment).",
        "",
        "| task | batch | MJX steps/s | C mj_step loop | MJX / C loop | C rollout | MJX / C rollout | compile s | MB/env |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.get("stalled"):
            lines.append(
                f"| {r['task']} | {r['batch']} | no result in {_TIMEOUT.value} s (stalled) |"
                f" {r['c_mujoco_steps_per_s']:,.0f} | - | {r['c_rollout_steps_per_s']:,.0f} | - | - | - |"
            )
            continue
        lines.append(
            f"| {r['task']} | {r['batch']} | {r['steps_per_s']:,.0f} | {r['c_mujoco_steps_per_s']:,.0f}"
            f" | {r['ratio_vs_c']:.2f} | {r['c_rollout_steps_per_s']:,.0f} | {r['ratio_vs_c_rollout']:.2f}"
            f" | {r['compile_s']:.1f} | {r['state_mb_per_env']:.3f} |"
        )
    result = {"command": command, "machine": info, "rows": rows}
    result["targets"] = targets(result)
    lines += ["", *targets_table(result["targets"])]
    write_report(_OUT.value, result, lines)


if __name__ == "__main__":
    app.run(main)
