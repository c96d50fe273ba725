"""Run an exported policy on a robot (or the sim robot server) at a fixed rate, logging every episode.

    python -m experiments.sim_robot_server --task=arm_reach --port=5555 &
    python -m experiments.run_controller --policy=artifacts/sac_arm_reach --robot=tcp://127.0.0.1:5555 \
        --rate_hz=25 --episodes=5 --log=data/robot_runs/arm_reach

Each tick: read the robot's state, run the policy, send the command. The robot is stopped (one
stop request, nothing sent after it) when `--max_missed` deadlines are missed in a row, the robot
stops answering within `--timeout_ms`, the policy fails, or on Ctrl-C; the partial episode is
still logged, marked incomplete. The log is an episode dataset (robojax.episodes/1, appended to
when it exists), readable with `robojax.data.episodes.load_episodes`. A summary table with latency
percentiles is printed at the end; `--summary_json` also writes it as JSON.

Exit status: 0 all episodes ran; 2 the robot stopped answering or reported an error; 3 deadline
misses; 4 the policy failed; 5 set-up error (artifact, spaces); 130 interrupted.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags

import robojax  # noqa: F401  (XLA CPU flags before JAX initialises)

_POLICY = flags.DEFINE_string("policy", None, "Policy artifact directory (experiments.export_policy).")
_ROBOT = flags.DEFINE_string("robot", "tcp://127.0.0.1:5555", "Robot server address.")
_TOKEN = flags.DEFINE_string("token", None, "Shared token of the robot server (default: $ROBOJAX_ROBOT_TOKEN).")
_RATE = flags.DEFINE_float("rate_hz", None, "Control rate (default: the artifact's control rate).")
_EPISODES = flags.DEFINE_integer("episodes", 1, "Episodes to run.")
_EPISODE_STEPS = flags.DEFINE_integer("episode_steps", 250, "Steps per episode (0: until the robot terminates it).")
_MAX_MISSED = flags.DEFINE_integer("max_missed", 3, "Consecutive missed deadlines that stop the robot.")
_TIMEOUT_MS = flags.DEFINE_float("timeout_ms", None, "Deadline of each robot call (default: half a control period).")
_SEED = flags.DEFINE_integer("seed", 0, "Episode i resets robot and policy with seed + i.")
_LOG = flags.DEFINE_string("log", None, "Episode dataset directory to log to (appended to; none: no log).")
_RT_PRIORITY = flags.DEFINE_integer(
    "realtime_priority", 0, "Run the control loop under SCHED_FIFO at this priority (1-99; root or CAP_SYS_NICE)."
)
_SUMMARY = flags.DEFINE_string("summary_json", None, "Write the run summary as JSON here.")
_PLATFORM = flags.DEFINE_string("platform", "cpu", "Where the policy runs (cpu or cuda, if exported for it).")

flags.mark_flags_as_required(["policy"])


def _write_json(path: str, value) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1, default=str)
    os.replace(tmp, path)


def main(argv):
    del argv
    import jax

    # Synchronous CPU dispatch: a batch-1 policy call costs about half (openxla/xla#18608;
    # benchmarks/deploy.py). Must be set before the first computation.
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    import robojax.deploy as deploy
    from robojax.deploy.controller import EXIT_SETUP, Controller, ControllerConfig, ControllerSetupError
    from robojax.drivers.client import RobotClient

    def fail(message: str, code: int = EXIT_SETUP):
        print(f"run_controller: error: {message}", file=sys.stderr, flush=True)
        sys.exit(code)

    try:
        policy = deploy.load(_POLICY.value, seed=_SEED.value, platform=_PLATFORM.value)
    except deploy.ArtifactError as e:
        fail(str(e))
    rate = _RATE.value or 1.0 / policy.control_dt
    try:
        config = ControllerConfig(
            rate_hz=rate,
            episodes=_EPISODES.value,
            episode_steps=_EPISODE_STEPS.value or None,
            max_missed=_MAX_MISSED.value,
            seed=_SEED.value,
            realtime_priority=_RT_PRIORITY.value,
        )
    except ValueError as e:
        fail(str(e))
    timeout_s = (_TIMEOUT_MS.value / 1e3) if _TIMEOUT_MS.value else 0.5 * config.period_s
    token = _TOKEN.value or os.environ.get("ROBOJAX_ROBOT_TOKEN")
    client = RobotClient(_ROBOT.value, token=token, timeout_s=timeout_s)
    writer = None
    try:
        if _LOG.value:
            writer = _open_log(_LOG.value, policy, client, rate)
        controller = Controller(
            policy,
            client,
            config,
            writer=writer,
            episode_metadata={
                "policy": policy.directory,
                "policy_name": policy.metadata.get("name", ""),
                "robot": _ROBOT.value,
            },
            log=lambda msg: print(msg, flush=True),
        )
        print(f"running {policy} on {_ROBOT.value} at {rate:g} Hz (call timeout {timeout_s * 1e3:.1f} ms)", flush=True)
        report = controller.run()
    except ControllerSetupError as e:
        fail(str(e))
    finally:
        if writer is not None:
            writer.close()
        client.close()
    print(report.table(), flush=True)
    if _SUMMARY.value:
        _write_json(_SUMMARY.value, report.to_dict())
    if report.fault:
        print(f"run_controller: robot stopped: {report.fault}", file=sys.stderr, flush=True)
    sys.exit(report.exit_code)


def _open_log(path: str, policy, client, rate: float):
    """The episode dataset; the robot's INFO names the task (only INFO is sent here, nothing that moves)."""

    try:
        info = client.info(timeout_s=max(1.0, client.timeout_s))
    except Exception as e:  # noqa: BLE001
        print(f"run_controller: error: the robot at {client.address} does not answer INFO: {e}", file=sys.stderr)
        sys.exit(2)
    from robojax.data.episodes import DatasetError

    try:
        return _writer(path, policy, info, rate)
    except DatasetError as e:
        print(f"run_controller: error: cannot log to {path}: {e}", file=sys.stderr)
        sys.exit(5)


def _writer(path, policy, info, rate):
    from robojax.data.episodes import EpisodeWriter
    from robojax.envs.core import ArraySpec

    return EpisodeWriter(
        path,
        ArraySpec.from_dict(policy.observation_spec.to_dict()),
        ArraySpec.from_dict(policy.action_spec.to_dict()),
        env=info.get("task"),
        control_dt=1.0 / rate,
        metadata={
            "source": "experiments.run_controller",
            "robot": info.get("robot"),
            "task": info.get("task"),
            "policy": policy.directory,
            "policy_name": policy.metadata.get("name", ""),
        },
        append=True,
    )


if __name__ == "__main__":
    app.run(main)
