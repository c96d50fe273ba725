"""Fault survival of the real processes: experiments.run_controller against experiments.sim_robot_server.

* the server is killed (SIGKILL) mid-run: the controller notices within two control periods,
  exits non-zero with a clear message, and its episode log loads;
* the server restarts on the same port: the next controller run works and appends to the log;
* Ctrl-C (SIGINT) on the controller: the robot is stopped and the partial episode is logged.
"""

import json
import os
import signal
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import pytest

import robojax  # noqa: F401
from robojax.data.episodes import load_episodes
from robojax.drivers.client import RobotClient
from robojax.envs.core import ArraySpec
from robojax.export import export_policy
from robojax.policy import Policy

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RATE_HZ = 10.0  # the call timeout is half a period: 50 ms, generous for a loaded CI machine
PERIOD = 1.0 / RATE_HZ
W = np.random.default_rng(0).normal(size=(3, 24)).astype(np.float32) * 0.3


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return export_policy(
        Policy(lambda: (), lambda c, o, k: (jnp.tanh(W @ o), c), name="linear"),
        tmp_path_factory.mktemp("a") / "linear",
        observation_spec=ArraySpec((24,), np.float32, name="observation"),
        action_spec=ArraySpec((3,), np.float32, -1.0, 1.0, name="action"),
        control_dt=0.04,
    )


def _start_server(port=0):
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.sim_robot_server", "--task=arm_reach", f"--port={port}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = _wait_for(proc, "server at", 60)
    return proc, line.split("server at", 1)[1].split()[0]


def _wait_for(proc, text, timeout_s):
    """Read `proc`'s stdout until a line containing `text`."""
    deadline = time.time() + timeout_s
    lines = []
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return line
    proc.kill()
    raise AssertionError(f"no {text!r} from {proc.args}: stdout {lines!r}, stderr {proc.stderr.read()[-2000:]!r}")


def _controller(artifact, address, log, summary, *extra):
    cmd = [
        sys.executable,
        "-m",
        "experiments.run_controller",
        f"--policy={artifact}",
        f"--robot={address}",
        f"--rate_hz={RATE_HZ}",
        f"--log={log}",
        f"--summary_json={summary}",
        *extra,
    ]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc, timeout_s=60):
    out, err = proc.communicate(timeout=timeout_s)
    return proc.returncode, out, err


def test_server_killed_then_restarted(artifact, tmp_path):
    server, address = _start_server()
    log, summary = tmp_path / "log", tmp_path / "summary.json"
    # max_missed is generous so that a loaded test machine's hiccups do not end the run first.
    ctrl = _controller(artifact, address, log, summary, "--episode_steps=100000", "--max_missed=50")
    try:
        _wait_for(ctrl, "running", 120)
        time.sleep(0.7)
        assert ctrl.poll() is None, ("the controller ended before the kill", _finish(ctrl))
        server.send_signal(signal.SIGKILL)
        killed = time.time()
        server.wait(10)
        code, out, err = _finish(ctrl)
    finally:
        for p in (server, ctrl):
            if p.poll() is None:
                p.kill()
    assert code == 2, (code, out[-2000:], err[-2000:])
    assert "robot stopped: the robot stopped answering" in err and "timed out" in err
    with open(summary) as f:
        report = json.load(f)
    assert report["end_reason"] == "robot_timeout" and report["exit_code"] == 2
    print(f"fault detected {1e3 * (report['fault_unix'] - killed):.1f} ms after SIGKILL (period {1e3 * PERIOD:.0f} ms)")
    assert 0 <= report["fault_unix"] - killed <= 2 * PERIOD, (
        f"detected {report['fault_unix'] - killed:.3f} s after the kill"
    )
    assert report["stop_acknowledged"] is False
    assert "FAULT (robot_timeout)" in out and "policy compute" in out  # the summary table
    data = load_episodes(log)
    (ep,) = data.episodes
    assert len(ep) >= 3 and ep.metadata["end_reason"] == "robot_timeout" and not ep.metadata["complete"]
    assert data.env == "arm_reach" and data.control_dt == pytest.approx(PERIOD)

    # The server comes back on the same port; the next run resets, drives it, and appends to the log.
    port = address.rsplit(":", 1)[1]
    server, address2 = _start_server(port)
    try:
        assert address2 == address
        # A long call timeout: a freshly started server on a loaded machine may be slow to answer at first.
        code, out, err = _finish(
            _controller(artifact, address, log, summary, "--episode_steps=10", "--max_missed=50", "--timeout_ms=500")
        )
    finally:
        server.kill()
    assert code == 0, (out[-2000:], err[-2000:])
    data = load_episodes(log)
    assert len(data.episodes) == 2 and len(data.episodes[1]) == 10 and data.episodes[1].metadata["complete"]


def test_ctrl_c_stops_robot_and_keeps_log(artifact, tmp_path):
    server, address = _start_server()
    log, summary = tmp_path / "log", tmp_path / "summary.json"
    ctrl = _controller(
        artifact, address, log, summary, "--episodes=3", "--episode_steps=100000", "--max_missed=50", "--timeout_ms=500"
    )
    try:
        _wait_for(ctrl, "running", 120)
        time.sleep(0.7)
        ctrl.send_signal(signal.SIGINT)
        code, out, err = _finish(ctrl)
        with RobotClient(address, timeout_s=1.0) as client:
            assert client.state().stopped  # the controller's stop reached the robot
    finally:
        for p in (server, ctrl):
            if p.poll() is None:
                p.kill()
    assert code == 130, (code, out[-2000:], err[-2000:])
    assert "SIGINT" in err
    with open(summary) as f:
        report = json.load(f)
    assert report["end_reason"] == "interrupted" and report["stop_acknowledged"] is True
    (ep,) = load_episodes(log).episodes
    assert len(ep) >= 3 and ep.metadata["end_reason"] == "interrupted" and not ep.metadata["complete"]
    assert ep.extras["valid"].all()  # the tick that saw the stop request had read the last reward
