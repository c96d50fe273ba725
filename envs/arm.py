"""7-DoF Panda-like arm tasks: `arm_reach`, `arm_push_cube` and `arm_pick_place`.

Actions are Cartesian, as on SERL's Franka: a[:3] in [-1, 1] moves the end-effector target by up to
`max_ee_step` metres per control step, clipped to a workspace box; damped-least-squares inverse
kinematics inside the jitted step turns that into joint-position servo targets, holding the gripper
pointing down and pulling the redundant joint towards the home posture. Tasks that use the gripper
add a[3] in [-1, 1] (-1 closed, +1 open).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from mujoco import mjx

from envs._assets import asset_path
from robojax.envs.core import ArraySpec
from robojax.envs.mjx_env import MjxEnv, load_model
from robojax.envs.rewards import tolerance

ARM_JOINTS = 7
_DOWN = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])  # ee z-axis points at the floor


class _ArmEnv(MjxEnv):
    """Shared arm machinery: Cartesian action -> IK -> joint servo targets."""

    xml: str = ""
    uses_gripper = False
    max_ee_step = 0.03  # m per control step
    # Workspace box for the ee target (SERL-style safety clipping), world frame.
    workspace_low = np.array([0.25, -0.35, 0.02])
    workspace_high = np.array([0.75, 0.35, 0.55])
    ik_damping = 1e-2
    nullspace_gain = 0.5
    orientation_gain = 1.0
    # Joint-posture noise added to the home keyframe on reset (radians).
    reset_joint_noise = 0.1

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

    def _tune_model(self, model) -> None:
        """Task-specific edits of the C model before it is copied to MJX (default: none)."""

    @property
    def action_spec(self) -> ArraySpec:
        return ArraySpec((4 if self.uses_gripper else 3,), np.float32, -1.0, 1.0, name="action")

    def ee_pos(self, data) -> jax.Array:
        return data.site_xpos[self._ee]

    def _ik(self, data, ee_target) -> jax.Array:
        """Joint targets that move the ee towards `ee_target` with the gripper pointing down."""
        q = data.qpos[:ARM_JOINTS]
        jacp, jacr = mjx.jac(self.mjx_model, data, self.ee_pos(data), self._hand_body)
        jac = jnp.concatenate([jacp.T, jacr.T])[:, :ARM_JOINTS]  # (6, 7)
        rot = data.site_xmat[self._ee]
        # Orientation error as a rotation vector (small-angle), from the column cross products.
        rot_err = 0.5 * jnp.sum(jnp.cross(rot, jnp.asarray(_DOWN), axis=0), axis=-1)
        twist = jnp.concatenate([ee_target - self.ee_pos(data), self.orientation_gain * rot_err])
        jjt = jac @ jac.T + self.ik_damping * jnp.eye(6)
        pinv = jac.T @ jnp.linalg.inv(jjt)  # (7, 6)
        dq = pinv @ twist
        # Null-space pull to the home posture keeps the redundant elbow away from joint limits.
        null = jnp.eye(ARM_JOINTS) - pinv @ jac
        dq = dq + null @ (self.nullspace_gain * (self._home_qpos[:ARM_JOINTS] - q))
        return jnp.clip(q + dq, self._q_low, self._q_high)

    def _ctrl(self, data, action) -> jax.Array:
        action = jnp.clip(action, -1.0, 1.0)
        target = jnp.clip(
            self.ee_pos(data) + self.max_ee_step * action[:3], self.workspace_low, self.workspace_high
        )
        arm = self._ik(data, target)
        if self.uses_gripper:
            lo, hi = self._gripper_range
            grip = lo + (action[3] + 1.0) / 2.0 * (hi - lo)
        else:
            grip = self._home_ctrl[ARM_JOINTS]
        return jnp.concatenate([arm, grip[None]])

    def _home_data(self, key):
        noise = self.reset_joint_noise * jax.random.uniform(key, (ARM_JOINTS,), minval=-1.0, maxval=1.0)
        qpos = self._home_qpos.at[:ARM_JOINTS].add(noise)
        ctrl = self._home_ctrl.at[:ARM_JOINTS].set(qpos[:ARM_JOINTS])
        return qpos, ctrl

    def _arm_obs(self, data):
        return [
            data.qpos[:ARM_JOINTS],
            data.qvel[:ARM_JOINTS],
            data.qpos[ARM_JOINTS:ARM_JOINTS + 1] * 25.0,  # finger opening, scaled to ~[0, 1]
            self.ee_pos(data),
        ]


class ArmReach(_ArmEnv):
    """Move the end-effector to a random target in front of the robot.

    obs (24): joint pos (7), joint vel (7), finger opening (1), ee pos (3), target (3),
    target - ee (3). reward: 1 within 3 cm of the target, decaying smoothly over 0.4 m.
    """

    xml = "arm_reach.xml"
    episode_length = 100
    success_radius = 0.03
    target_low = np.array([0.3, -0.3, 0.1])
    target_high = np.array([0.7, 0.3, 0.5])

    @property
    def observation_spec(self):
        return ArraySpec((24,), np.float32, name="observation")

    def _reset_physics(self, key):
        k_arm, k_target = jax.random.split(key)
        qpos, ctrl = self._home_data(k_arm)
        target = jax.random.uniform(k_target, (3,), minval=self.target_low, maxval=self.target_high)
        data = self.make_data(qpos, jnp.zeros(self.mj_model.nv), ctrl=ctrl, mocap_pos=target[None])
        return data, {"target": target}

    def _observe(self, data, episode):
        to_target = episode["target"] - self.ee_pos(data)
        return jnp.concatenate(self._arm_obs(data) + [episode["target"], to_target]).astype(jnp.float32)

    def _reward(self, data, episode, action):
        dist = jnp.linalg.norm(episode["target"] - self.ee_pos(data))
        return tolerance(dist, (0.0, self.success_radius), margin=0.4), {"distance": dist}

    def _success(self, data, episode):
        return jnp.linalg.norm(episode["target"] - self.ee_pos(data)) < self.success_radius


class ArmPushCube(_ArmEnv):
    """Push a 5 cm cube across the table to a random goal with the closed gripper.

    obs (38): arm (18, as in ArmReach), cube pos (3), cube quat (4), cube vel (6), goal xy (2),
    goal - cube xy (2), cube - ee (3). reward: 0.2 * (ee near cube) + 0.8 * (cube near goal).
    Terminates if the cube leaves the table top. Success: cube centre within 4 cm of the goal (xy).
    """

    xml = "arm_push_cube.xml"
    episode_length = 200
    success_radius = 0.04
    workspace_low = np.array([0.25, -0.35, 0.015])
    workspace_high = np.array([0.75, 0.35, 0.3])
    cube_low = np.array([0.4, -0.15])
    cube_high = np.array([0.6, 0.15])
    goal_low = np.array([0.35, -0.25])
    goal_high = np.array([0.7, 0.25])
    min_goal_distance = 0.1
    # The home pose has the fingertips 2 cm above the table; larger joint noise would start them
    # inside it.
    reset_joint_noise = 0.03
    # Tighter IK than the base class: with 0.5 / 1e-2 the ee settled 3+ cm short of targets at
    # x > 0.6 and z ~ 7 cm (where pushes towards -x start), more than one control step corrects.
    nullspace_gain = 0.1
    ik_damping = 3e-3

    def __init__(self, control_dt: float = 0.04, **opt_overrides):
        super().__init__(control_dt, **opt_overrides)
        self._cube_qpos = int(self.mj_model.jnt_qposadr[self.mj_model.joint("cube_joint").id])
        self._cube_body = self.mj_model.body("cube").id

    @property
    def observation_spec(self):
        return ArraySpec((38,), np.float32, name="observation")

    def _reset_physics(self, key):
        k_arm, k_cube, k_goal, k_yaw = jax.random.split(key, 4)
        qpos, ctrl = self._home_data(k_arm)
        cube_xy = jax.random.uniform(k_cube, (2,), minval=self.cube_low, maxval=self.cube_high)
        # Goals at least `min_goal_distance` from the cube: sample a direction and a distance.
        angle = jax.random.uniform(k_goal, (), minval=-jnp.pi, maxval=jnp.pi)
        k_d = jax.random.fold_in(k_goal, 1)
        dist = jax.random.uniform(k_d, (), minval=self.min_goal_distance, maxval=0.25)
        goal_xy = jnp.clip(cube_xy + dist * jnp.stack([jnp.cos(angle), jnp.sin(angle)]), self.goal_low, self.goal_high)
        yaw = jax.random.uniform(k_yaw, (), minval=-jnp.pi / 4, maxval=jnp.pi / 4)
        quat = jnp.stack([jnp.cos(yaw / 2), 0.0, 0.0, jnp.sin(yaw / 2)])
        i = self._cube_qpos
        qpos = qpos.at[i:i + 3].set(jnp.concatenate([cube_xy, jnp.array([0.025])])).at[i + 3:i + 7].set(quat)
        goal = jnp.concatenate([goal_xy, jnp.zeros(1)])
        data = self.make_data(qpos, jnp.zeros(self.mj_model.nv), ctrl=ctrl, mocap_pos=goal[None])
        return data, {"goal": goal}

    def cube_pos(self, data):
        return data.xpos[self._cube_body]

    def _observe(self, data, episode):
        i = self._cube_qpos
        cube, goal, ee = self.cube_pos(data), episode["goal"], self.ee_pos(data)
        cube_quat = data.qpos[i + 3:i + 7]
        cube_vel = data.qvel[ARM_JOINTS + 2:ARM_JOINTS + 8]
        return jnp.concatenate(
            self._arm_obs(data) + [cube, cube_quat, cube_vel, goal[:2], (goal - cube)[:2], cube - ee]
        ).astype(jnp.float32)

    def _reward(self, data, episode, action):
        cube, ee = self.cube_pos(data), self.ee_pos(data)
        goal_dist = jnp.linalg.norm((episode["goal"] - cube)[:2])
        reach_dist = jnp.linalg.norm(cube - ee)
        reach = tolerance(reach_dist, (0.0, 0.04), margin=0.3)
        place = tolerance(goal_dist, (0.0, self.success_radius), margin=0.3)
        return 0.2 * reach + 0.8 * place, {"goal_distance": goal_dist, "reach_distance": reach_dist}

    def _terminated(self, data, episode):
        # The table collides as an infinite plane; its drawn top spans x in [-0.3, 0.9], |y| < 0.6.
        cube = self.cube_pos(data)
        return (cube[0] < -0.3) | (cube[0] > 0.9) | (jnp.abs(cube[1]) > 0.6)

    def _success(self, data, episode):
        return jnp.linalg.norm((episode["goal"] - self.cube_pos(data))[:2]) < self.success_radius


class ArmPickPlace(_ArmEnv):
    """Grasp a 4 cm cube, carry it around a pillar and place it on a target marker.

    Layout (world frame, metres): the cube starts at x in [0.35, 0.43], |y| <= 0.05; the target
    lies at x in [0.62, 0.70], |y| <= 0.05. A pillar (visual only, centre (0.52, 0), half extents
    0.03 x 0.05, taller than the workspace) stands between them, so the straight carry path is
    blocked and the cube must pass on the left (+y) or on the right (-y): the task is multimodal.
    The episode terminates as a failure when the ee enters the keep-out box (the pillar grown by
    `keep_out_margin`), when the cube's centre enters that box grown by the cube's half size, or
    when the cube leaves the table.

    action (4): ee delta (3) in [-1, 1] * 0.03 m, gripper in [-1, 1] (-1 closed, +1 open).
    obs (39): arm (18, as in ArmReach: joint pos 7, joint vel 7, finger opening 1, ee pos 3),
      cube pos (3), cube quat (4), cube vel (6), target xy (2), target - cube (3; the target's z
      is the resting cube's centre height), cube - ee (3).
    reward (dense, in [0, 1]): 0.1 * (ee near cube) + 0.2 * (cube lifted) + 0.5 * (cube near
      target, xy) + 0.2 * success.
    success: cube centre within `success_radius` (xy) of the target, resting on the table
      (z < 0.03) and released (each finger open > 3 cm, pads 1 cm clear of the cube).
    """

    xml = "arm_pick_place.xml"
    uses_gripper = True
    episode_length = 150
    success_radius = 0.03
    cube_half = 0.02
    workspace_low = np.array([0.25, -0.35, 0.005])
    workspace_high = np.array([0.75, 0.35, 0.3])
    cube_low = np.array([0.35, -0.05])
    cube_high = np.array([0.43, 0.05])
    target_low = np.array([0.62, -0.05])
    target_high = np.array([0.70, 0.05])
    pillar_center = np.array([0.52, 0.0])
    pillar_half = np.array([0.03, 0.05])
    keep_out_margin = 0.02
    # Gripper servo on the finger tendon: stiffer than the arm model's default (kp 200) so the
    # closed fingers squeeze the cube with ~8 N per pad. The fingers get damping and armature so
    # they close at ~0.15 m/s instead of tunnelling through the cube in one 5 ms step (explicit
    # Euler stays stable: dt * damping / (mass + armature) ~ 0.5).
    gripper_kp = 800.0
    finger_damping = 100.0
    finger_armature = 1.0
    reset_joint_noise = 0.05
    # The raised home posture is far from the table poses; a weaker null-space pull and less IK
    # damping keep the steady-state ee error below ~3 mm over the whole task region.
    nullspace_gain = 0.1
    ik_damping = 3e-3

    def __init__(self, control_dt: float = 0.04, **opt_overrides):
        super().__init__(control_dt, **opt_overrides)
        self._cube_qpos = int(self.mj_model.jnt_qposadr[self.mj_model.joint("cube_joint").id])
        self._cube_qvel = int(self.mj_model.jnt_dofadr[self.mj_model.joint("cube_joint").id])
        self._cube_body = self.mj_model.body("cube").id

    def _tune_model(self, model) -> None:
        g = model.actuator("gripper").id
        model.actuator_gainprm[g, 0] = self.gripper_kp
        model.actuator_biasprm[g, 1] = -self.gripper_kp
        for joint in ("finger_joint1", "finger_joint2"):
            dof = model.jnt_dofadr[model.joint(joint).id]
            model.dof_damping[dof] = self.finger_damping
            model.dof_armature[dof] = self.finger_armature

    @property
    def observation_spec(self):
        return ArraySpec((39,), np.float32, name="observation")

    def _reset_physics(self, key):
        k_arm, k_cube, k_target, k_yaw = jax.random.split(key, 4)
        qpos, ctrl = self._home_data(k_arm)
        cube_xy = jax.random.uniform(k_cube, (2,), minval=self.cube_low, maxval=self.cube_high)
        target_xy = jax.random.uniform(k_target, (2,), minval=self.target_low, maxval=self.target_high)
        yaw = jax.random.uniform(k_yaw, (), minval=-0.2, maxval=0.2)
        quat = jnp.stack([jnp.cos(yaw / 2), 0.0, 0.0, jnp.sin(yaw / 2)])
        i = self._cube_qpos
        qpos = qpos.at[i:i + 3].set(jnp.concatenate([cube_xy, jnp.array([self.cube_half])])).at[i + 3:i + 7].set(quat)
        target = jnp.concatenate([target_xy, jnp.array([self.cube_half])])
        mocap = jnp.concatenate([target_xy, jnp.zeros(1)])[None]
        data = self.make_data(qpos, jnp.zeros(self.mj_model.nv), ctrl=ctrl, mocap_pos=mocap)
        return data, {"target": target}

    def cube_pos(self, data):
        return data.xpos[self._cube_body]

    def finger_opening(self, data):
        """Opening of each finger in metres (0 closed, 0.04 fully open)."""
        return data.qpos[ARM_JOINTS]

    def _observe(self, data, episode):
        i, v = self._cube_qpos, self._cube_qvel
        cube, target, ee = self.cube_pos(data), episode["target"], self.ee_pos(data)
        return jnp.concatenate(
            self._arm_obs(data)
            + [cube, data.qpos[i + 3:i + 7], data.qvel[v:v + 6], target[:2], target - cube, cube - ee]
        ).astype(jnp.float32)

    def in_keep_out(self, data) -> jax.Array:
        """True when the ee, or the cube's centre (box grown by its half size), is in the keep-out box."""
        half = jnp.asarray(self.pillar_half) + self.keep_out_margin
        centre = jnp.asarray(self.pillar_center)
        ee = jnp.all(jnp.abs(self.ee_pos(data)[:2] - centre) < half)
        cube = jnp.all(jnp.abs(self.cube_pos(data)[:2] - centre) < half + self.cube_half)
        return ee | cube

    def _placed(self, data, episode):
        cube = self.cube_pos(data)
        near = jnp.linalg.norm((episode["target"] - cube)[:2]) < self.success_radius
        return near & (cube[2] < 0.03)

    def _reward(self, data, episode, action):
        cube, ee = self.cube_pos(data), self.ee_pos(data)
        target_dist = jnp.linalg.norm((episode["target"] - cube)[:2])
        reach_dist = jnp.linalg.norm(cube - ee)
        reach = tolerance(reach_dist, (0.0, 0.03), margin=0.3)
        lifted = jnp.clip((cube[2] - self.cube_half) / 0.05, 0.0, 1.0)
        place = tolerance(target_dist, (0.0, self.success_radius), margin=0.35)
        success = self._success(data, episode).astype(jnp.float32)
        reward = 0.1 * reach + 0.2 * lifted + 0.5 * place + 0.2 * success
        return reward, {"target_distance": target_dist, "reach_distance": reach_dist, "cube_height": cube[2]}

    def _terminated(self, data, episode):
        cube = self.cube_pos(data)
        off_table = (cube[0] < -0.3) | (cube[0] > 0.9) | (jnp.abs(cube[1]) > 0.6)
        return off_table | self.in_keep_out(data)

    def _success(self, data, episode):
        return self._placed(data, episode) & (self.finger_opening(data) > 0.03) & ~self.in_keep_out(data)
