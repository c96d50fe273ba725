"""RobotEnv over a SimRobotServer: the HostEnv contract, gymnasium's checker, safety, reconnects,
and SAC's host loop end to end."""

import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import robojax  # noqa: F401
from robojax.drivers.client import RobotClient, RobotError
from robojax.drivers.robot_env import GymnasiumRobotEnv, RobotEnv, RobotSafetyStop
from robojax.drivers.sim_robot import SimRobotServer


@pytest.fixture(scope="module", autouse=True)
def _fast_gil_switching():
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    yield
    sys.setswitchinterval(old)


@pytest.fixture(scope="module")
def server():
    with SimRobotServer("arm_reach", bind="tcp://127.0.0.1:0", real_time_factor=20.0).start() as srv:
        yield srv


def test_host_env_contract_and_time_limit(server):
    env = RobotEnv(server.address, episode_length=5)
    try:
        assert env.observation_spec.shape == (24,) and env.action_spec.shape == (3,) and env.dt == 0.04
        state = env.reset(0)
        assert state.obs.dtype == np.float32 and not state.terminated and not state.info["episode_done"]
        last = 0
        for t in range(5):
            state = env.step(state, np.array([0.5, 0.0, 0.0], np.float32))
            # At least one control period per env step (more if the client was late for a boundary).
            assert state.metrics["robot_step"] > last
            last = state.metrics["robot_step"]
        assert state.truncated and not state.terminated and state.info["episode_done"]
        assert state.info["episode_length"] == 5
        with pytest.raises(RuntimeError, match="call reset"):
            env.step(state, np.zeros(3))
    finally:
        env.close()


def test_autoreset_keeps_final_obs(server):
    env = RobotEnv(server.address, episode_length=3, autoreset=True)
    try:
        state = env.reset(1)
        returns = 0.0
        for _ in range(3):
            state = env.step(state, np.zeros(3))
            returns += float(state.reward)
        assert state.truncated and state.info["episode_done"]
        assert state.info["episode_return"] == pytest.approx(returns, rel=1e-5)
        assert not np.array_equal(state.obs, state.info["final_obs"])  # obs starts the next episode
        state = env.step(state, np.zeros(3))  # and stepping goes on
        assert not state.info["episode_done"]
    finally:
        env.close()


def test_safety_limits(server):
    env = RobotEnv(server.address, max_action=0.5, workspace_low=[0.3, -0.2, 0.3], workspace_high=[0.6, 0.2, 0.6])
    try:
        obs = np.zeros(24, np.float32)
        obs[15:18] = [0.45, 0.0, 0.31]
        a = env.safe_action(obs, np.array([2.0, -1.0, -1.0]))
        assert a[0] == pytest.approx(0.5) and a[1] == pytest.approx(-0.5)  # per-step limit
        assert a[2] == pytest.approx((0.3 - 0.31) / 0.03, abs=1e-5)  # target clipped to the box floor
        state = env.reset(2)
        for _ in range(30):  # drive down and sideways: the ee stays in the box (plus tracking slack)
            state = env.step(state, np.array([0.0, 1.0, -1.0]))
        ee = state.obs[15:18]
        assert ee[2] > 0.3 - 0.02 and ee[1] < 0.2 + 0.02
        state = env.reset(2)
        with pytest.raises(RobotSafetyStop, match="NaN or inf.*safe stop"):
            env.step(state, np.array([np.nan, 0.0, 0.0]))
        with RobotClient(server.address, timeout_s=2.0) as probe:
            assert probe.state().stopped  # the robot really was stopped
        assert env.safe_stops == 1
        assert not env.reset(2).info["episode_done"]  # reset clears the stop
    finally:
        env.close()


def test_gymnasium_env_checker(server):
    from gymnasium.utils.env_checker import check_env

    env = GymnasiumRobotEnv(RobotEnv(server.address, episode_length=10))
    try:
        check_env(env, skip_render_check=True, skip_close_check=True)
        obs, info = env.reset(seed=3)
        obs2, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs2) and isinstance(reward, float) and "success" in info
    finally:
        env.close()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(port):
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.sim_robot_server", f"--port={port}", "--real_time_factor=20"],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert re.search(r"at tcp://", line), line
    return proc


def test_server_killed_then_restarted_reconnects_on_reset():
    port = _free_port()
    proc = _spawn(port)
    env = RobotEnv(f"tcp://127.0.0.1:{port}", timeout_s=0.3, reconnect_timeout_s=60)
    try:
        state = env.reset(0)
        state = env.step(state, np.zeros(3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        t0 = time.perf_counter()
        with pytest.raises(RobotSafetyStop, match="timed out"):
            env.step(state, np.zeros(3))
        assert time.perf_counter() - t0 < 2.0  # detected within the timeouts, not hanging
        with pytest.raises(RuntimeError, match="call reset"):
            env.step(state, np.zeros(3))
        proc = _spawn(port)  # a fresh server on the same port
        state = env.reset(0)  # reconnects
        state = env.step(state, np.zeros(3))
        assert state.metrics["robot_step"] == 1
    finally:
        env.close()
        proc.kill()
        proc.wait()


def test_unreachable_robot_gives_clear_error():
    with pytest.raises(RobotError, match="timed out"):
        RobotEnv(f"tcp://127.0.0.1:{_free_port()}", reset_timeout_s=0.2)


def test_sac_host_loop_trains_against_sim_servers():
    """SAC's actor/learner threads on RobotEnv over two sim robots (one collects, one evaluates)."""
    import dataclasses

    from robojax.agents.sac import host_loop
    from robojax.agents.sac.config import HOST_SAC_DEFAULTS, HostTrainConfig

    with (
        SimRobotServer("arm_reach", bind="tcp://127.0.0.1:0", real_time_factor=50.0).start() as train_srv,
        SimRobotServer("arm_reach", bind="tcp://127.0.0.1:0", real_time_factor=50.0, seed=1).start() as eval_srv,
    ):
        sac = dataclasses.replace(HOST_SAC_DEFAULTS, actor_hidden_dims=(16,), critic_hidden_dims=(16,), batch_size=32)
        config = HostTrainConfig(
            env="sim_robot:arm_reach",
            total_env_steps=300,
            learning_starts=100,
            eval_interval=300,
            eval_episodes=1,
            log_interval=100,
            progress_bar=False,
            sac=sac,
        )
        # A generous per-request timeout: the servers share this process (and, under pytest-xdist,
        # the CPU) with the learner's compiles, so a reply can take longer than a real robot's 0.5 s.
        result = host_loop.train(
            config,
            env_factory=lambda: RobotEnv(train_srv.address, episode_length=50, autoreset=True, timeout_s=5.0),
            eval_env_factory=lambda: RobotEnv(eval_srv.address, episode_length=50, autoreset=True, timeout_s=5.0),
        )
    assert result.steps == 300 and result.updates > 0
    assert len(result.eval_history) == 1 and np.isfinite(result.final_return)
