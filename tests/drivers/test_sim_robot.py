"""The C-MuJoCo simulated arm against the MJX task it mirrors, and its real-time behaviour."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import robojax  # noqa: F401
from robojax.drivers.client import RobotClient
from robojax.drivers.sim_robot import TASKS, SimArm, SimRobotServer, model_path

TASK_NAMES = ["arm_reach", "arm_push_cube", "arm_pick_place"]


@pytest.mark.parametrize("task", TASK_NAMES)
def test_constants_and_model_match_envs_arm(task):
    import envs
    from envs._assets import asset_path

    cls = envs.task_class(task)
    assert issubclass(cls, TASKS[task])  # one definition: the env inherits the simulator's task class
    constants = {
        k: v
        for c in TASKS[task].__mro__
        for k, v in vars(c).items()
        if not k.startswith("_") and isinstance(v, (int, float, str, np.ndarray))
    }
    assert {"max_ee_step", "workspace_low", "success_radius", "episode_length"} <= set(constants)
    for name in constants:
        value = getattr(TASKS[task], name)
        assert (
            np.allclose(np.asarray(getattr(cls, name)), np.asarray(value))
            if not isinstance(value, str)
            else getattr(cls, name) == value
        ), name
    assert model_path(task) == asset_path("panda_arm", cls.xml)
    sim = SimArm(task)
    assert sim.obs_dim == cls().observation_spec.shape[0]
    assert sim.action_dim == (4 if cls.uses_gripper else 3)


def test_trajectory_matches_mjx_env():
    """Same initial state, same 20 actions: obs and reward agree to 1e-4 / 1e-5.

    Not bit-exact: MJX runs in float32 and C MuJoCo in float64 (measured gap ~1e-5 over 20 steps).
    """
    import jax

    from envs.arm import ArmReach

    env = ArmReach()
    reset, step = jax.jit(env.reset), jax.jit(env.step)
    state = reset(jax.random.PRNGKey(3))
    sim = SimArm("arm_reach")
    d = state.physics
    got = sim.set_physics_state(
        np.asarray(d.qpos),
        np.asarray(d.qvel),
        np.asarray(d.ctrl),
        np.asarray(d.mocap_pos),
        {"target": np.asarray(state.episode["target"])},
    )
    np.testing.assert_allclose(got["obs"], np.asarray(state.obs), atol=1e-5)
    rng = np.random.default_rng(0)
    moved = 0.0
    for _ in range(20):
        action = rng.uniform(-1, 1, 3).astype(np.float32)
        before = np.asarray(state.obs)
        state = step(state, action)
        got = sim.step_sync(action)
        np.testing.assert_allclose(got["obs"], np.asarray(state.obs), atol=1e-4)
        assert abs(float(got["reward"]) - float(state.reward)) < 1e-5
        assert bool(got["success"]) == bool(state.info["success"])
        assert bool(got["terminated"]) == bool(state.terminated)
        moved += np.linalg.norm(np.asarray(state.obs)[15:18] - before[15:18])
    assert moved > 0.1  # the comparison covered real motion


def test_pick_place_trajectory_matches_mjx_env():
    """arm_pick_place (4-D actions, tuned gripper servo): reach down over the cube, close, lift.

    Looser than arm_reach's parity test: the cube rests on the table from the start, and the two
    contact solvers differ (most visibly in the resting cube's velocity), more so once the fingers
    touch the cube.
    """
    import jax

    from envs.arm import ArmPickPlace

    env = ArmPickPlace()
    reset, step = jax.jit(env.reset), jax.jit(env.step)
    state = reset(jax.random.PRNGKey(5))
    sim = SimArm("arm_pick_place")
    d = state.physics
    got = sim.set_physics_state(
        np.asarray(d.qpos),
        np.asarray(d.qvel),
        np.asarray(d.ctrl),
        np.asarray(d.mocap_pos),
        {"target": np.asarray(state.episode["target"])},
    )
    np.testing.assert_allclose(got["obs"], np.asarray(state.obs), atol=1e-5)
    assert got["obs"].shape == (39,)
    for t in range(16):
        obs = np.asarray(state.obs)
        to_cube = obs[18:21] - obs[15:18]
        grip = 1.0 if t < 12 else -1.0  # open while approaching, then close
        action = np.append(np.clip(to_cube / 0.03, -1, 1), grip).astype(np.float32)
        state = step(state, action)
        got = sim.step_sync(action)
        want = np.asarray(state.obs)
        pose = np.r_[0:25, 31:39]  # all but the cube's velocity
        np.testing.assert_allclose(got["obs"][pose], want[pose], atol=1e-3 if t < 12 else 1e-2)
        # The resting cube's velocity is contact-solver noise (MJX ~7e-3 m/s, C MuJoCo ~2e-5).
        np.testing.assert_allclose(got["obs"][25:31], want[25:31], atol=0.05)
        assert abs(float(got["reward"]) - float(state.reward)) < (1e-3 if t < 12 else 1e-2)
        assert bool(got["success"]) == bool(state.info["success"])
        assert bool(got["terminated"]) == bool(state.terminated)
    assert np.asarray(state.obs)[17] < 0.15  # the ee really came down towards the cube


def test_reset_distribution_like_mjx():
    sim = SimArm("arm_reach", seed=0)
    targets, joints = [], []
    for seed in range(200):
        obs = sim.reset(seed)["obs"]
        targets.append(obs[18:21])
        joints.append(obs[:7])
    targets, joints = np.array(targets), np.array(joints)
    assert np.all(targets >= [0.3, -0.3, 0.1]) and np.all(targets <= [0.7, 0.3, 0.5])
    home = np.array([0, -0.785398, 0, -2.356194, 0, 1.570796, 0.785398])
    assert np.all(np.abs(joints - home) <= 0.1 + 1e-6) and np.abs(joints - home).max() > 0.09
    push = SimArm("arm_push_cube")
    for seed in range(50):
        obs = push.reset(seed)["obs"]
        cube, goal = obs[18:21], obs[31:33]
        assert 0.4 <= cube[0] <= 0.6 and -0.15 <= cube[1] <= 0.15 and 0.35 <= goal[0] <= 0.7
        assert np.linalg.norm(goal - cube[:2]) > 0.0


def test_pick_place_reset_distribution_and_gripper():
    sim = SimArm("arm_pick_place", seed=0)
    for seed in range(50):
        obs = sim.reset(seed)["obs"]
        cube, target_xy = obs[18:21], obs[31:33]
        assert 0.35 <= cube[0] <= 0.43 and abs(cube[1]) <= 0.05 + 1e-6 and abs(cube[2] - 0.02) < 2e-3
        assert 0.62 <= target_xy[0] <= 0.70 and abs(target_xy[1]) <= 0.05
    for _ in range(15):
        state = sim.step_sync(np.array([0.0, 0.0, 0.0, -1.0]))
    closed = state["obs"][14]
    for _ in range(15):
        state = sim.step_sync(np.array([0.0, 0.0, 0.0, 1.0]))
    assert state["obs"][14] > closed + 0.3  # obs[14] = 25 x finger opening: the gripper action works


def test_workspace_clipping_on_server():
    sim = SimArm("arm_reach")
    sim.reset(0)
    for _ in range(40):
        state = sim.step_sync(np.array([0.0, 0.0, -1.0]))
    assert state["obs"][17] > 0.02 - 0.01  # the ee stops near the workspace floor (z >= 0.02)


def test_real_time_pacing_never_runs_ahead():
    with SimRobotServer("arm_reach", bind="tcp://127.0.0.1:0", real_time_factor=5.0).start() as srv:
        with RobotClient(srv.address, timeout_s=2.0) as client:
            client.reset(0)
            t0 = time.perf_counter()
            client.command(np.zeros(3))
            time.sleep(0.3)
            state = client.state()
            wall = time.perf_counter() - t0
            assert 0 < state.time_s <= 5.0 * wall + 0.01  # at most real_time_factor x wall time
            # time_s is MuJoCo's accumulated data.time (mid-period between boundaries): floor it, with
            # room for the accumulation error (37 periods of 0.04 s read 1.4799999...).
            assert state.step == int(state.time_s / 0.04 + 1e-6)


@pytest.mark.parametrize("task,obs_dim", [("arm_push_cube", 38), ("arm_pick_place", 39)])
def test_experiment_entry_point_prints_address_and_stops_on_sigterm(task, obs_dim):
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.sim_robot_server", f"--task={task}", "--port=0", "--real_time_factor=10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    try:
        line = proc.stdout.readline()
        address = re.search(r"at (tcp://\S+)", line).group(1)
        with RobotClient(address, timeout_s=5.0) as client:
            assert client.info()["task"] == task
            assert client.reset(1).obs.shape == (obs_dim,)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0 and "shutting down" in out
    finally:
        if proc.poll() is None:
            proc.kill()


def test_experiment_refuses_public_bind_without_token():
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.sim_robot_server", "--host=0.0.0.0", "--port=0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "no token is set" in proc.stderr
