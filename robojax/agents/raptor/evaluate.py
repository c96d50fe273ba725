"""RAPTOR evaluation on held-out quadrotors: zero-shot student vs oracle teachers vs ablation.

Held-out quadrotors come from a key stream separate from the training quadrotors' (see
`quadrotor_keys`), so the student never saw them. Every policy flies the *same* episodes (same
initial states, references and disturbances: one key per quadrotor and episode), so differences
are the policies'. Policies:
  student       the recurrent (GRU) student, zero-shot
  teacher       per-quadrotor SAC teachers trained on the held-out quadrotors themselves: an oracle
  feedforward   the non-recurrent student of the same size, distilled the same way: the ablation
                showing what in-context adaptation through the recurrence buys
Metrics per task (hover, track): success (no crash over the whole episode), mean position error
||p - p_ref|| over the steps flown, and mean survived steps.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robojax.agents.raptor import learner
from robojax.agents.raptor.config import EvalConfig
from robojax.agents.raptor.learner import Episodes
from robojax.agents.raptor.networks import StudentFunctions
from robojax.envs import registry as env_registry
from robojax.envs.core import Env

# Stream 0: training quadrotors; stream 1: held-out quadrotors with oracle teachers; stream 2: the
# wider held-out set the students alone fly (neither held-out stream is used in training).
TRAIN_STREAM, HELD_OUT_STREAM, WIDE_STREAM = 0, 1, 2


def quadrotor_keys(seed: int, stream: int, num: int) -> jax.Array:
    """Keys of `num` quadrotors of a stream; the streams never share keys."""
    return jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 1000 + stream), num)


def sample_quadrotors(seed: int, stream: int, num: int, env_name: str = "quadrotor_hover") -> dict:
    """`num` quadrotors' parameters (leading axis) from the paper's ranges, drawn by the
    registered quadrotor task's `sample_parameters` (hover and track share the distribution)."""
    sample_parameters = env_registry.task_class(env_name).sample_parameters
    return jax.vmap(sample_parameters)(quadrotor_keys(seed, stream, num))


@functools.lru_cache(maxsize=16)
def make_collect(env: Env, length: int, episodes: int, student: StudentFunctions):
    """Jitted episodes on every quadrotor: (quadrotor, episode, time) leading axes."""

    @jax.jit
    def run(student_params, teachers, dynamics, key, teacher_acts):
        return learner.collect(env, length, episodes, student, student_params, teachers, dynamics, key, teacher_acts)

    return run


def summarize(episodes: Episodes) -> dict:
    """Scalar metrics of a batch of episodes, plus per-quadrotor success."""
    metrics = {k: float(v) for k, v in jax.device_get(learner.episode_metrics(episodes)).items()}
    metrics.pop("label_action_mse", None)
    crashed = np.asarray(episodes.crashed)
    metrics["success_per_quadrotor"] = (1.0 - crashed.reshape(crashed.shape[0], -1).mean(axis=1)).tolist()
    return metrics


def crash_causes(episodes: Episodes, arm_length: jax.Array, env: Env) -> dict:
    """Which termination bound ended each crashed episode, read from the last observation before the crash.

    Counts per bound (position: 20 arm lengths per axis; velocity; angular velocity), taking the bound
    the last observation came closest to (as a fraction of it). arm_length: (quadrotor,).
    """
    task_env = env.unwrapped
    obs = np.asarray(episodes.obs)  # (quadrotor, episode, time, 22)
    valid, crashed = np.asarray(episodes.valid), np.asarray(episodes.crashed)
    last = np.take_along_axis(obs, np.maximum(valid.sum(-1) - 1, 0)[..., None, None], axis=2)[:, :, 0]
    arm = np.asarray(arm_length)[:, None]
    ratios = np.stack([
        np.abs(last[..., 0:3]).max(-1) / (task_env.position_threshold_arms * arm),
        np.abs(last[..., 12:15]).max(-1) / task_env.velocity_threshold,
        np.abs(last[..., 15:18]).max(-1) / task_env.angular_velocity_threshold,
    ], axis=-1)
    cause = ratios.argmax(-1)[crashed]
    return {name: int(np.sum(cause == i)) for i, name in enumerate(("position", "velocity", "angular_velocity"))}


def position_error_after(episodes: Episodes, start: int = 100) -> float | None:
    """Mean ||p - p_ref|| over the valid steps from step `start` on (default: after the first second at
    100 Hz): the tracking error once the quadrotor has recovered from its perturbed start. None when no
    step that late was flown (short or all-crashed episodes)."""
    error = np.linalg.norm(np.asarray(episodes.position - episodes.reference)[..., start:, :], axis=-1)
    valid = np.asarray(episodes.valid)[..., start:].astype(np.float64)
    return float(np.sum(error * valid) / np.sum(valid)) if valid.any() else None


def steady_state_error(episodes: Episodes, tail: int = 100) -> list[float]:
    """Mean |p - p_ref| per axis over the last `tail` steps of the episodes that did not crash (m)."""
    p_rel = np.asarray(episodes.position - episodes.reference)[..., -tail:, :]
    ok = ~np.asarray(episodes.crashed)
    if not ok.any():
        return [float("nan")] * 3
    return np.abs(p_rel[ok].mean(axis=-2)).mean(axis=0).round(4).tolist()


def evaluate_task(
    env: Env,
    config: EvalConfig,
    dynamics: dict,
    oracle_teachers: Any,
    students: dict[str, tuple[StudentFunctions, Any]],
    key: jax.Array,
) -> tuple[dict, dict]:
    """Metrics of every policy on one task; returns (metrics by policy, episodes by policy).

    students: name -> (architecture, params); the oracle teachers appear as "teacher".
    """
    results, trajectories = {}, {}
    any_student = next(iter(students.values()))
    policies = [("teacher", any_student, True)] + [(name, s, False) for name, s in students.items()]
    for name, (fns, params), teacher_acts in policies:
        run = make_collect(env, config.episode_length, config.episodes_per_quadrotor, fns)
        episodes = run(params, oracle_teachers, dynamics, key, jnp.asarray(teacher_acts))
        results[name] = policy_metrics(episodes, dynamics, env)
        trajectories[name] = jax.device_get(episodes)
    return results, trajectories


def policy_metrics(episodes: Episodes, dynamics: dict, env: Env) -> dict:
    """Every reported figure of one policy's episodes."""
    metrics = summarize(episodes)
    metrics["crash_causes"] = crash_causes(episodes, dynamics["arm_length"], env)
    metrics["steady_state_error_xyz"] = steady_state_error(episodes)
    metrics["position_error_after_1s"] = position_error_after(episodes, 100)
    crashed = np.asarray(episodes.crashed)
    metrics["episodes"] = int(crashed.size)
    metrics["crashed"] = crashed.reshape(crashed.shape[0], -1).tolist()  # (quadrotor, episode)
    return metrics


def evaluate_students(
    env: Env, config: EvalConfig, dynamics: dict, students: dict[str, tuple[StudentFunctions, Any]], key: jax.Array
) -> dict:
    """Students alone, zero-shot, on held-out quadrotors that have no teachers (the wide set)."""
    results = {}
    for name, (fns, params) in students.items():
        run = make_collect(env, config.episode_length, config.episodes_per_quadrotor, fns)
        episodes = run(params, None, dynamics, key, jnp.asarray(False))
        results[name] = policy_metrics(episodes, dynamics, env)
    return results


def plot_tracking(trajectories: dict, png_path: str, num_quadrotors: int, dt: float = 0.01,
                  policies: tuple[str, ...] = ("student", "teacher")) -> str:
    """x/y/z over time, reference vs policies, for the first episode of a few held-out quadrotors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = trajectories[policies[0]]
    n = min(num_quadrotors, first.position.shape[0])
    fig, axes = plt.subplots(n, 3, figsize=(12, 2.6 * n), squeeze=False, sharex=True)
    t = np.arange(first.position.shape[2]) * dt
    colours = {"student": "tab:blue", "teacher": "tab:green", "feedforward": "tab:red"}
    for q in range(n):
        for axis, label in enumerate("xyz"):
            ax = axes[q, axis]
            ax.plot(t, first.reference[q, 0, :, axis], "k--", lw=1.5, label="reference")
            for name in policies:
                if name not in trajectories:
                    continue
                ep = trajectories[name]
                valid = ep.valid[q, 0]
                y = np.where(valid, ep.position[q, 0, :, axis], np.nan)
                crashed = " (crashed)" if ep.crashed[q, 0] else ""
                ax.plot(t, y, color=colours.get(name), lw=1.2, label=name + crashed)
            ax.set_ylabel(f"quad {q}: {label} (m)")
            if q == n - 1:
                ax.set_xlabel("time (s)")
            if axis == 0:
                ax.legend(fontsize=7, loc="best")
    fig.suptitle("Held-out quadrotors, tracking: reference vs policies")
    fig.tight_layout()
    tmp = png_path + ".tmp.png"
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, png_path)
    return png_path


def results_table(results: dict) -> str:
    """A markdown table: task x policy -> success, position error, survived steps, crash causes."""
    lines = ["| task | policy | success | mean position error (m) | after the first second (m) | mean steps flown"
             " | crashes by bound (pos/vel/ang vel) | steady-state error x/y/z (m) |", "|---|---|---:|---:|---:|---:|---|---|"]
    for task, by_policy in results.items():
        for policy, m in by_policy.items():
            causes = m.get("crash_causes")
            causes = "/".join(str(causes[k]) for k in ("position", "velocity", "angular_velocity")) if causes else ""
            steady = "/".join(f"{v:.3f}" for v in m.get("steady_state_error_xyz", []))
            after = m.get("position_error_after_1s")
            after = f"{after:.3f}" if after is not None else "n/a"
            lines.append(
                f"| {task} | {policy} | {100 * m['success']:.0f}% | {m['position_error']:.3f} | {after} |"
                f" {m['episode_length']:.0f} | {causes} | {steady} |"
            )
    return "\n".join(lines)
