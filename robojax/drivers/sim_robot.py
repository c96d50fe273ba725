"""`SimRobotServer`: the Panda arm tasks simulated with C MuJoCo in real time, behind the protocol.

It stands in for a real robot in tests, demos and training runs. The model, constants, controller,
observation, reward, success and termination are those of `envs/arm.py` (`arm_reach`,
`arm_push_cube`, `arm_pick_place`): both run the task classes of `robojax.tasks.arm`, here on
numpy. The controller: a Cartesian end-effector delta `action[:3] * max_ee_step`, clipped to the
workspace box, turned into joint-position servo targets by one damped-least-squares IK step that
holds the gripper pointing down and pulls the redundant joint to the home posture (`mj_jacSite`
for the Jacobian). `arm_pick_place` uses the gripper: its actions are 4-D, `action[3]` in [-1, 1]
(-1 closed, +1 open); the other tasks hold the gripper at its home control (3-D actions).

Timing (`SimArm`):
  * A physics thread advances one MuJoCo step (`physics_dt`, 5 ms) at a time at wall-clock pace
    times `real_time_factor` (1.0 = real time, 10 = ten times faster).
  * A command is applied on receipt: the IK runs on the current state and a new control period
    (`control_dt` = 0.04 s = 8 physics steps) starts, so a client that sends its next command
    right at the boundary sees exactly the MJX env's transition. If no command arrives by the
    boundary, the command is held (zero-order hold of its end-effector target: the IK re-runs
    toward the same target each period, so a silent client leaves the arm holding its pose).
  * After `reset` the physics is frozen until the first command (so an episode starts from exactly
    the sampled state, as `gymnasium.utils.env_checker`'s determinism checks require).
  * `stop` holds the current joint positions and ignores commands until the next `reset`.
  * Every state carries `step` (control periods since reset) and `time_s` (simulated seconds since
    reset). The state at each control-period boundary is latched for `STATE(min_step=k)`.

Not bit-identical to the MJX env: MJX computes in float32, C MuJoCo in float64, and their
constraint solvers differ in detail, so trajectories drift apart slowly (see tests).
Reset noise comes from numpy's generator (seeded by `reset(seed)`), not JAX's.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import mujoco
import numpy as np

from robojax.drivers import protocol
from robojax.drivers.server import DEFAULT_BIND, RobotBackend, RobotBackendError, RobotServer
from robojax.tasks import arm as arm_task
from robojax.tasks.arm import ARM_JOINTS

TASKS = arm_task.TASKS  # task name -> its robojax.tasks.arm class (shared with envs/arm.py)


def model_path(task: str) -> Path:
    """The task's MJCF file, found like envs/_assets.py does (ROBOJAX_ASSETS overrides)."""
    if task not in TASKS:
        raise ValueError(f"unknown sim robot task {task!r}; choose from {', '.join(TASKS)}")
    root = Path(os.environ.get("ROBOJAX_ASSETS", Path(__file__).resolve().parents[2] / "third_party_assets"))
    path = root / "panda_arm" / TASKS[task].xml
    if not path.exists():
        raise FileNotFoundError(
            f"MJCF model {path} not found; run from a source checkout or point ROBOJAX_ASSETS at"
            " the third_party_assets/ folder"
        )
    return path


class SimArm(RobotBackend):
    """The simulated arm: C MuJoCo model and data, a controller, and (after `start`) a physics thread.

    Without `start()` it can be driven synchronously with `step_sync(action)` (tests, parity).
    """

    BOUNDARY_HISTORY = 64  # latched boundary states kept for late STATE(min_step=k) requests

    def __init__(self, task: str = "arm_reach", real_time_factor: float = 1.0, seed: int = 0, control_dt: float = 0.04):
        path = model_path(task)
        cls = TASKS[task]
        self.task, self._cls = task, cls
        self.model = mujoco.MjModel.from_xml_path(str(path))
        cls.tune_model(self.model)
        self.data = mujoco.MjData(self.model)
        m = self.model
        n = control_dt / m.opt.timestep
        if abs(n - round(n)) > 1e-6 or round(n) < 1:
            raise ValueError(f"control_dt {control_dt} must be a multiple of the physics step {m.opt.timestep}")
        self.n_substeps, self.control_dt, self.physics_dt = int(round(n)), float(control_dt), float(m.opt.timestep)
        self._check_rtf(real_time_factor)
        self.real_time_factor = float(real_time_factor)
        self.max_ee_step = float(cls.max_ee_step)
        self._default_max_ee_step = self.max_ee_step
        self.workspace_low = np.asarray(cls.workspace_low, np.float64)
        self.workspace_high = np.asarray(cls.workspace_high, np.float64)
        self.uses_gripper = bool(cls.uses_gripper)
        self.action_dim = cls.action_dim()
        self.obs_dim = cls.obs_dim
        self.episode_length = int(cls.episode_length)
        self._ee = m.site("ee").id
        key = m.key("home")
        self._home_qpos, self._home_ctrl = key.qpos.copy(), key.ctrl.copy()
        self._q_low, self._q_high = m.jnt_range[:ARM_JOINTS, 0].copy(), m.jnt_range[:ARM_JOINTS, 1].copy()
        self._gripper_range = m.actuator_ctrlrange[ARM_JOINTS].copy()
        self._cube_qpos = self._cube_qvel = self._cube_body = None
        if mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, "cube_joint") >= 0:
            joint = m.joint("cube_joint").id
            self._cube_qpos, self._cube_qvel = int(m.jnt_qposadr[joint]), int(m.jnt_dofadr[joint])
            self._cube_body = m.body("cube").id
        self._jacp = np.zeros((3, m.nv))
        self._jacr = np.zeros((3, m.nv))
        self._rng = np.random.default_rng(seed)
        self._lock = threading.RLock()
        self._callback: Callable[[], None] | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._wake = threading.Event()
        self._next_t = 0.0
        self.overruns = 0  # physics steps that started > 50 ms of wall time late
        self.reset(seed)

    # ---- task logic (robojax.tasks.arm in numpy; the MJX env runs the same code in jax.numpy) ----
    def ee_pos(self) -> np.ndarray:
        return self.data.site_xpos[self._ee].copy()

    def _read(self) -> dict:
        d = self.data
        cube = None if self._cube_body is None else d.xpos[self._cube_body]
        return arm_task.read_state(
            d.qpos,
            d.qvel,
            d.site_xpos[self._ee],
            d.site_xmat[self._ee].reshape(3, 3),
            cube,
            self._cube_qpos,
            self._cube_qvel,
        )

    def _ik(self, target: np.ndarray) -> np.ndarray:
        mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self._ee)
        jac = np.concatenate([self._jacp, self._jacr])[:, :ARM_JOINTS]  # (6, 7)
        return self._cls.ik_joint_targets(
            np, self._read(), jac, target, self._home_qpos[:ARM_JOINTS], self._q_low, self._q_high
        )

    def _set_ctrl(self, target: np.ndarray) -> None:
        self.data.ctrl[:ARM_JOINTS] = self._ik(target)
        self.data.ctrl[ARM_JOINTS] = self._grip

    def _sample_initial(self, rng: np.random.Generator):
        """(qpos, ctrl, mocap_pos, episode): the reset distribution of envs/arm.py, drawn with numpy."""
        c = self._cls
        noise = c.reset_joint_noise * rng.uniform(-1.0, 1.0, ARM_JOINTS)
        qpos = self._home_qpos.copy()
        qpos[:ARM_JOINTS] += noise
        ctrl = self._home_ctrl.copy()
        ctrl[:ARM_JOINTS] = qpos[:ARM_JOINTS]
        if c is arm_task.Reach:
            target = rng.uniform(c.target_low, c.target_high)
            return qpos, ctrl, target, {"target": target}
        cube_xy = rng.uniform(c.cube_low, c.cube_high)
        if c is arm_task.PushCube:
            # Goals at least `min_goal_distance` from the cube: sample a direction and a distance.
            angle = rng.uniform(-np.pi, np.pi)
            dist = rng.uniform(c.min_goal_distance, c.max_goal_distance)
            goal_xy = np.clip(cube_xy + dist * np.array([np.cos(angle), np.sin(angle)]), c.goal_low, c.goal_high)
            cube_z, mocap = 0.025, np.array([goal_xy[0], goal_xy[1], 0.0])
            episode = {"goal": mocap}
        else:  # PickPlace
            target_xy = rng.uniform(c.target_low, c.target_high)
            cube_z, mocap = c.cube_half, np.array([target_xy[0], target_xy[1], 0.0])
            episode = {"target": np.array([target_xy[0], target_xy[1], c.cube_half])}
        yaw = rng.uniform(-c.max_start_yaw, c.max_start_yaw)
        i = self._cube_qpos
        qpos[i : i + 3] = [cube_xy[0], cube_xy[1], cube_z]
        qpos[i + 3 : i + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        return qpos, ctrl, mocap, episode

    def _observe(self) -> tuple[np.ndarray, float, bool, bool]:
        """(obs, reward, terminated, success) of the current physics state."""
        d, ep, c = self.data, self._episode, self._cls
        if not (np.all(np.isfinite(d.qpos)) and np.all(np.isfinite(d.qvel))):
            return np.zeros(self.obs_dim, np.float32), 0.0, True, False  # diverged: terminate
        reading = self._read()
        reward, _ = c.task_reward(np, reading, ep)
        return (
            c.task_observation(np, reading, ep),
            float(reward),
            bool(c.task_terminated(np, reading, ep)),
            bool(c.task_success(np, reading, ep)),
        )

    def _fields(self) -> dict:
        obs, reward, terminated, success = self._observe()
        return protocol.state_fields(obs, reward, terminated, success, self._stopped, self.data.time, self._step)

    # ---- physics -------------------------------------------------------------------------------
    def set_physics_state(self, qpos, qvel, ctrl, mocap_pos, episode: dict) -> dict:
        """Start an episode from an exact state (e.g. one taken from the MJX env); returns the state."""
        with self._lock:
            d = self.data
            mujoco.mj_resetData(self.model, d)
            d.qpos[:] = qpos
            d.qvel[:] = qvel
            d.ctrl[:] = ctrl
            d.mocap_pos[:] = np.asarray(mocap_pos).reshape(d.mocap_pos.shape)
            mujoco.mj_forward(self.model, d)
            self._episode = {k: np.asarray(v, np.float64) for k, v in episode.items()}
            self._grip = float(ctrl[ARM_JOINTS])
            self._target = self.ee_pos()
            self._step, self._substep, self._running, self._stopped = 0, 0, False, False
            self._latched = self._fields()
            self._history = collections.deque([self._latched], maxlen=self.BOUNDARY_HISTORY)
            return self._latched

    def _advance(self) -> bool:
        """One physics step; at a control-period boundary latch the state and re-run the controller
        toward the held target. Returns True at a boundary. Caller holds the lock."""
        mujoco.mj_step(self.model, self.data)
        self._substep += 1
        if self._substep < self.n_substeps:
            return False
        self._substep = 0
        self._step += 1
        self._latched = self._fields()
        self._history.append(self._latched)
        if not self._stopped and np.all(np.isfinite(self.data.qpos)):
            self._set_ctrl(self._target)
        return True

    def _apply(self, action: np.ndarray) -> None:
        a = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        self._target = self._cls.ee_target(np, self.ee_pos(), a, self.max_ee_step)
        if self.uses_gripper:
            self._grip = float(self._cls.gripper_ctrl(a[3], self._gripper_range))
        self._set_ctrl(self._target)
        self._substep = 0  # a command starts a new control period
        self._next_t = time.perf_counter() + self.physics_dt / self.real_time_factor
        self._running = True
        self._wake.set()

    def step_sync(self, action: np.ndarray) -> dict:
        """Apply `action` and run one control period at once (no physics thread; for tests)."""
        if self._thread is not None:
            raise RuntimeError("step_sync() is for an unstarted SimArm; this one runs in real time")
        with self._lock:
            if self._stopped:
                return self._fields()
            self._apply(action)
            while not self._advance():
                pass
            return self._latched

    def _run(self) -> None:
        period = self.physics_dt / self.real_time_factor
        while not self._closing.is_set():
            with self._lock:
                running = self._running
                next_t = self._next_t
            if not running:
                self._wake.wait(0.05)
                self._wake.clear()
                continue
            now = time.perf_counter()
            if now < next_t:
                time.sleep(min(next_t - now, 0.01))
                continue
            with self._lock:
                if not self._running or self._next_t != next_t:
                    continue  # a command or reset moved the schedule meanwhile
                boundary = self._advance()
                period = self.physics_dt / self.real_time_factor
                self._next_t = next_t + period
                if now - self._next_t > 0.05:  # fell far behind (machine busy): do not burst to catch up
                    self.overruns += 1
                    self._next_t = now + period
            if boundary and self._callback is not None:
                self._callback()

    # ---- RobotBackend --------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="robojax-sim-physics", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def set_boundary_callback(self, fn) -> None:
        self._callback = fn

    def info(self) -> dict:
        # ArraySpec.to_dict() layouts, written out so the simulator does not import JAX.
        inf = float("inf")
        obs_spec = {
            "name": "observation",
            "shape": [self.obs_dim],
            "dtype": "float32",
            "low": [-inf] * self.obs_dim,
            "high": [inf] * self.obs_dim,
        }
        act_spec = {
            "name": "action",
            "shape": [self.action_dim],
            "dtype": "float32",
            "low": [-1.0] * self.action_dim,
            "high": [1.0] * self.action_dim,
        }
        return {
            "robot": f"SimRobotServer (C MuJoCo {mujoco.__version__})",
            "task": self.task,
            "observation_spec": obs_spec,
            "action_spec": act_spec,
            "control_dt": self.control_dt,
            "physics_dt": self.physics_dt,
            "real_time_factor": self.real_time_factor,
            "episode_length": self.episode_length,
            "action_limits": {"low": [-1.0] * self.action_dim, "high": [1.0] * self.action_dim},
            "max_ee_step": self.max_ee_step,
            "workspace": {"low": self.workspace_low.tolist(), "high": self.workspace_high.tolist()},
            "ee_obs_index": [15, 18],  # obs[15:18] is the end-effector position (world frame)
        }

    def state(self) -> dict:
        with self._lock:
            return self._fields()

    def boundary_state(self, min_step: int) -> dict | None:
        """The state latched at boundary `min_step` exactly (while it is among the last
        BOUNDARY_HISTORY boundaries; the latest one after that), or None before it is reached."""
        with self._lock:
            if self._step < min_step:
                return None
            back = self._step - min_step
            return self._history[-1 - back] if back < len(self._history) else self._latched

    def command(self, action: np.ndarray) -> dict:
        with self._lock:
            if not self._stopped:  # a stopped robot ignores commands until reset
                self._apply(action)
            return self._fields()

    def reset(self, seed: int | None = None) -> dict:
        rng = np.random.default_rng(seed) if seed is not None else self._rng
        qpos, ctrl, mocap, episode = self._sample_initial(rng)
        return self.set_physics_state(qpos, np.zeros(self.model.nv), ctrl, mocap, episode)

    def stop(self) -> dict:
        with self._lock:
            self._stopped = True
            self.data.ctrl[:ARM_JOINTS] = self.data.qpos[:ARM_JOINTS]  # hold the joints where they are
            self._target = self.ee_pos()
            if not self._running:
                self._running = True
                self._next_t = time.perf_counter()
                self._wake.set()
            return self._fields()

    def get_parameters(self) -> dict:
        with self._lock:
            return {"real_time_factor": self.real_time_factor, "max_ee_step": self.max_ee_step}

    @staticmethod
    def _check_rtf(value) -> None:
        if not 0 < value <= 1000:
            raise ValueError(f"real_time_factor must be in (0, 1000], got {value}")

    def set_parameters(self, params: dict) -> dict:
        known = {"real_time_factor", "max_ee_step"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise protocol.ProtocolError(f"unknown parameters {unknown}; this robot has {sorted(known)}")
        with self._lock:
            if "real_time_factor" in params:
                rtf = float(params["real_time_factor"])
                try:
                    self._check_rtf(rtf)
                except ValueError as e:
                    raise RobotBackendError(str(e)) from None
                self.real_time_factor = rtf
            if "max_ee_step" in params:
                step = float(params["max_ee_step"])
                if not 0 < step <= self._default_max_ee_step:
                    raise RobotBackendError(f"max_ee_step must be in (0, {self._default_max_ee_step}] m, got {step}")
                self.max_ee_step = step
        return self.get_parameters()


class SimRobotServer(RobotServer):
    """A `RobotServer` over a real-time C MuJoCo `SimArm`.

    with SimRobotServer("arm_reach", bind="tcp://127.0.0.1:0", real_time_factor=10).start() as server:
        client = RobotClient(server.address)
    """

    def __init__(
        self,
        task: str = "arm_reach",
        bind: str = DEFAULT_BIND,
        token: str | bytes | None = None,
        real_time_factor: float = 1.0,
        seed: int = 0,
        **server_kwargs,
    ):
        self.sim = SimArm(task, real_time_factor=real_time_factor, seed=seed)
        super().__init__(self.sim, bind, token, **server_kwargs)
