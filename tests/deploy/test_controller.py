"""The controller loop against an in-process SimRobotServer: logging, deadlines, faults, reconnection."""

import socket
import time

import jax.numpy as jnp
import numpy as np
import pytest

import robojax  # noqa: F401
import robojax.deploy as deploy
from robojax.data.episodes import EpisodeWriter, load_episodes
from robojax.deploy.controller import (
    DEADLINE_MISSES,
    EXIT_DEADLINES,
    EXIT_OK,
    EXIT_POLICY_FAULT,
    EXIT_ROBOT_FAULT,
    INTERRUPTED,
    POLICY_ERROR,
    ROBOT_TIMEOUT,
    TIME_LIMIT,
    Controller,
    ControllerConfig,
    ControllerSetupError,
)
from robojax.drivers.client import RobotClient, RobotTimeout
from robojax.drivers.sim_robot import SimRobotServer
from robojax.envs.core import ArraySpec
from robojax.export import export_policy
from robojax.policy import Policy

OBS_SPEC = ArraySpec((24,), np.float32, name="observation")
ACT_SPEC = ArraySpec((3,), np.float32, -1.0, 1.0, name="action")
W = np.random.default_rng(0).normal(size=(3, 24)).astype(np.float32) * 0.3


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    def step(carry, obs, key):
        return jnp.tanh(W @ obs), carry

    return export_policy(
        Policy(lambda: (), step, name="linear"),
        tmp_path_factory.mktemp("a") / "linear",
        observation_spec=OBS_SPEC,
        action_spec=ACT_SPEC,
        control_dt=0.04,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Spy:
    """A RobotClient wrapper recording every call, to prove what was sent after a fault."""

    def __init__(self, client):
        self.client, self.calls = client, []
        self.timeout_s, self.address = client.timeout_s, client.address

    def __getattr__(self, name):
        fn = getattr(self.client, name)

        def call(*args, **kwargs):
            try:
                out = fn(*args, **kwargs)
            except Exception as e:
                self.calls.append((name, type(e).__name__))
                raise
            self.calls.append((name, "ok"))
            return out

        return call


class HookPolicy:
    """Calls `hook(n)` before the n-th (1-based) policy call."""

    def __init__(self, policy, hook):
        self.policy, self.hook, self.n = policy, hook, 0
        self.observation_spec, self.action_spec, self.control_dt = (
            policy.observation_spec,
            policy.action_spec,
            policy.control_dt,
        )

    def reset(self, seed=None):
        self.policy.reset(seed)

    def __call__(self, obs):
        self.n += 1
        self.hook(self.n)
        return self.policy(obs)


class SlowPolicy:
    """A policy that takes `delay_s` per call after `after` fast calls."""

    def __init__(self, policy, delay_s, after=0):
        self.policy, self.delay_s, self.after, self.n = policy, delay_s, after, 0
        self.observation_spec, self.action_spec, self.control_dt = (
            policy.observation_spec,
            policy.action_spec,
            policy.control_dt,
        )

    def reset(self, seed=None):
        self.policy.reset(seed)

    def __call__(self, obs):
        self.n += 1
        if self.n > self.after:
            time.sleep(self.delay_s)
        return self.policy(obs)


def test_episodes_are_logged_with_latencies(artifact, tmp_path):
    policy = deploy.load(artifact)
    with (
        SimRobotServer("arm_reach", bind="tcp://127.0.0.1:0", real_time_factor=4.0).start() as server,
        RobotClient(server.address, timeout_s=0.5) as client,
    ):
        writer = EpisodeWriter(tmp_path / "log", OBS_SPEC, ACT_SPEC, env="arm_reach", control_dt=0.02)
        # max_missed is generous: this test is about logging, and CI machines are noisy.
        config = ControllerConfig(rate_hz=50, episodes=2, episode_steps=15, seed=10, max_missed=1000)
        report = Controller(policy, client, config, writer=writer, episode_metadata={"policy": "linear"}).run()
        writer.close()
    assert report.end_reason == "completed" and report.exit_code == EXIT_OK and report.fault is None
    assert report.stop_acknowledged is True
    assert [e.steps for e in report.episodes] == [15, 15] and report.steps == 30
    assert all(e.end_reason == TIME_LIMIT and e.complete for e in report.episodes)
    for key in ("compute", "roundtrip", "command", "step"):
        stats = report.latency[key]
        assert stats.count == 30 and 0 < stats.p50_ms <= stats.p99_ms <= stats.max_ms
    assert "policy compute" in report.table() and "deadline misses" in report.table()

    data = load_episodes(tmp_path / "log", observation_spec=OBS_SPEC, action_spec=ACT_SPEC)
    assert len(data.episodes) == 2
    ep = data.episodes[0]
    assert ep.observations.shape == (15, 24) and ep.actions.shape == (15, 3)
    assert ep.metadata["end_reason"] == TIME_LIMIT and ep.metadata["complete"] and ep.metadata["seed"] == 10
    assert ep.metadata["policy"] == "linear"
    for name in ("compute_ms", "roundtrip_ms", "command_ms", "missed", "valid", "next_observations", "robot_time_s"):
        assert ep.extras[name].shape[0] == 15
    assert ep.extras["valid"].all()
    # The logged actions are the policy's actions on the logged observations.
    policy.reset()
    np.testing.assert_allclose(ep.actions, np.stack([policy(o) for o in ep.observations]), rtol=1e-6)
    # next_observations[t] is observations[t + 1]: consecutive reads of the same robot.
    np.testing.assert_array_equal(ep.extras["next_observations"][:-1], ep.observations[1:])
    times = ep.extras["robot_time_s"]
    assert np.all(np.diff(times) >= 0) and times[-1] > times[0]  # the robot's clock ran during the episode


def test_deadline_misses_stop_the_robot(artifact, tmp_path):
    policy = SlowPolicy(deploy.load(artifact), delay_s=0.05, after=3)
    with (
        SimRobotServer("arm_reach", bind="tcp://127.0.0.1:0").start() as server,
        RobotClient(server.address, timeout_s=0.5) as client,
    ):
        spy = Spy(client)
        writer = EpisodeWriter(tmp_path / "log", OBS_SPEC, ACT_SPEC)
        report = Controller(
            policy, spy, ControllerConfig(rate_hz=50, episode_steps=100, max_missed=3), writer=writer
        ).run()
        assert client.state().stopped  # the server holds the arm and ignores commands
    assert report.end_reason == DEADLINE_MISSES and report.exit_code == EXIT_DEADLINES
    assert "consecutive control deadlines missed" in report.fault
    assert report.stop_acknowledged is True and spy.calls[-1] == ("stop", "ok")
    assert [c for c, _ in spy.calls].count("stop") == 1
    ep = load_episodes(tmp_path / "log").episodes[0]
    assert ep.metadata["end_reason"] == DEADLINE_MISSES and not ep.metadata["complete"]
    # The slow policy starts after 3 calls, but a loaded machine may miss earlier deadlines too.
    assert len(ep) >= 1 and ep.extras["missed"][-1]


def test_policy_failure_stops_the_robot(tmp_path):
    def step(carry, obs, key):
        return jnp.log(obs[:3] - 1e6), carry  # NaN

    out = export_policy(
        Policy(lambda: (), step), tmp_path / "nan", observation_spec=OBS_SPEC, action_spec=ACT_SPEC, control_dt=0.04
    )
    policy = deploy.load(out, warmup=False)
    with (
        SimRobotServer("arm_reach", bind="tcp://127.0.0.1:0").start() as server,
        RobotClient(server.address, timeout_s=0.5) as client,
    ):
        spy = Spy(client)
        report = Controller(policy, spy, ControllerConfig(rate_hz=50, episode_steps=10)).run()
    assert report.end_reason == POLICY_ERROR and report.exit_code == EXIT_POLICY_FAULT
    assert "non-finite" in report.fault
    assert "command" not in [c for c, _ in spy.calls] and spy.calls[-1] == ("stop", "ok")


def test_mismatched_robot_is_refused_before_anything_moves(tmp_path):
    out = export_policy(
        Policy(lambda: (), lambda c, o, k: (o[:3], c)),
        tmp_path / "small",
        observation_spec=ArraySpec((5,), np.float32),
        action_spec=ACT_SPEC,
        control_dt=0.04,
    )
    with (
        SimRobotServer("arm_reach", bind="tcp://127.0.0.1:0").start() as server,
        RobotClient(server.address, timeout_s=0.5) as client,
    ):
        spy = Spy(client)
        with pytest.raises(ControllerSetupError, match="shape"):
            Controller(deploy.load(out), spy, ControllerConfig(rate_hz=25)).run()
    assert [c for c, _ in spy.calls] == ["info"]


def test_dead_server_detected_nothing_further_sent_then_reconnect(artifact, tmp_path):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    rate = 5.0  # generous: the server shares this process (and its GIL) and CI machines are loaded
    server = SimRobotServer("arm_reach", bind=address).start()
    client = RobotClient(address, timeout_s=0.5 / rate)
    spy = Spy(client)
    writer = EpisodeWriter(tmp_path / "log", OBS_SPEC, ACT_SPEC)
    killed = {}

    def kill_server(n):
        if n == 10:  # the server goes away between two commands
            server.close()
            killed["t"] = time.time()

    policy = HookPolicy(deploy.load(artifact), kill_server)
    controller = Controller(
        policy, spy, ControllerConfig(rate_hz=rate, episode_steps=10_000, max_missed=1000), writer=writer
    )
    report = controller.run()
    assert killed, report.table()
    assert report.end_reason == ROBOT_TIMEOUT and report.exit_code == EXIT_ROBOT_FAULT
    assert "stopped answering" in report.fault
    assert report.fault_unix - killed["t"] <= 2 / rate, report.fault_unix - killed["t"]
    # After the first timeout the controller sent exactly one stop request and nothing else.
    first = next(i for i, (_, r) in enumerate(spy.calls) if r == "RobotTimeout")
    assert [c for c, _ in spy.calls[first + 1 :]] == ["stop"] and report.stop_acknowledged is False
    ep = load_episodes(tmp_path / "log").episodes[0]
    assert ep.metadata["end_reason"] == ROBOT_TIMEOUT and not ep.metadata["complete"]
    assert len(ep) >= 10 and not ep.extras["valid"][-1] and ep.extras["valid"][:-1].all()

    # The server comes back on the same port: the same client works again from the next reset.
    with SimRobotServer("arm_reach", bind=address).start():
        deadline = time.time() + 5
        while True:
            try:
                client.reset(seed=1, timeout_s=0.5)
                break
            except RobotTimeout:
                assert time.time() < deadline, "the client did not reconnect to the restarted server"
        client.timeout_s = 0.5  # what is tested here is the reconnection, not the deadline
        report = Controller(
            deploy.load(artifact), client, ControllerConfig(rate_hz=rate, episode_steps=5, max_missed=1000)
        ).run()
        assert report.end_reason == "completed" and report.steps == 5, report.table()
    client.close()
    writer.close()


def test_interrupt_request_stops_and_logs_partial_episode(artifact, tmp_path):
    policy = deploy.load(artifact)
    with (
        SimRobotServer("arm_reach", bind="tcp://127.0.0.1:0").start() as server,
        RobotClient(server.address, timeout_s=0.5) as client,
    ):
        writer = EpisodeWriter(tmp_path / "log", OBS_SPEC, ACT_SPEC)
        controller = Controller(None, client, ControllerConfig(rate_hz=50, episode_steps=1000), writer=writer)

        def stop_at_8(n):
            if n == 8:
                controller.request_stop("test asked to stop")

        controller.policy = HookPolicy(policy, stop_at_8)
        report = controller.run(handle_signals=False)
    assert report.end_reason == INTERRUPTED and report.exit_code == 130 and report.stop_acknowledged
    ep = load_episodes(tmp_path / "log").episodes[0]
    assert len(ep) == 8 and ep.metadata["end_reason"] == INTERRUPTED and not ep.metadata["complete"]


def test_config_validation():
    with pytest.raises(ValueError, match="rate_hz"):
        ControllerConfig(rate_hz=0)
    with pytest.raises(ValueError, match="max_missed"):
        ControllerConfig(rate_hz=10, max_missed=0)
    with pytest.raises(ValueError, match="spin_s"):
        ControllerConfig(rate_hz=1000, spin_s=0.002)
    with pytest.raises(ValueError, match="realtime_priority"):
        ControllerConfig(rate_hz=10, realtime_priority=100)


def test_realtime_priority_is_applied_and_restored(artifact):
    import os

    before = os.sched_getscheduler(0)
    seen = []
    policy = HookPolicy(deploy.load(artifact), lambda n: seen.append(os.sched_getscheduler(0)))
    with (
        SimRobotServer("arm_reach", bind="tcp://127.0.0.1:0").start() as server,
        RobotClient(server.address, timeout_s=0.5) as client,
    ):
        config = ControllerConfig(rate_hz=50, episode_steps=3, max_missed=1000, realtime_priority=5)
        try:
            report = Controller(policy, client, config).run()
        except ControllerSetupError as e:
            pytest.skip(f"no permission for SCHED_FIFO here: {e}")
    assert report.end_reason == "completed" and seen == [os.SCHED_FIFO] * 3
    assert os.sched_getscheduler(0) == before
