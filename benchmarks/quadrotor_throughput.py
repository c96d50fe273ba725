"""Quadrotor simulator throughput and RAPTOR student inference latency (CPU).

    python -m benchmarks.quadrotor_throughput
    python -m benchmarks.quadrotor_throughput --batch_sizes=1,256,4096 --repeats=3

env:      `envs.make("quadrotor_hover", num_envs=B)` (time limit, episode statistics, vmap,
          autoreset: the stack teachers train in), one jitted `lax.scan` of control steps with
          uniform random motor commands (so crashes and autoresets happen, as early in training);
          median env steps/s over `--repeats` timed calls, compile time reported apart.
student:  one step of the 2084-parameter student at batch 1: the exported C (`-O2`, timed inside
          the self-test binary over `--c_steps` steps), the pure-numpy step, and the jitted JAX
          step called from Python (dispatch included).
Writes benchmarks/results/quadrotor_throughput.md and .json.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

from absl import app, flags

import robojax  # noqa: F401  (XLA CPU flags before JAX initialises)
from benchmarks.machine import machine_info
from benchmarks.targets import missing, target, targets_table, write_report

_BATCH = flags.DEFINE_list("batch_sizes", ["1", "256", "4096"], "Batch sizes.")
_TASK = flags.DEFINE_string("task", "quadrotor_hover", "quadrotor_hover or quadrotor_track.")
_CALL_S = flags.DEFINE_float("seconds_per_call", 0.5, "Target duration of one timed call.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per batch size (median reported).")
_C_STEPS = flags.DEFINE_integer("c_steps", 1_000_000, "Steps timed in the C self-test binary.")
_PY_STEPS = flags.DEFINE_integer("py_steps", 5000, "Steps timed for numpy and JAX student inference.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/quadrotor_throughput", "Output path stem (.md, .json).")


def env_steps_per_s(task: str, batch: int) -> dict:
    import jax

    import envs

    env = envs.make(task, num_envs=batch)

    def run(state, key, n):
        def body(s, k):
            a = jax.random.uniform(k, (batch, 4), minval=-1.0, maxval=1.0)
            return env.step(s, a), None

        state, _ = jax.lax.scan(body, state, jax.random.split(key, n))
        return state

    state = jax.jit(env.reset)(jax.random.PRNGKey(0))
    # size the scan so that one call lasts about seconds_per_call (probe with 8 steps)
    probe = jax.jit(run, static_argnums=2)
    jax.block_until_ready(probe(state, jax.random.PRNGKey(1), 8))
    t0 = time.perf_counter()
    jax.block_until_ready(probe(state, jax.random.PRNGKey(1), 8))
    per_step = (time.perf_counter() - t0) / 8
    n = int(min(2000, max(8, _CALL_S.value / max(per_step, 1e-7))))
    fn = jax.jit(run, static_argnums=2)
    t0 = time.perf_counter()
    state = jax.block_until_ready(fn(state, jax.random.PRNGKey(2), n))
    compile_s = time.perf_counter() - t0
    rates, cpu_rates = [], []
    for r in range(_REPEATS.value):
        t0, c0 = time.perf_counter(), time.process_time()
        state = jax.block_until_ready(fn(state, jax.random.PRNGKey(3 + r), n))
        rates.append(batch * n / (time.perf_counter() - t0))
        cpu_rates.append(batch * n / max(time.process_time() - c0, 1e-9))
    return {
        "batch": batch,
        "scan_steps": n,
        "compile_s": compile_s,
        "env_steps_per_s": statistics.median(rates),
        "env_steps_per_cpu_s": statistics.median(cpu_rates),
    }


def student_latency() -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from robojax.agents.raptor import networks as S
    from robojax.agents.raptor.export import export_student_c
    from robojax.export import c_export

    params = S.init_student(jax.random.PRNGKey(0))
    params = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(jax.random.PRNGKey(1), x.shape), params)
    out = {}
    cc = c_export.find_c_compiler()
    if cc is not None:
        with tempfile.TemporaryDirectory() as d:
            export_student_c(params, d)
            binary = c_export.compile_selftest(d, "raptor_student", cc=cc)
            res = c_export.run_selftest(binary, _C_STEPS.value)
        out["c"] = {
            "ns_per_step": res["ns_per_step"],
            "cpu_ns_per_step": res["cpu_ns_per_step"],
            "steps": res["timing_steps"],
            "selftest_passed": res["passed"],
            "max_abs_error": res["max_abs_error"],
            "compiler": cc,
        }
    w = S.numpy_parameters(params)
    obs = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (64, 22)), np.float32)
    h = w["initial_hidden_state"].copy()
    n = _PY_STEPS.value
    t0, c0 = time.perf_counter(), time.process_time()
    for t in range(n):
        _, h = S.numpy_student_step(w, h, obs[t % 64])
    out["numpy"] = {
        "ns_per_step": (time.perf_counter() - t0) / n * 1e9,
        "cpu_ns_per_step": (time.process_time() - c0) / n * 1e9,
        "steps": n,
    }
    step = jax.jit(S.student_step)
    hj = S.initial_carry((), params)
    obs_j = jnp.asarray(obs)
    jax.block_until_ready(step(params, hj, obs_j[0]))
    t0, c0 = time.perf_counter(), time.process_time()
    for t in range(n):
        a, hj = step(params, hj, obs_j[t % 64])
    jax.block_until_ready(a)
    out["jax_jit"] = {
        "ns_per_step": (time.perf_counter() - t0) / n * 1e9,
        "cpu_ns_per_step": (time.process_time() - c0) / n * 1e9,
        "steps": n,
    }
    return out


def targets(payload: dict) -> dict:
    """Issue 5's target this benchmark measures, the student's C export parity (see benchmarks/targets.py).

    Issue 5's throughput target (env steps/s across all teachers) is benchmarks/raptor.py's.
    """
    goal = "the student's dependency-free C export matches JAX (C export parity; measured: max |C - JAX|)"
    c = payload.get("student_latency", {}).get("c")
    if c is None:
        return {"c_export_parity": missing(goal, "the C export was not built or run (no C compiler?)")}
    return {
        "c_export_parity": target(
            c["max_abs_error"],
            goal,
            bool(c["selftest_passed"]),
            f"the C self-test {'passed' if c['selftest_passed'] else 'failed'}",
        )
    }


def main(argv):
    del argv
    info = machine_info()
    load_before = os.getloadavg()
    rows = [env_steps_per_s(_TASK.value, int(b)) for b in _BATCH.value]
    for r in rows:
        print(r, flush=True)
    latency = student_latency()
    print(latency, flush=True)
    info["load_average_1m_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    command = "python -m " + " ".join(["benchmarks.quadrotor_throughput"] + sys.argv[1:])
    lines = [
        "# Quadrotor simulator throughput and RAPTOR student latency",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores visible, JAX {info['jax']} ({info['backend']}),"
        f" Python {info['python']}. 1-minute load average {info['load_average_1m_before_after'][0]} before and"
        f" {info['load_average_1m_before_after'][1]} after the run: other jobs shared the cores, so wall-clock"
        " figures are lower bounds; the CPU-time columns divide by this process's CPU time instead.",
        "",
        f"## Env steps/s: `{_TASK.value}`, full training stack (autoreset), random actions, RK4 at 100 Hz",
        "",
        "| batch | env steps/s (wall) | env steps per CPU-second | scan steps per call | compile (s) |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['batch']} | {r['env_steps_per_s']:,.0f} | {r['env_steps_per_cpu_s']:,.0f} | {r['scan_steps']}"
        f" | {r['compile_s']:.1f} |"
        for r in rows
    ]
    lines += [
        "",
        "## Student inference, one step at batch 1 (2084 parameters)",
        "",
        "| implementation | wall time per step | CPU time per step |",
        "|---|---:|---:|",
    ]
    names = {
        "c": "C export (-O2, self-test binary)",
        "numpy": "numpy (`numpy_student_step`)",
        "jax_jit": "JAX jit, called from Python",
    }
    for k in ("c", "numpy", "jax_jit"):
        if k in latency:
            lines.append(
                f"| {names[k]} | {latency[k]['ns_per_step'] / 1000:.2f} us"
                f" | {latency[k]['cpu_ns_per_step'] / 1000:.2f} us |"
            )
    if "c" in latency:
        lines += [
            "",
            f"C self-test: passed={latency['c']['selftest_passed']},"
            f" max |C - JAX| = {latency['c']['max_abs_error']:.1e} over the reference sequence.",
        ]
    os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
    payload = {"command": command, "machine": info, "task": _TASK.value, "env": rows, "student_latency": latency}
    payload["targets"] = targets(payload)
    lines += ["", *targets_table(payload["targets"])]
    write_report(_OUT.value, payload, lines)


if __name__ == "__main__":
    app.run(main)
