"""`RobotEnv`: a host-side robojax env (`HostEnv`) over any robojax robot server, and a gymnasium view.

    env = RobotEnv("tcp://127.0.0.1:5555", autoreset=True)    # SAC's host loop drives this
    state = env.reset(seed)
    state = env.step(state, action)                            # numpy EnvState
    gym_env = env.as_gymnasium()                               # a gymnasium.Env (autoreset off)

A step sends the command, waits for the robot's next control-period boundary (the server answers
`STATE(min_step=k+1)` when it is reached) and returns the state latched there. Specs, control_dt,
episode length, workspace and action limits come from the server's INFO.

Safety, as SERL's Franka env does it on the client:
  * per-step action limits: actions are clipped to [-1, 1], then to +-`max_action` per dim;
  * workspace box: the end-effector target `ee + max_ee_step * action[:3]` is clipped to the box
    (default: the server's; the server clips to its own box again);
  * time limit: `episode_length` control steps, then `truncated`;
  * safe stop: a timeout, a robot error or a non-finite action sends `stop()` (best effort) and
    raises `RobotSafetyStop`; the robot then ignores commands until the next `reset`, which first
    re-creates the connection (so a restarted server is picked up) and retries until
    `reconnect_timeout_s`.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium
import numpy as np

from robojax.drivers.client import RobotAuthError, RobotClient, RobotError, RobotState
from robojax.envs.core import ArraySpec, EnvState, HostEnv
from robojax.envs.host import HostWrapper, host_stack


class RobotSafetyStop(RobotError):
    """A step failed; the robot was sent a safe stop. Call `reset()` to continue."""


class RobotConnectionEnv(HostEnv):
    """A robot server as a bare robojax `HostEnv`: safety clipping and safe stops, `info["success"]`.

    `RobotEnv` adds the host wrapper stack (time limit, episode statistics, `final_obs`, autoreset).

    robot: an address ("tcp://host:port") or a `RobotClient`.
    timeout_s: per-request timeout (a step may additionally wait one control period).
    max_action: per-dimension bound on |action| in (0, 1] (scalar or per dim).
    workspace_low/high: end-effector box for target clipping (default: the server's workspace).
    reset_timeout_s / reconnect_timeout_s: deadline of one reset request / of retrying resets
      (with fresh connections) after a failure or server restart.
    """

    def __init__(
        self,
        robot: str | RobotClient = "tcp://127.0.0.1:5555",
        *,
        token: str | bytes | None = None,
        timeout_s: float = 0.5,
        max_action: float | np.ndarray = 1.0,
        workspace_low: np.ndarray | None = None,
        workspace_high: np.ndarray | None = None,
        reset_timeout_s: float = 10.0,
        reconnect_timeout_s: float = 30.0,
        stop_on_close: bool = True,
    ):
        if isinstance(robot, RobotClient):
            if token is not None:
                raise ValueError("pass the token to the RobotClient, not to RobotEnv")
            self.client, self._owns_client = robot, False
        else:
            self.client, self._owns_client = RobotClient(robot, token=token, timeout_s=timeout_s), True
        self.timeout_s = float(timeout_s)
        self.reset_timeout_s = float(reset_timeout_s)
        self.reconnect_timeout_s = float(reconnect_timeout_s)
        self.stop_on_close = bool(stop_on_close)
        try:
            self.robot_info = self.client.info(timeout_s=max(self.reset_timeout_s, self.timeout_s))
        except RobotError:
            if self._owns_client:
                self.client.close()
            raise
        info = self.robot_info
        self._obs_spec = ArraySpec.from_dict(info["observation_spec"])
        self._act_spec = ArraySpec.from_dict(info["action_spec"])
        if not (np.all(self._act_spec.low == -1.0) and np.all(self._act_spec.high == 1.0)):
            raise ValueError(f"RobotEnv expects a robot with actions in [-1, 1], got {info['action_spec']}")
        self._control_dt = float(info["control_dt"])
        max_action = np.broadcast_to(np.asarray(max_action, np.float32), self._act_spec.shape).copy()
        if not np.all((max_action > 0) & (max_action <= 1)):
            raise ValueError(f"max_action must be in (0, 1] per dimension, got {max_action}")
        self.max_action = max_action
        ws = info.get("workspace")
        self._ee_index = info.get("ee_obs_index")
        self._max_ee_step = info.get("max_ee_step")
        if workspace_low is None and workspace_high is None and ws is None:
            self.workspace_low = self.workspace_high = None
        else:
            if self._ee_index is None or self._max_ee_step is None:
                raise ValueError(
                    "workspace clipping needs the robot's INFO to give ee_obs_index and max_ee_step;"
                    " this robot does not, so leave workspace_low/high unset"
                )
            low = np.asarray(workspace_low if workspace_low is not None else ws["low"], np.float64)
            high = np.asarray(workspace_high if workspace_high is not None else ws["high"], np.float64)
            if low.shape != (3,) or high.shape != (3,) or np.any(low >= high):
                raise ValueError(f"workspace box must be two 3-vectors with low < high, got {low}, {high}")
            self.workspace_low, self.workspace_high = low, high
        self._rng = np.random.default_rng()
        self._needs_reset = True
        self._broken = False
        self._obs: np.ndarray | None = None
        self.safe_stops = 0

    # ---- specs ---------------------------------------------------------------------------------
    @property
    def observation_spec(self) -> ArraySpec:
        return self._obs_spec

    @property
    def action_spec(self) -> ArraySpec:
        return self._act_spec

    @property
    def dt(self) -> float:
        return self._control_dt

    @property
    def _wall_period(self) -> float:
        return self._control_dt / float(self.robot_info.get("real_time_factor", 1.0))

    # ---- reset ---------------------------------------------------------------------------------
    def reset(self, key_or_seed=None) -> EnvState:
        from robojax.envs.gym_bridge import _seed_from

        seed = _seed_from(key_or_seed)
        if seed is None:
            seed = int(self._rng.integers(2**62))
        else:
            self._rng = np.random.default_rng(seed)
        deadline = time.monotonic() + self.reconnect_timeout_s
        if self._broken:
            self.client.reconnect()
        while True:
            try:
                robot = self.client.reset(seed % 2**63, timeout_s=self.reset_timeout_s)
                if self._broken:  # the server may have restarted with other settings
                    self.robot_info = self.client.info(timeout_s=self.reset_timeout_s)
                break
            except RobotAuthError:
                raise
            except RobotError as e:
                if time.monotonic() >= deadline:
                    raise RobotError(
                        f"reset failed for {self.reconnect_timeout_s:.0f} s ({e}); is the robot server"
                        f" at {self.client.address} running?"
                    ) from e
                self._broken = True
                time.sleep(0.1)
                self.client.reconnect()
        self._broken = False
        self._needs_reset = False
        return self._env_state(robot, 0.0, False)

    # ---- step ----------------------------------------------------------------------------------
    def safe_action(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        """The action actually sent: clipped to the per-step limits and the workspace box."""
        a = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        a = np.clip(a, -self.max_action, self.max_action)
        if self.workspace_low is not None:
            i, j = self._ee_index
            ee = np.asarray(obs[i:j], np.float64)
            target = np.clip(ee + self._max_ee_step * a[:3], self.workspace_low, self.workspace_high)
            a[:3] = (target - ee) / self._max_ee_step
        return a.astype(np.float32)

    def step(self, state: EnvState, action) -> EnvState:
        if self._needs_reset:
            raise RuntimeError(
                "step() on a finished, failed or never started episode; call reset() first"
                " (or build RobotEnv(..., autoreset=True))"
            )
        try:
            action = self._act_spec.validate(action, "action")
        except (ValueError, TypeError) as e:
            self._safe_stop(e)
        try:
            sent = self.client.command(self.safe_action(self._obs, action))
            if sent.stopped:
                raise RobotError("the robot is safe-stopped (stopped on the server side); reset() to continue")
            robot = self.client.state(min_step=sent.step + 1, timeout_s=self._wall_period + self.timeout_s)
        except RobotError as e:
            self._safe_stop(e)
        self._needs_reset = bool(robot.terminated)
        return self._env_state(robot, robot.reward, robot.terminated)

    def _safe_stop(self, error: BaseException):
        self._needs_reset = True
        self._broken = isinstance(error, RobotError)
        self.safe_stops += 1
        try:
            self.client.stop(timeout_s=self.timeout_s)
            stopped = "the robot was sent a safe stop"
        except RobotError as stop_error:
            stopped = f"the safe stop could not be delivered either ({stop_error})"
        raise RobotSafetyStop(
            f"step failed: {type(error).__name__}: {error}; {stopped}. Call reset() to continue."
        ) from error

    def _env_state(self, robot: RobotState, reward: float, terminated: bool) -> EnvState:
        self._obs = np.array(robot.obs, np.float32)
        return EnvState(
            physics=None,
            obs=self._obs.copy(),
            reward=np.float32(reward),
            terminated=np.bool_(terminated),
            truncated=np.bool_(False),
            episode={},
            info={"success": np.bool_(robot.success)},
            metrics={"robot_time_s": np.float64(robot.time_s), "robot_step": np.int64(robot.step)},
            rng=None,
        )

    # ---- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        if self.client is None:
            return
        if self.stop_on_close:
            try:
                self.client.stop(timeout_s=self.timeout_s)
            except RobotError:
                pass
        if self._owns_client:
            self.client.close()
        self.client = None

    def __repr__(self) -> str:
        return (
            f"RobotConnectionEnv({self.client.address if self.client else 'closed'!r},"
            f" task={self.robot_info.get('task')!r})"
        )


class RobotEnv(HostWrapper):
    """A robot server as a robojax `HostEnv` (numpy states, same method names as simulator envs).

    `RobotConnectionEnv(robot, **connection)` under the host wrapper stack (robojax.envs.host):
    `HostTimeLimit(episode_length)`, `HostEpisodeStatistics`, then `HostAutoReset` or
    `HostFinalObs`. Attributes of the connection (client, robot_info, safe_stops, safe_action)
    are reachable on this env.

    episode_length: control steps before `truncated` (default: the server's `episode_length`).
    autoreset: reset right after a done step (the returned obs starts the next episode; reward,
      flags and info are the finished step's, with `info["final_obs"]`), as SAC's host loop needs.
    connection: `RobotConnectionEnv`'s keyword arguments (token, timeout_s, max_action, workspace_low/high,
      reset_timeout_s, reconnect_timeout_s, stop_on_close).
    """

    def __init__(
        self,
        robot: str | RobotClient = "tcp://127.0.0.1:5555",
        *,
        episode_length: int | None = None,
        autoreset: bool = False,
        **connection,
    ):
        bare = RobotConnectionEnv(robot, **connection)
        length = episode_length if episode_length is not None else bare.robot_info.get("episode_length", 0)
        length = int(length) if length is not None else None
        if episode_length is not None and length <= 0:
            bare.close()
            raise ValueError(f"episode_length must be positive, got {episode_length}")
        self.episode_length = length or None
        self.autoreset = bool(autoreset)
        super().__init__(host_stack(bare, autoreset=self.autoreset, max_steps=self.episode_length))

    def as_gymnasium(self) -> GymnasiumRobotEnv:
        return GymnasiumRobotEnv(self)

    def __repr__(self) -> str:
        return f"RobotEnv({self.client.address if self.client else 'closed'!r}, task={self.robot_info.get('task')!r})"


class GymnasiumRobotEnv(gymnasium.Env):
    """A `gymnasium.Env` over a `RobotEnv` (which must not autoreset: gymnasium's user resets)."""

    metadata = {"render_modes": []}

    def __init__(self, env: RobotEnv | str, **robot_env_kwargs):
        if isinstance(env, str):
            env = RobotEnv(env, **robot_env_kwargs)
        elif robot_env_kwargs:
            raise TypeError("RobotEnv kwargs only apply when passing an address")
        if env.autoreset:
            raise ValueError("GymnasiumRobotEnv needs RobotEnv(..., autoreset=False)")
        self.robot_env = env
        self.render_mode = None
        obs, act = env.observation_spec, env.action_spec
        self.observation_space = gymnasium.spaces.Box(obs.low, obs.high, obs.shape, np.float32)
        self.action_space = gymnasium.spaces.Box(act.low, act.high, act.shape, np.float32)
        self._state: EnvState | None = None

    @property
    def dt(self) -> float:
        return self.robot_env.dt

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed, options=options)
        self._state = self.robot_env.reset(int(self.np_random.integers(2**62)))
        return self._state.obs.copy(), self._info(self._state)

    def step(self, action):
        if self._state is None:
            raise RuntimeError("step() before reset()")
        self._state = self.robot_env.step(self._state, np.asarray(action, np.float32))
        s = self._state
        return s.obs.copy(), float(s.reward), bool(s.terminated), bool(s.truncated), self._info(s)

    @staticmethod
    def _info(state: EnvState) -> dict[str, Any]:
        return {
            "success": bool(state.info["success"]),
            "robot_time_s": float(state.metrics["robot_time_s"]),
            "robot_step": int(state.metrics["robot_step"]),
        }

    def close(self):
        self.robot_env.close()
        super().close()
