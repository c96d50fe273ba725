"""The controller runtime: a fixed-rate loop that reads the robot, runs the policy, sends the command.

Each control tick k has an absolute deadline t0 + (k+1) T (T = 1 / rate_hz, `time.perf_counter`):
the loop sleeps until the tick starts (then spins for the last `spin_s`, because `time.sleep`
overshoots by up to a scheduler quantum), reads the state, runs the policy, sends the command.
A step that finishes after its deadline has missed it; the loop skips to the next tick that is
still ahead rather than bursting to catch up. It stops the robot safely (one `stop()`, then nothing
further is sent) when

  * `max_missed` deadlines are missed in a row (the policy or the robot is too slow),
  * the robot stops answering (`RobotTimeout`) or reports an error (`RobotError`),
  * the policy fails (bad observation, non-finite action),
  * SIGINT/SIGTERM arrives (Ctrl-C): checked once per tick, so a command is never cut in half.

Every episode, complete or not, goes to an episode dataset (robojax.data.episodes, "robojax.episodes/1")
when a writer is given: observations, actions, rewards (rewards[t] is the reward the robot reports
one tick after actions[t]), and per-step extras `next_observations`, `valid` (False where the
reward and next observation never arrived, i.e. the last step before a fault), `compute_ms`,
`roundtrip_ms` (state read), `command_ms`, `missed`, `robot_time_s`; the episode metadata records
`end_reason` and `complete`. Real runs thereby become training data.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

# Exit codes of experiments.run_controller (ControllerReport.exit_code).
EXIT_OK, EXIT_ROBOT_FAULT, EXIT_DEADLINES, EXIT_POLICY_FAULT, EXIT_SETUP, EXIT_INTERRUPTED = 0, 2, 3, 4, 5, 130

# Why an episode ended.
TERMINATED, TIME_LIMIT = "terminated", "time_limit"
ROBOT_TIMEOUT, ROBOT_ERROR, DEADLINE_MISSES, POLICY_ERROR, INTERRUPTED = (
    "robot_timeout",
    "robot_error",
    "deadline_misses",
    "policy_error",
    "interrupted",
)
_EXIT_CODES = {
    ROBOT_TIMEOUT: EXIT_ROBOT_FAULT,
    ROBOT_ERROR: EXIT_ROBOT_FAULT,
    DEADLINE_MISSES: EXIT_DEADLINES,
    POLICY_ERROR: EXIT_POLICY_FAULT,
    INTERRUPTED: EXIT_INTERRUPTED,
}


class ControllerSetupError(ValueError):
    """The policy and the robot do not fit together (specs, bounds); nothing was sent to the robot."""


@dataclasses.dataclass(frozen=True)
class ControllerConfig:
    """Settings of the fixed-rate loop."""

    rate_hz: float
    episodes: int = 1
    episode_steps: int | None = 250  # None: run until the robot reports `terminated`
    max_missed: int = 3  # consecutive missed deadlines that stop the robot
    spin_s: float = 0.001  # busy-wait this long before each tick instead of sleeping
    seed: int = 0  # episode i resets the robot and the policy with seed + i
    reset_timeout_s: float = 5.0  # a reset may move the robot for a while
    stop_timeout_s: float = 0.5
    disable_gc: bool = True  # no garbage-collector pauses inside an episode (collected between episodes)
    check_spaces: bool = True  # refuse a robot whose specs differ from the policy's
    # > 0: run the loop thread under SCHED_FIFO at this priority (Linux; needs root or CAP_SYS_NICE),
    # so other processes cannot delay a tick; 0 leaves the scheduling alone.
    realtime_priority: int = 0

    def __post_init__(self):
        if not (math.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise ValueError(f"ControllerConfig.rate_hz must be a positive number, got {self.rate_hz}")
        for name in ("episodes", "max_missed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ControllerConfig.{name} must be a positive integer, got {value!r}")
        if self.episode_steps is not None and (not isinstance(self.episode_steps, int) or self.episode_steps < 1):
            raise ValueError(
                f"ControllerConfig.episode_steps must be a positive integer or None, got {self.episode_steps!r}"
            )
        if not 0 <= self.spin_s < 1 / self.rate_hz:
            raise ValueError(
                f"ControllerConfig.spin_s must be in [0, period={1 / self.rate_hz:.4f} s), got {self.spin_s}"
            )
        if not isinstance(self.realtime_priority, int) or not 0 <= self.realtime_priority <= 99:
            raise ValueError(
                f"ControllerConfig.realtime_priority must be an integer in [0, 99], got {self.realtime_priority!r}"
            )
        for name in ("reset_timeout_s", "stop_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ControllerConfig.{name} must be positive, got {getattr(self, name)}")

    @property
    def period_s(self) -> float:
        return 1.0 / self.rate_hz


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Percentiles of one latency, in milliseconds."""

    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    @classmethod
    def of(cls, samples_ms) -> LatencyStats:
        x = np.asarray([s for s in samples_ms if np.isfinite(s)], np.float64)
        if x.size == 0:
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        p50, p99 = np.percentile(x, [50, 99])
        return cls(int(x.size), float(p50), float(p99), float(x.max()), float(x.mean()))


@dataclasses.dataclass
class EpisodeSummary:
    index: int
    seed: int
    steps: int
    episode_return: float
    success: bool | None
    end_reason: str
    complete: bool
    deadline_misses: int
    dataset_index: int | None = None  # index in the episode dataset (None: not logged)


@dataclasses.dataclass
class ControllerReport:
    """What a controller run did: per-episode summaries, latency percentiles, and the fault if any."""

    episodes: list[EpisodeSummary]
    # compute (policy), roundtrip (state read), command, step (tick start to command reply),
    # wakeup (how late the tick started against its schedule: sleep/spin jitter)
    latency: dict[str, LatencyStats]
    steps: int
    deadline_misses: int
    rate_hz: float
    wall_s: float
    end_reason: str  # "completed" or the fault's end reason
    fault: str | None = None
    fault_unix: float | None = None  # time.time() when the fault was detected
    last_reply_unix: float | None = None  # time.time() of the last successful robot reply
    stop_acknowledged: bool | None = None  # None: no stop was sent
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return _EXIT_CODES.get(self.end_reason, EXIT_OK)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["exit_code"] = self.exit_code
        return d

    def table(self) -> str:
        """Human-readable summary: one row per episode, then the latency percentiles."""
        lines = [f"{'episode':>7} {'seed':>5} {'steps':>6} {'return':>9} {'success':>7} {'misses':>6}  end"]
        for e in self.episodes:
            success = "-" if e.success is None else ("yes" if e.success else "no")
            tag = "" if e.complete else " (incomplete)"
            lines.append(
                f"{e.index:>7} {e.seed:>5} {e.steps:>6} {e.episode_return:>9.3f} {success:>7}"
                f" {e.deadline_misses:>6}  {e.end_reason}{tag}"
            )
        lines.append("")
        lines.append(f"{'latency (ms)':<22} {'n':>7} {'p50':>8} {'p99':>8} {'max':>8}")
        names = {
            "compute": "policy compute",
            "roundtrip": "state round trip",
            "command": "command round trip",
            "step": "whole step",
            "wakeup": "tick start lateness",
        }
        for key, label in names.items():
            s = self.latency.get(key)
            if s is not None:
                lines.append(f"{label:<22} {s.count:>7} {s.p50_ms:>8.3f} {s.p99_ms:>8.3f} {s.max_ms:>8.3f}")
        lines.append("")
        lines.append(
            f"{self.steps} steps at {self.rate_hz:g} Hz in {self.wall_s:.1f} s; deadline misses: {self.deadline_misses}"
        )
        if self.fault:
            stop = {None: "no stop sent", True: "stop acknowledged", False: "stop sent, not acknowledged"}
            lines.append(f"FAULT ({self.end_reason}): {self.fault} [{stop[self.stop_acknowledged]}]")
        for note in self.notes:
            lines.append(f"note: {note}")
        return "\n".join(lines)


class _Fault(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def wait_until(deadline: float, spin_s: float) -> None:
    """Sleep until `spin_s` before `deadline` (perf_counter seconds), then spin."""
    remaining = deadline - time.perf_counter()
    if remaining > spin_s:
        time.sleep(remaining - spin_s)
    while time.perf_counter() < deadline:
        pass


class Controller:
    """Runs a DeployedPolicy (or any callable with reset(seed)/__call__(obs)) on a robot client.

    client: a `robojax.drivers.client.RobotClient` (or an object with its methods). Its timeout_s is
      the per-call deadline; keep it below one control period so a dead robot is noticed within two.
    writer: an `EpisodeWriter` (robojax.data.episodes) receiving every episode, or None.
    """

    def __init__(
        self,
        policy,
        client,
        config: ControllerConfig,
        *,
        writer=None,
        episode_metadata: Mapping[str, Any] | None = None,
        log: Callable[[str], None] | None = None,
    ):
        self.policy, self.client, self.config, self.writer = policy, client, config, writer
        self.episode_metadata = dict(episode_metadata or {})
        self.log = log or (lambda msg: None)
        self._stop_requested = threading.Event()
        self._stop_signal: str | None = None
        self.robot_info: dict | None = None

    # ---- set-up ----------------------------------------------------------------------------------
    def request_stop(self, why: str = "stop requested") -> None:
        """Ask the loop to stop the robot at the next tick (thread- and signal-safe)."""
        self._stop_signal = why
        self._stop_requested.set()

    def check_robot(self) -> list[str]:
        """Compare the robot's INFO with the policy's specs; raise ControllerSetupError on a mismatch.

        Returns notes (e.g. a control rate that differs from the one the policy was trained at).
        """
        from robojax.deploy.artifact import Spec

        info = self.client.info(timeout_s=max(self.config.reset_timeout_s, self.client.timeout_s))
        self.robot_info = info
        notes = []
        if not self.config.check_spaces:
            return notes
        for key, mine in (("observation_spec", self.policy.observation_spec), ("action_spec", self.policy.action_spec)):
            if key not in info:
                raise ControllerSetupError(f"the robot's INFO reply has no {key}; cannot check it against the policy")
            theirs = Spec.from_dict(info[key], f"robot {key}")
            if theirs.shape != mine.shape:
                raise ControllerSetupError(
                    f"robot {key} has shape {theirs.shape}, the policy's is {mine.shape}: this policy was not"
                    f" trained for robot task {info.get('task')!r}; export a policy for it"
                )
            if key == "action_spec" and not (
                np.array_equal(theirs.low, mine.low) and np.array_equal(theirs.high, mine.high)
            ):
                raise ControllerSetupError(
                    f"robot action bounds [{theirs.low.tolist()}, {theirs.high.tolist()}] differ from the policy's"
                    f" [{mine.low.tolist()}, {mine.high.tolist()}]; rescale on the robot side or re-export"
                )
        policy_dt = getattr(self.policy, "control_dt", None)
        if policy_dt and abs(policy_dt * self.config.rate_hz - 1.0) > 1e-6:
            notes.append(f"running at {self.config.rate_hz:g} Hz; the policy was exported for {1 / policy_dt:g} Hz")
        robot_dt = info.get("control_dt")
        if robot_dt and abs(float(robot_dt) * self.config.rate_hz - 1.0) > 1e-6:
            notes.append(
                f"the robot's control period is {robot_dt} s; commands arrive every {self.config.period_s:g} s"
            )
        return notes

    # ---- the loop --------------------------------------------------------------------------------
    def run(self, *, handle_signals: bool = True) -> ControllerReport:
        """Run `config.episodes` episodes (or until a fault); never raises for robot or policy faults."""
        from robojax.drivers.client import RobotError, RobotTimeout

        self._robot_error, self._robot_timeout = RobotError, RobotTimeout  # drivers imported on first run
        cfg = self.config
        start = time.perf_counter()
        self._lat = {"compute": [], "roundtrip": [], "command": [], "step": [], "wakeup": []}
        self._last_reply_unix = None
        episodes: list[EpisodeSummary] = []
        fault: _Fault | None = None
        fault_unix = None
        stop_ack = None
        notes: list[str] = []
        previous = self._install_signals() if handle_signals else None
        gc_was_enabled = gc.isenabled()
        scheduling = None
        try:
            scheduling = self._set_realtime()
            try:
                notes = self.check_robot()
                self._last_reply_unix = time.time()
            except (RobotError, OSError) as e:
                fault, fault_unix = (
                    _Fault(ROBOT_TIMEOUT if isinstance(e, RobotTimeout) else ROBOT_ERROR, f"robot INFO failed: {e}"),
                    time.time(),
                )
            for note in notes:
                self.log(f"note: {note}")
            for index in range(cfg.episodes):
                if fault is not None:
                    break
                summary, fault, stop_ack = self._episode(index)
                if fault is not None:
                    fault_unix = self._fault_unix
                episodes.append(summary)
                self.log(
                    f"episode {index}: {summary.steps} steps, return {summary.episode_return:.3f}, {summary.end_reason}"
                )
            if stop_ack is None:  # one stop at the end (or after a set-up fault); never a second one
                stop_ack = self._safe_stop()
        finally:
            if scheduling is not None:
                os.sched_setscheduler(0, *scheduling)
            if gc_was_enabled:
                gc.enable()
            if previous is not None:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        steps = sum(e.steps for e in episodes)
        return ControllerReport(
            episodes=episodes,
            latency={k: LatencyStats.of(v) for k, v in self._lat.items()},
            steps=steps,
            deadline_misses=sum(e.deadline_misses for e in episodes),
            rate_hz=cfg.rate_hz,
            wall_s=time.perf_counter() - start,
            end_reason="completed" if fault is None else fault.reason,
            fault=None if fault is None else fault.message,
            fault_unix=fault_unix,
            last_reply_unix=self._last_reply_unix,
            stop_acknowledged=stop_ack,
            notes=notes,
        )

    def _set_realtime(self):
        """SCHED_FIFO for this thread when configured; returns the (policy, param) to restore."""
        priority = self.config.realtime_priority
        if not priority:
            return None
        if not hasattr(os, "sched_setscheduler"):
            raise ControllerSetupError("realtime_priority needs Linux (os.sched_setscheduler); set it to 0")
        previous = (os.sched_getscheduler(0), os.sched_getparam(0))
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        except PermissionError as e:
            raise ControllerSetupError(
                f"cannot switch the control loop to SCHED_FIFO priority {priority} ({e}): run as root or grant"
                " CAP_SYS_NICE (or raise RLIMIT_RTPRIO), or run with realtime_priority=0"
            ) from e
        return previous

    def _safe_stop(self) -> bool:
        """One stop request; True when the robot acknowledged it. Nothing is sent after this."""
        try:
            self.client.stop(timeout_s=self.config.stop_timeout_s)
            return True
        except Exception as e:  # noqa: BLE001 - a dead robot must not turn the stop into a crash
            self.log(f"stop not acknowledged: {e}")
            return False

    def _install_signals(self) -> dict | None:
        if threading.current_thread() is not threading.main_thread():
            return None
        previous = {}

        def handler(signum, frame):
            self.request_stop(f"{signal.Signals(signum).name} received")

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, handler)
        return previous

    def _robot_call(self, fn, *args, **kwargs):
        try:
            out = fn(*args, **kwargs)
        except self._robot_timeout as e:
            self._fault_unix = time.time()
            raise _Fault(ROBOT_TIMEOUT, f"the robot stopped answering: {e}") from e
        except self._robot_error as e:
            self._fault_unix = time.time()
            raise _Fault(ROBOT_ERROR, f"the robot reported an error: {e}") from e
        self._last_reply_unix = time.time()
        return out

    def _episode(self, index: int) -> tuple[EpisodeSummary, _Fault | None, bool | None]:
        cfg = self.config
        seed = cfg.seed + index
        period = cfg.period_s
        rec: dict[str, list] = {
            k: []
            for k in (
                "obs",
                "action",
                "reward",
                "next_obs",
                "valid",
                "compute_ms",
                "roundtrip_ms",
                "command_ms",
                "missed",
                "robot_time_s",
            )
        }
        success, end_reason, fault = None, None, None
        consecutive = misses = 0
        start_unix = time.time()
        try:
            if self._stop_requested.is_set():
                raise _Fault(INTERRUPTED, self._stop_signal or "stop requested")
            self._robot_call(self.client.reset, seed=seed, timeout_s=cfg.reset_timeout_s)
            self.policy.reset(seed=seed)
            gc.collect()
            if cfg.disable_gc:
                gc.disable()
            t0 = time.perf_counter()
            k = 0
            while True:
                wait_until(t0 + k * period, cfg.spin_s)
                tick = time.perf_counter()
                state = self._robot_call(self.client.state)
                t1 = time.perf_counter()
                if rec["obs"]:  # the reward and next observation of the previous action
                    rec["reward"][-1] = state.reward
                    rec["next_obs"][-1] = state.obs
                    rec["valid"][-1] = True
                if state.terminated:
                    success, end_reason = bool(state.success), TERMINATED
                    break
                # Checked after the read, so the last logged action keeps its reward and next observation.
                if self._stop_requested.is_set():
                    raise _Fault(INTERRUPTED, self._stop_signal or "stop requested")
                if cfg.episode_steps is not None and len(rec["obs"]) >= cfg.episode_steps:
                    success, end_reason = bool(state.success), TIME_LIMIT
                    break
                try:
                    action = self.policy(state.obs)
                except Exception as e:  # noqa: BLE001 - any policy failure stops the robot
                    self._fault_unix = time.time()
                    raise _Fault(POLICY_ERROR, f"the policy failed: {type(e).__name__}: {e}") from e
                t2 = time.perf_counter()
                rec["obs"].append(np.asarray(state.obs, np.float32))
                rec["action"].append(action)
                rec["reward"].append(0.0)
                rec["next_obs"].append(np.asarray(state.obs, np.float32))
                rec["valid"].append(False)
                rec["compute_ms"].append((t2 - t1) * 1e3)
                rec["roundtrip_ms"].append((t1 - tick) * 1e3)
                rec["command_ms"].append(math.nan)
                rec["missed"].append(False)
                rec["robot_time_s"].append(state.time_s)
                self._robot_call(self.client.command, action)
                t3 = time.perf_counter()
                rec["command_ms"][-1] = (t3 - t2) * 1e3
                for key, value in (
                    ("compute", t2 - t1),
                    ("roundtrip", t1 - tick),
                    ("command", t3 - t2),
                    ("step", t3 - tick),
                    ("wakeup", tick - (t0 + k * period)),
                ):
                    self._lat[key].append(value * 1e3)
                # Deadlines passed while this step ran (beyond its own tick) are missed.
                ticks_done = math.floor((t3 - t0) / period)
                if ticks_done > k:
                    missed = ticks_done - k
                    rec["missed"][-1] = True
                    misses += missed
                    consecutive += missed
                    k = ticks_done + 1
                    if consecutive >= cfg.max_missed:
                        self._fault_unix = time.time()
                        raise _Fault(
                            DEADLINE_MISSES,
                            f"{consecutive} consecutive control deadlines missed at"
                            f" {cfg.rate_hz:g} Hz (last step took {(t3 - tick) * 1e3:.2f} ms,"
                            f" policy {(t2 - t1) * 1e3:.2f} ms)",
                        )
                else:
                    consecutive = 0
                    k += 1
        except _Fault as f:
            fault, end_reason = f, f.reason
        except KeyboardInterrupt:  # no handler installed (not the main thread, or handle_signals=False)
            self._fault_unix = time.time()
            fault, end_reason = _Fault(INTERRUPTED, "KeyboardInterrupt"), INTERRUPTED
        finally:
            if cfg.disable_gc:
                gc.enable()
        if fault is not None and fault.reason == INTERRUPTED:
            self._fault_unix = time.time()
        steps = len(rec["obs"])
        rewards = np.asarray(rec["reward"], np.float32)
        summary = EpisodeSummary(
            index=index,
            seed=seed,
            steps=steps,
            episode_return=float(rewards.sum()) if steps else 0.0,
            success=success,
            end_reason=end_reason,
            complete=fault is None,
            deadline_misses=misses,
        )
        # After a fault: stop first (the robot must not wait on the disk), then nothing more is sent.
        stop_ack = self._safe_stop() if fault is not None else None
        if self.writer is not None and steps:
            summary.dataset_index = self._write(rec, summary, start_unix, fault)
        return summary, fault, stop_ack

    def _write(self, rec, summary: EpisodeSummary, start_unix: float, fault: _Fault | None) -> int | None:
        meta = {
            **self.episode_metadata,
            "seed": summary.seed,
            "end_reason": summary.end_reason,
            "complete": summary.complete,
            "fault": None if fault is None else fault.message,
            "deadline_misses": summary.deadline_misses,
            "rate_hz": self.config.rate_hz,
            "start_unix": start_unix,
        }
        extras = {
            "next_observations": np.stack(rec["next_obs"]),
            "valid": np.asarray(rec["valid"], bool),
            "compute_ms": np.asarray(rec["compute_ms"], np.float32),
            "roundtrip_ms": np.asarray(rec["roundtrip_ms"], np.float32),
            "command_ms": np.asarray(rec["command_ms"], np.float32),
            "missed": np.asarray(rec["missed"], bool),
            "robot_time_s": np.asarray(rec["robot_time_s"], np.float64),
        }
        try:
            return self.writer.add_episode(
                np.stack(rec["obs"]),
                np.stack(rec["action"]),
                rewards=np.asarray(rec["reward"], np.float32),
                success=summary.success,
                extras=extras,
                metadata=meta,
            )
        except Exception as e:  # noqa: BLE001 - a logging failure must not hide the run's outcome
            self.log(f"could not log episode {summary.index}: {type(e).__name__}: {e}")
            return None
