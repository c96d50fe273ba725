"""The Panda arm tasks (`arm_reach`, `arm_push_cube`, `arm_pick_place`): constants and pure maths.

`envs/arm.py` (MJX, jax.numpy) and `robojax.drivers.sim_robot` (C MuJoCo, numpy) both build on
these classes, so the two simulators share one definition of the workspace, the controller, the
observation, reward, termination and success. Every method takes the array module `xp` and a
`reading` of the physics state (`read_state` below says what it holds), so the backend only reads
its own data structure.

The MJX env inherits a task class (its constants become class attributes); the simulator keeps
the class itself. Resets stay in each backend: they draw from different random generators.
"""

from __future__ import annotations

import numpy as np

ARM_JOINTS = 7
# The end-effector's rotation matrix when the gripper points at the floor.
DOWN = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
# The table collides as an infinite plane; its drawn top spans x in [-0.3, 0.9], |y| < 0.6.
TABLE_X = (-0.3, 0.9)
TABLE_HALF_Y = 0.6


def read_state(qpos, qvel, ee, ee_rot, cube=None, cube_qpos: int | None = None, cube_qvel: int | None = None) -> dict:
    """The quantities the task maths reads, from either backend's arrays.

    Args:
      qpos, qvel: the model's generalized positions and velocities.
      ee, ee_rot: the "ee" site's position (3,) and rotation matrix (3, 3).
      cube: the cube body's position (3,), for tasks with a cube.
      cube_qpos, cube_qvel: the cube free joint's qpos / dof addresses.
    """
    reading = {
        "q": qpos[:ARM_JOINTS],
        "qd": qvel[:ARM_JOINTS],
        "finger": qpos[ARM_JOINTS],  # opening of each finger, metres (0 closed, 0.04 open)
        "ee": ee,
        "ee_rot": ee_rot,
    }
    if cube is not None:
        reading.update(
            cube=cube, cube_quat=qpos[cube_qpos + 3 : cube_qpos + 7], cube_vel=qvel[cube_qvel : cube_qvel + 6]
        )
    return reading


def gaussian_tolerance(xp, x, upper: float, margin: float, value_at_margin: float = 0.1):
    """`robojax.envs.rewards.tolerance(x, (0, upper), margin)` (gaussian sigmoid) for any `xp`.

    Written out because rewards.py is JAX-only; tests/tasks checks the two agree.
    """
    in_bounds = (0.0 <= x) & (x <= upper)
    d = xp.where(x < 0.0, 0.0 - x, x - upper) / margin
    scale = xp.sqrt(-2.0 * xp.log(value_at_margin))
    return xp.where(in_bounds, 1.0, xp.exp(-0.5 * (d * scale) ** 2))


class ArmTask:
    """What every arm task shares: the Cartesian controller and its workspace."""

    name = ""
    xml = ""
    obs_dim = 0
    episode_length = 0
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

    @classmethod
    def action_dim(cls) -> int:
        return 4 if cls.uses_gripper else 3

    @classmethod
    def tune_model(cls, model) -> None:
        """Task-specific edits of the C model before it is used (or copied to MJX); default none."""

    @classmethod
    def ee_target(cls, xp, ee, action, max_ee_step: float | None = None):
        """The ee target an action in [-1, 1] asks for, clipped to the workspace box."""
        step = cls.max_ee_step if max_ee_step is None else max_ee_step
        return xp.clip(ee + step * action[:3], cls.workspace_low, cls.workspace_high)

    @staticmethod
    def gripper_ctrl(grip_action, ctrl_range):
        """The gripper servo target for grip_action in [-1, 1] (-1 closed, +1 open)."""
        lo, hi = ctrl_range
        return lo + (grip_action + 1.0) / 2.0 * (hi - lo)

    @classmethod
    def ik_joint_targets(cls, xp, reading: dict, jac, target, home_q, q_low, q_high):
        """One damped-least-squares IK step: joint targets that move the ee towards `target`
        with the gripper pointing down. `jac` is the ee's (6, 7) arm Jacobian (position; rotation)."""
        q = reading["q"]
        # Orientation error as a rotation vector (small-angle), from the column cross products.
        rot_err = 0.5 * xp.sum(xp.cross(reading["ee_rot"], xp.asarray(DOWN), axis=0), axis=-1)
        twist = xp.concatenate([target - reading["ee"], cls.orientation_gain * rot_err])
        jjt = jac @ jac.T + cls.ik_damping * xp.eye(6)
        pinv = jac.T @ xp.linalg.inv(jjt)  # (7, 6)
        dq = pinv @ twist
        # Null-space pull to the home posture keeps the redundant elbow away from joint limits.
        null = xp.eye(ARM_JOINTS) - pinv @ jac
        dq = dq + null @ (cls.nullspace_gain * (home_q - q))
        return xp.clip(q + dq, q_low, q_high)

    @staticmethod
    def arm_observation(reading: dict) -> list:
        """joint pos (7), joint vel (7), finger opening scaled to ~[0, 1] (1), ee pos (3)."""
        return [reading["q"], reading["qd"], reading["finger"][None] * 25.0, reading["ee"]]

    @classmethod
    def task_observation(cls, xp, reading: dict, episode: dict):
        raise NotImplementedError

    @classmethod
    def task_reward(cls, xp, reading: dict, episode: dict):
        """(reward, metrics)."""
        raise NotImplementedError

    @classmethod
    def task_terminated(cls, xp, reading: dict, episode: dict):
        return xp.asarray(False)

    @classmethod
    def task_success(cls, xp, reading: dict, episode: dict):
        raise NotImplementedError

    @staticmethod
    def off_table(xp, cube):
        return (cube[0] < TABLE_X[0]) | (cube[0] > TABLE_X[1]) | (xp.abs(cube[1]) > TABLE_HALF_Y)


class Reach(ArmTask):
    """Move the end-effector to a random target in front of the robot.

    obs (24): joint pos (7), joint vel (7), finger opening (1), ee pos (3), target (3),
    target - ee (3). reward: 1 within 3 cm of the target, decaying smoothly over 0.4 m.
    """

    name = "arm_reach"
    xml = "arm_reach.xml"
    obs_dim = 24
    episode_length = 100
    success_radius = 0.03
    target_low = np.array([0.3, -0.3, 0.1])
    target_high = np.array([0.7, 0.3, 0.5])

    @classmethod
    def task_observation(cls, xp, reading, episode):
        target = episode["target"]
        return xp.concatenate(cls.arm_observation(reading) + [target, target - reading["ee"]]).astype(xp.float32)

    @classmethod
    def task_reward(cls, xp, reading, episode):
        dist = xp.linalg.norm(episode["target"] - reading["ee"])
        return gaussian_tolerance(xp, dist, cls.success_radius, 0.4), {"distance": dist}

    @classmethod
    def task_success(cls, xp, reading, episode):
        return xp.linalg.norm(episode["target"] - reading["ee"]) < cls.success_radius


class PushCube(ArmTask):
    """Push a 5 cm cube across the table to a random goal with the closed gripper.

    obs (38): arm (18, as in Reach), cube pos (3), cube quat (4), cube vel (6), goal xy (2),
    goal - cube xy (2), cube - ee (3). reward: 0.2 * (ee near cube) + 0.8 * (cube near goal).
    Terminates if the cube leaves the table top. Success: cube centre within 4 cm of the goal (xy).
    """

    name = "arm_push_cube"
    xml = "arm_push_cube.xml"
    obs_dim = 38
    episode_length = 200
    success_radius = 0.04
    workspace_low = np.array([0.25, -0.35, 0.015])
    workspace_high = np.array([0.75, 0.35, 0.3])
    cube_low = np.array([0.4, -0.15])
    cube_high = np.array([0.6, 0.15])
    goal_low = np.array([0.35, -0.25])
    goal_high = np.array([0.7, 0.25])
    min_goal_distance = 0.1
    max_goal_distance = 0.25
    max_start_yaw = np.pi / 4
    # The home pose has the fingertips 2 cm above the table; larger joint noise would start them
    # inside it.
    reset_joint_noise = 0.03
    # Tighter IK than the base class: with 0.5 / 1e-2 the ee settled 3+ cm short of targets at
    # x > 0.6 and z ~ 7 cm (where pushes towards -x start), more than one control step corrects.
    nullspace_gain = 0.1
    ik_damping = 3e-3

    @classmethod
    def task_observation(cls, xp, reading, episode):
        cube, goal, ee = reading["cube"], episode["goal"], reading["ee"]
        return xp.concatenate(
            cls.arm_observation(reading)
            + [cube, reading["cube_quat"], reading["cube_vel"], goal[:2], (goal - cube)[:2], cube - ee]
        ).astype(xp.float32)

    @classmethod
    def task_reward(cls, xp, reading, episode):
        cube, ee = reading["cube"], reading["ee"]
        goal_dist = xp.linalg.norm((episode["goal"] - cube)[:2])
        reach_dist = xp.linalg.norm(cube - ee)
        reach = gaussian_tolerance(xp, reach_dist, 0.04, 0.3)
        place = gaussian_tolerance(xp, goal_dist, cls.success_radius, 0.3)
        return 0.2 * reach + 0.8 * place, {"goal_distance": goal_dist, "reach_distance": reach_dist}

    @classmethod
    def task_terminated(cls, xp, reading, episode):
        return cls.off_table(xp, reading["cube"])

    @classmethod
    def task_success(cls, xp, reading, episode):
        return xp.linalg.norm((episode["goal"] - reading["cube"])[:2]) < cls.success_radius


class PickPlace(ArmTask):
    """Grasp a 4 cm cube, carry it around a pillar and place it on a target marker.

    Layout (world frame, metres): the cube starts at x in [0.35, 0.43], |y| <= 0.05; the target
    lies at x in [0.62, 0.70], |y| <= 0.05. A pillar (visual only, centre (0.52, 0), half extents
    0.03 x 0.05, taller than the workspace) stands between them, so the straight carry path is
    blocked and the cube must pass on the left (+y) or on the right (-y): the task is multimodal.
    The episode terminates as a failure when the ee enters the keep-out box (the pillar grown by
    `keep_out_margin`), when the cube's centre enters that box grown by the cube's half size, or
    when the cube leaves the table.

    action (4): ee delta (3) in [-1, 1] * 0.03 m, gripper in [-1, 1] (-1 closed, +1 open).
    obs (39): arm (18, as in Reach: joint pos 7, joint vel 7, finger opening 1, ee pos 3),
      cube pos (3), cube quat (4), cube vel (6), target xy (2), target - cube (3; the target's z
      is the resting cube's centre height), cube - ee (3).
    reward (dense, in [0, 1]): 0.1 * (ee near cube) + 0.2 * (cube lifted) + 0.5 * (cube near
      target, xy) + 0.2 * success.
    success: cube centre within `success_radius` (xy) of the target, resting on the table
      (z < 0.03) and released (each finger open > 3 cm, pads 1 cm clear of the cube).
    """

    name = "arm_pick_place"
    xml = "arm_pick_place.xml"
    obs_dim = 39
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
    max_start_yaw = 0.2
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

    @classmethod
    def tune_model(cls, model) -> None:
        g = model.actuator("gripper").id
        model.actuator_gainprm[g, 0] = cls.gripper_kp
        model.actuator_biasprm[g, 1] = -cls.gripper_kp
        for joint in ("finger_joint1", "finger_joint2"):
            dof = model.jnt_dofadr[model.joint(joint).id]
            model.dof_damping[dof] = cls.finger_damping
            model.dof_armature[dof] = cls.finger_armature

    @classmethod
    def task_observation(cls, xp, reading, episode):
        cube, target, ee = reading["cube"], episode["target"], reading["ee"]
        return xp.concatenate(
            cls.arm_observation(reading)
            + [cube, reading["cube_quat"], reading["cube_vel"], target[:2], target - cube, cube - ee]
        ).astype(xp.float32)

    @classmethod
    def keep_out_violated(cls, xp, ee, cube):
        """True when the ee, or the cube's centre (box grown by its half size), is in the keep-out box."""
        half = xp.asarray(cls.pillar_half) + cls.keep_out_margin
        centre = xp.asarray(cls.pillar_center)
        ee_in = xp.all(xp.abs(ee[:2] - centre) < half)
        cube_in = xp.all(xp.abs(cube[:2] - centre) < half + cls.cube_half)
        return ee_in | cube_in

    @classmethod
    def placed(cls, xp, cube, target):
        near = xp.linalg.norm((target - cube)[:2]) < cls.success_radius
        return near & (cube[2] < 0.03)

    @classmethod
    def task_reward(cls, xp, reading, episode):
        cube, ee = reading["cube"], reading["ee"]
        target_dist = xp.linalg.norm((episode["target"] - cube)[:2])
        reach_dist = xp.linalg.norm(cube - ee)
        reach = gaussian_tolerance(xp, reach_dist, 0.03, 0.3)
        lifted = xp.clip((cube[2] - cls.cube_half) / 0.05, 0.0, 1.0)
        place = gaussian_tolerance(xp, target_dist, cls.success_radius, 0.35)
        success = cls.task_success(xp, reading, episode).astype(xp.float32)
        reward = 0.1 * reach + 0.2 * lifted + 0.5 * place + 0.2 * success
        return reward, {"target_distance": target_dist, "reach_distance": reach_dist, "cube_height": cube[2]}

    @classmethod
    def task_terminated(cls, xp, reading, episode):
        return cls.off_table(xp, reading["cube"]) | cls.keep_out_violated(xp, reading["ee"], reading["cube"])

    @classmethod
    def task_success(cls, xp, reading, episode):
        cube = reading["cube"]
        return (
            cls.placed(xp, cube, episode["target"])
            & (reading["finger"] > 0.03)
            & ~cls.keep_out_violated(xp, reading["ee"], cube)
        )


TASKS = {task.name: task for task in (Reach, PushCube, PickPlace)}
