"""7-DoF Panda-like arm tasks: `arm_reach`, `arm_push_cube` and `arm_pick_place`.

Actions are Cartesian, as on SERL's Franka: a[:3] in [-1, 1] moves the end-effector target by up to
`max_ee_step` metres per control step, clipped to a workspace box; damped-least-squares inverse
kinematics inside the jitted step turns that into joint-position servo targets, holding the gripper
pointing down and pulling the redundant joint towards the home posture. Tasks that use the gripper
add a[3] in [-1, 1] (-1 closed, +1 open).

The constants, controller, observation, reward, termination and success live in
`robojax.tasks.arm` (shared with the C-MuJoCo simulator `robojax.drivers.sim_robot`); each env here
inherits its task class and adds the MJX model, the jitted Jacobian and the reset distribution.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from mujoco import mjx

from envs._assets import asset_path
from robojax.envs.core import ArraySpec
from robojax.envs.mjx_env import MjxEnv, load_model
from robojax.tasks import arm as arm_task
from robojax.tasks.arm import ARM_JOINTS


class _ArmEnv(MjxEnv):
    """Shared arm machinery: Cartesian action -> IK -> joint servo targets (constants from the task class)."""

    _cube_qpos: int | None = None
    _cube_qvel: int | None = None
    _cube_body: int | None = None

    def __init__(self, control_dt: float = 0.04, **opt_overrides):
        model = load_model(asset_path("panda_arm", self.xml), opt_overrides)
        self._tune_model(model)
        super().__init__(model, control_dt)
        self._ee = model.site("ee").id
        self._hand_body = model.site_bodyid[self._ee]
        key = model.key("home")
        self._home_qpos = jnp.asarray(key.qpos, jnp.float32)
        self._home_ctrl = jnp.asarray(key.ctrl, jnp.float32)
        self._home_mocap = jnp.asarray(key.mpos.reshape(-1, 3), jnp.float32)
        lo, hi = model.jnt_range[:ARM_JOINTS, 0], model.jnt_range[:ARM_JOINTS, 1]
        self._q_low, self._q_high = jnp.asarray(lo), jnp.asarray(hi)
        self._gripper_range = jnp.asarray(model.actuator_ctrlrange[ARM_JOINTS])
        if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "cube_joint") >= 0:
            joint = model.joint("cube_joint").id
            self._cube_qpos, self._cube_qvel = int(model.jnt_qposadr[joint]), int(model.jnt_dofadr[joint])
            self._cube_body = model.body("cube").id

    def _tune_model(self, model) -> None:
        """Task-specific edits of the C model before it is copied to MJX."""
        self.tune_model(model)

    @property
    def observation_spec(self) -> ArraySpec:
        return ArraySpec((self.obs_dim,), np.float32, name="observation")

    @property
    def action_spec(self) -> ArraySpec:
        return ArraySpec((self.action_dim(),), np.float32, -1.0, 1.0, name="action")

    def ee_pos(self, data) -> jax.Array:
        return data.site_xpos[self._ee]

    def cube_pos(self, data):
        return data.xpos[self._cube_body]

    def _read(self, data) -> dict:
        cube = None if self._cube_body is None else self.cube_pos(data)
        return arm_task.read_state(
            data.qpos, data.qvel, self.ee_pos(data), data.site_xmat[self._ee], cube, self._cube_qpos, self._cube_qvel
        )

    def _ik(self, data, ee_target) -> jax.Array:
        """Joint targets that move the ee towards `ee_target` with the gripper pointing down."""
        jacp, jacr = mjx.jac(self.mjx_model, data, self.ee_pos(data), self._hand_body)
        jac = jnp.concatenate([jacp.T, jacr.T])[:, :ARM_JOINTS]  # (6, 7)
        return self.ik_joint_targets(
            jnp, self._read(data), jac, ee_target, self._home_qpos[:ARM_JOINTS], self._q_low, self._q_high
        )

    def _ctrl(self, data, action) -> jax.Array:
        action = jnp.clip(action, -1.0, 1.0)
        arm = self._ik(data, self.ee_target(jnp, self.ee_pos(data), action))
        if self.uses_gripper:
            grip = self.gripper_ctrl(action[3], self._gripper_range)
        else:
            grip = self._home_ctrl[ARM_JOINTS]
        return jnp.concatenate([arm, grip[None]])

    def _home_data(self, key):
        noise = self.reset_joint_noise * jax.random.uniform(key, (ARM_JOINTS,), minval=-1.0, maxval=1.0)
        qpos = self._home_qpos.at[:ARM_JOINTS].add(noise)
        ctrl = self._home_ctrl.at[:ARM_JOINTS].set(qpos[:ARM_JOINTS])
        return qpos, ctrl

    def _observe(self, data, episode):
        return self.task_observation(jnp, self._read(data), episode)

    def _reward(self, data, episode, action):
        return self.task_reward(jnp, self._read(data), episode)

    def _terminated(self, data, episode):
        return self.task_terminated(jnp, self._read(data), episode)

    def _success(self, data, episode):
        return self.task_success(jnp, self._read(data), episode)


class ArmReach(arm_task.Reach, _ArmEnv):
    __doc__ = arm_task.Reach.__doc__

    def _reset_physics(self, key):
        k_arm, k_target = jax.random.split(key)
        qpos, ctrl = self._home_data(k_arm)
        target = jax.random.uniform(k_target, (3,), minval=self.target_low, maxval=self.target_high)
        data = self.make_data(qpos, jnp.zeros(self.mj_model.nv), ctrl=ctrl, mocap_pos=target[None])
        return data, {"target": target}


class ArmPushCube(arm_task.PushCube, _ArmEnv):
    __doc__ = arm_task.PushCube.__doc__

    def _reset_physics(self, key):
        k_arm, k_cube, k_goal, k_yaw = jax.random.split(key, 4)
        qpos, ctrl = self._home_data(k_arm)
        cube_xy = jax.random.uniform(k_cube, (2,), minval=self.cube_low, maxval=self.cube_high)
        # Goals at least `min_goal_distance` from the cube: sample a direction and a distance.
        angle = jax.random.uniform(k_goal, (), minval=-jnp.pi, maxval=jnp.pi)
        k_d = jax.random.fold_in(k_goal, 1)
        dist = jax.random.uniform(k_d, (), minval=self.min_goal_distance, maxval=self.max_goal_distance)
        goal_xy = jnp.clip(cube_xy + dist * jnp.stack([jnp.cos(angle), jnp.sin(angle)]), self.goal_low, self.goal_high)
        yaw = jax.random.uniform(k_yaw, (), minval=-self.max_start_yaw, maxval=self.max_start_yaw)
        quat = jnp.stack([jnp.cos(yaw / 2), 0.0, 0.0, jnp.sin(yaw / 2)])
        i = self._cube_qpos
        qpos = qpos.at[i : i + 3].set(jnp.concatenate([cube_xy, jnp.array([0.025])])).at[i + 3 : i + 7].set(quat)
        goal = jnp.concatenate([goal_xy, jnp.zeros(1)])
        data = self.make_data(qpos, jnp.zeros(self.mj_model.nv), ctrl=ctrl, mocap_pos=goal[None])
        return data, {"goal": goal}


class ArmPickPlace(arm_task.PickPlace, _ArmEnv):
    __doc__ = arm_task.PickPlace.__doc__

    def _reset_physics(self, key):
        k_arm, k_cube, k_target, k_yaw = jax.random.split(key, 4)
        qpos, ctrl = self._home_data(k_arm)
        cube_xy = jax.random.uniform(k_cube, (2,), minval=self.cube_low, maxval=self.cube_high)
        target_xy = jax.random.uniform(k_target, (2,), minval=self.target_low, maxval=self.target_high)
        yaw = jax.random.uniform(k_yaw, (), minval=-self.max_start_yaw, maxval=self.max_start_yaw)
        quat = jnp.stack([jnp.cos(yaw / 2), 0.0, 0.0, jnp.sin(yaw / 2)])
        i = self._cube_qpos
        qpos = (
            qpos.at[i : i + 3].set(jnp.concatenate([cube_xy, jnp.array([self.cube_half])])).at[i + 3 : i + 7].set(quat)
        )
        target = jnp.concatenate([target_xy, jnp.array([self.cube_half])])
        mocap = jnp.concatenate([target_xy, jnp.zeros(1)])[None]
        data = self.make_data(qpos, jnp.zeros(self.mj_model.nv), ctrl=ctrl, mocap_pos=mocap)
        return data, {"target": target}

    def finger_opening(self, data):
        """Opening of each finger in metres (0 closed, 0.04 fully open)."""
        return data.qpos[ARM_JOINTS]

    def in_keep_out(self, data) -> jax.Array:
        """True when the ee, or the cube's centre (box grown by its half size), is in the keep-out box."""
        return self.keep_out_violated(jnp, self.ee_pos(data), self.cube_pos(data))
