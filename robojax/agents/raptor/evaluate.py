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

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robojax import evaluation
from robojax.agents.raptor import learner, networks, teachers
from robojax.agents.raptor.config import EvalConfig
from robojax.agents.raptor.learner import Episodes
from robojax.agents.raptor.networks import StudentFunctions
from robojax.envs import registry as env_registry
from robojax.envs.core import Env, Wrapper
from robojax.envs.wrappers import VmapWrapper
from robojax.policy import Policy

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


class HeldOutEpisodes(Wrapper):
    """`episodes_per_quadrotor` episodes on each given quadrotor as one batched env (quadrotor-major).

    `reset(key)` splits `key` into one key per (quadrotor, episode), as `learner.collect` does, and
    resets every env through `reset_with_parameters` on its quadrotor, so every policy flies the same
    episodes. env: an unbatched quadrotor task (wrappers allowed); dynamics: leading quadrotor axis.
    """

    def __init__(self, env: Env, dynamics: dict, episodes_per_quadrotor: int):
        self.num_quadrotors = int(jax.tree.leaves(dynamics)[0].shape[0])
        self.episodes_per_quadrotor = int(episodes_per_quadrotor)
        super().__init__(VmapWrapper(env, self.num_quadrotors * self.episodes_per_quadrotor))
        self.dynamics = jax.tree.map(
            lambda x: jnp.repeat(jnp.asarray(x), self.episodes_per_quadrotor, axis=0), dynamics
        )

    def reset(self, key):
        keys = jax.random.split(key, (self.num_quadrotors, self.episodes_per_quadrotor))
        return self.env.reset_with_parameters(keys.reshape((-1,) + keys.shape[2:]), self.dynamics)

    def reset_with_parameters(self, key, params):
        raise NotImplementedError("HeldOutEpisodes resets on its own quadrotors; give others to its constructor")


def teacher_policy(teachers_state: Any, num_quadrotors: int, episodes_per_quadrotor: int) -> Policy:
    """The oracle teachers as one Policy batched over (quadrotor, episode): teacher q flies its own
    quadrotor's episodes, deterministically, from the privileged observation (obs: info[TEACHER_OBS_KEY])."""

    def step(carry, obs, key):
        del key  # deterministic: tanh(mean)
        obs = obs.reshape((num_quadrotors, episodes_per_quadrotor) + obs.shape[1:])
        per_teacher = jax.vmap(lambda t, o: jax.vmap(lambda x: teachers.teacher_action(t, x))(o))
        action = per_teacher(teachers_state, obs)
        return action.reshape((-1,) + action.shape[2:]), carry

    return Policy(
        init_carry=lambda: (),
        step=step,
        stochastic=False,
        name="raptor_oracle_teachers",
        batch_size=num_quadrotors * episodes_per_quadrotor,
    )


def _trace(state, action, nxt) -> dict:
    position = state.physics["position"]
    obs = state.obs[..., : networks.OBS_SIZE]  # teachers see more; the first 22 values are the student's
    return {
        "obs": obs,
        "action": action,
        "position": position,
        "reference": position - obs[..., :3],
        "reward": nxt.reward,
    }


def fly(
    env: Env,
    length: int,
    episodes_per_quadrotor: int,
    dynamics: dict,
    policy: Policy | None = None,
    teachers_state: Any = None,
    key: jax.Array | None = None,
) -> tuple[dict, Episodes]:
    """Episodes of one policy on every quadrotor (`robojax.evaluation.make_episode_evaluator`).

    policy: a student's Policy, or None for the oracle teachers `teachers_state` (one per quadrotor),
    which then observe the privileged observation. Returns the evaluator's per-episode arrays
    [quadrotor * episode] and the episodes, leading axes (quadrotor, episode, time).
    """
    if policy is None:
        env = teachers.PrivilegedObservation(env)
    batched = HeldOutEpisodes(env, dynamics, episodes_per_quadrotor)
    q, e = batched.num_quadrotors, batched.episodes_per_quadrotor
    if policy is None:
        policy = teacher_policy(teachers_state, q, e)
    out = evaluation.make_episode_evaluator(batched, lambda _: policy, episode_length=length, trace=_trace)(None, key)
    out = jax.device_get(out)
    # [time, quadrotor * episode, ...] -> [quadrotor, episode, time, ...]
    per_episode = lambda x: np.swapaxes(np.asarray(x), 0, 1).reshape((q, e) + np.shape(x)[:1] + np.shape(x)[2:])
    trace = {k: per_episode(v) for k, v in out.pop("trace").items()}
    episodes = Episodes(
        obs=trace["obs"],
        label=None,
        action=trace["action"],
        valid=per_episode(out.pop("valid")),
        crashed=np.asarray(out["terminated"]).reshape(q, e),
        position=trace["position"],
        reference=trace["reference"],
        reward=trace["reward"],
    )
    return out, episodes


def summarize(out: dict, episodes: Episodes) -> dict:
    """Scalar metrics of a batch of episodes (the evaluator's per-episode arrays `out` and the traced
    `episodes`), plus per-quadrotor success. Success is the task's info["success"] at an episode's
    end: no crash (crashed = terminated)."""
    metrics = {k: float(v) for k, v in jax.device_get(learner.episode_metrics(episodes)).items()}
    metrics.pop("label_action_mse", None)
    success = np.asarray(out["success"], np.float64).reshape(episodes.crashed.shape)
    metrics["success"] = float(success.mean())
    metrics["return"] = float(np.mean(out["return"]))
    metrics["success_per_quadrotor"] = success.mean(axis=1).tolist()
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
    ratios = np.stack(
        [
            np.abs(last[..., 0:3]).max(-1) / (task_env.position_threshold_arms * arm),
            np.abs(last[..., 12:15]).max(-1) / task_env.velocity_threshold,
            np.abs(last[..., 15:18]).max(-1) / task_env.angular_velocity_threshold,
        ],
        axis=-1,
    )
    cause = ratios.argmax(-1)[crashed]
    return {name: int(np.sum(cause == i)) for i, name in enumerate(("position", "velocity", "angular_velocity"))}


def position_error_after(episodes: Episodes, start: int = 100) -> float | None:
    """Mean ||p - p_ref|| over the valid steps from step `start` on (default: after the first second at
    100 Hz): the tracking error once the quadrotor has recovered from its perturbed start. None when no
    step that late was flown (short or all-crashed episodes)."""
    error = np.linalg.norm(np.asarray(episodes.position - episodes.reference)[..., start:, :], axis=-1)
    valid = np.asarray(episodes.valid)[..., start:]
    # Steps after a crash hold whatever the env did next; np.where keeps them out (0 * nan is nan).
    return float(np.sum(np.where(valid, error, 0.0)) / np.sum(valid)) if valid.any() else None


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
    for name in ("teacher", *students):
        policy = None if name == "teacher" else networks.student_policy(*students[name])
        out, episodes = fly(
            env, config.episode_length, config.episodes_per_quadrotor, dynamics, policy, oracle_teachers, key
        )
        results[name] = policy_metrics(out, episodes, dynamics, env)
        trajectories[name] = episodes
    return results, trajectories


def policy_metrics(out: dict, episodes: Episodes, dynamics: dict, env: Env) -> dict:
    """Every reported figure of one policy's episodes."""
    metrics = summarize(out, episodes)
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
        out, episodes = fly(
            env,
            config.episode_length,
            config.episodes_per_quadrotor,
            dynamics,
            networks.student_policy(fns, params),
            key=key,
        )
        results[name] = policy_metrics(out, episodes, dynamics, env)
    return results


def plot_tracking(
    trajectories: dict,
    png_path: str,
    num_quadrotors: int,
    dt: float = 0.01,
    policies: tuple[str, ...] = ("student", "teacher"),
) -> str:
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
    lines = [
        "| task | policy | success | mean position error (m) | after the first second (m) | mean steps flown"
        " | crashes by bound (pos/vel/ang vel) | steady-state error x/y/z (m) |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
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
