"""7-DoF Panda-like arm tasks: `arm_reach`, `arm_push_cube` and `arm_pick_place`.

Actions are Cartesian, as on SERL's Franka: a[:3] in [-1, 1] moves the end-effector target by up to
`max_ee_step` metres per control step, clipped to a workspace box; damped-least-squares inverse
kinematics inside the jitted step turns that into joint-position servo targets, holding the gripper
pointing down and pulling the redundant joint towards the home posture. Tasks that use the gripper
add a[3] in [-1, 1] (-1 closed, +1 open).

The constants, controller, observation, reward, termination and success live in
`robojax.tasks.arm` (shared with the C-MuJoCo simulator `robojax.drivers.sim_robot`); each env here
inherits its task class and adds the MJX model, the jitted Jacobian and the reset distribution.

Named mid-episode perturbations for the `robojax.envs.perturbation.Perturbation` wrapper
(`envs.make(name, perturbation=...)`; `task.perturbation(name, **kw) -> (trigger, apply)`):
  arm_push_cube  "cube_shift": at first contact the cube is moved 3-5 cm.
  arm_pick_place "cube_drop":  once the cube is held and lifted, it is dropped back on the table
                               3-5 cm away.
                 "cube_shift": at first contact, while the cube still rests on the table (before
                               the grasp), it is moved 3-5 cm.
"First contact" is geometric and cheap: a fingertip capsule within `contact_distance` (2 mm) of
the cube's surface (capsule sampled at 5 points along its axis, distance to the oriented box).
"Held" is both fingertips in contact; "lifted" is the cube's centre `drop_lift` (4 cm) above its
resting height, high enough that the fingertips clear the top of the dropped cube. The moved
cube is set upright (heading kept) at rest on the table, in a random direction, with a 5 mm gap
to the fingertips, inside the task's region and not on its goal (nor, on pick-place, in the
pillar's keep-out box).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from mujoco import mjx

from envs._assets import asset_path
from robojax.envs.core import ArraySpec, EnvState
from robojax.envs.mjx_env import MjxEnv, load_model
from robojax.envs.perturbation import shift_free_joint
from robojax.tasks import arm as arm_task
from robojax.tasks.arm import ARM_JOINTS


class _ArmEnv(MjxEnv):
    """Shared arm machinery: Cartesian action -> IK -> joint servo targets (constants from the task class)."""

    _cube_qpos: int | None = None
    _cube_qvel: int | None = None
    _cube_body: int | None = None

    # Named perturbations (see the module docstring); `perturbation(name)` builds them.
    perturbation_names: tuple[str, ...] = ()
    contact_distance = 0.002  # m: a fingertip this close to the cube's surface touches it
    shift_clearance = 0.005  # m: gap a moved cube keeps to the fingertips
    shift_low, shift_high = 0.03, 0.05  # m: how far a perturbation moves the cube
    # xy box the moved cube must land in (tasks with a cube set it).
    shift_region_low = np.array([-np.inf, -np.inf])
    shift_region_high = np.array([np.inf, np.inf])

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
            self._cube_size = jnp.asarray(model.geom_size[model.geom("cube").id], jnp.float32)  # half sizes
        tips = [model.geom(name).id for name in ("left_fingertip", "right_fingertip")]
        self._fingertips = np.asarray(tips)
        self._fingertip_radius = jnp.asarray(model.geom_size[tips, 0], jnp.float32)
        self._fingertip_half_length = jnp.asarray(model.geom_size[tips, 1], jnp.float32)

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

    # ---- perturbations -----------------------------------------------------------------------
    def fingertip_gaps(self, data, cube_pos=None, cube_mat=None) -> jax.Array:
        """(2,) distance from each fingertip capsule to the cube's surface (negative: penetrating).

        `cube_pos`/`cube_mat` (3,), (3, 3) put the cube elsewhere (default: where it is). Each
        capsule is sampled at 5 points along its axis; exact enough (< 1 mm) for contact tests.
        """
        centre = self.cube_pos(data) if cube_pos is None else cube_pos
        rot = data.xmat[self._cube_body] if cube_mat is None else cube_mat
        mid = data.geom_xpos[self._fingertips]  # (2, 3)
        axis = data.geom_xmat[self._fingertips][:, :, 2]  # capsules lie along their local z
        s = jnp.linspace(-1.0, 1.0, 5)
        pts = mid[:, None] + (s[None, :, None] * self._fingertip_half_length[:, None, None]) * axis[:, None]
        q = jnp.abs((pts - centre) @ rot) - self._cube_size  # in the cube's frame
        dist = jnp.linalg.norm(jnp.maximum(q, 0.0), axis=-1) + jnp.minimum(jnp.max(q, axis=-1), 0.0)
        return jnp.min(dist, axis=-1) - self._fingertip_radius

    def touching(self, data, contact_distance: float | None = None) -> jax.Array:
        """Some fingertip is within `contact_distance` of the cube (default the class's, 2 mm)."""
        d = self.contact_distance if contact_distance is None else contact_distance
        return jnp.min(self.fingertip_gaps(data)) < d

    def perturbation(self, name: str, **kwargs):
        """`(trigger, apply)` of the named perturbation, for `robojax.envs.perturbation.Perturbation`."""
        if name not in self.perturbation_names:
            available = ", ".join(repr(n) for n in self.perturbation_names) or "none"
            raise ValueError(f"{self.name} has no perturbation {name!r}; available: {available}")
        return getattr(self, f"_perturbation_{name}")(**kwargs)

    def _shift_allowed(self, pos, episode) -> jax.Array:
        """Task-specific places a moved cube must avoid (its goal, keep-out boxes); default none."""
        return jnp.ones((), bool)

    def shift_cube(self, state: EnvState, key, low: float | None = None, high: float | None = None) -> EnvState:
        """The cube moved `low`-`high` m (default 3-5 cm) in a random direction, upright at rest on
        the table, inside `shift_region_*`, clear of the fingertips and allowed by the task."""
        low = self.shift_low if low is None else low
        high = self.shift_high if high is None else high
        data = state.physics
        region_low = jnp.asarray(self.shift_region_low, jnp.float32)
        region_high = jnp.asarray(self.shift_region_high, jnp.float32)

        def valid(pos, quat):
            inside = jnp.all((pos[:2] >= region_low) & (pos[:2] <= region_high))
            clear = jnp.min(self.fingertip_gaps(data, pos, _quat_to_mat(quat))) > self.shift_clearance
            return inside & clear & self._shift_allowed(pos, state.episode)

        rest_z = self._cube_size[2]
        return shift_free_joint(self, state, key, "cube_joint", low=low, high=high, z=rest_z, upright=True, valid=valid)

    def _perturbation_cube_shift(self, low: float | None = None, high: float | None = None, contact_distance=None):
        """At first fingertip contact with the cube, the cube is moved `low`-`high` m."""

        def trigger(state):
            return self.touching(state.physics, contact_distance)

        def apply(state, key):
            return self.shift_cube(state, key, low, high)

        return trigger, apply

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

    perturbation_names = ("cube_shift",)
    # A moved cube stays where goals are drawn (inside the workspace, well on the table).
    shift_region_low = arm_task.PushCube.goal_low
    shift_region_high = arm_task.PushCube.goal_high

    def _shift_allowed(self, pos, episode):
        # Never onto the goal: the perturbation must not solve the task.
        return jnp.linalg.norm(pos[:2] - episode["goal"][:2]) > self.success_radius + 0.01

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

    perturbation_names = ("cube_drop", "cube_shift")
    # Where a moved cube may land: graspable, between the start and target regions' extents.
    shift_region_low = np.array([0.30, -0.15])
    shift_region_high = np.array([0.72, 0.15])
    # "Lifted" for cube_drop: cube centre this far above its resting height (fingertips then
    # clear the dropped cube's top by ~1 cm).
    drop_lift = 0.04

    def _shift_allowed(self, pos, episode):
        # Not in the pillar's keep-out box (grown by 1 cm), not on the target (grown by 1 cm).
        half = jnp.asarray(self.pillar_half) + self.keep_out_margin + self.cube_half + 0.01
        in_keep_out = jnp.all(jnp.abs(pos[:2] - jnp.asarray(self.pillar_center)) < half)
        near_target = jnp.linalg.norm(pos[:2] - episode["target"][:2]) < self.success_radius + 0.01
        return ~in_keep_out & ~near_target

    def holding(self, data, lift: float | None = None, contact_distance: float | None = None) -> jax.Array:
        """Both fingertips touch the cube and it is `lift` m (default `drop_lift`) above resting height."""
        lift = self.drop_lift if lift is None else lift
        d = self.contact_distance if contact_distance is None else contact_distance
        held = jnp.all(self.fingertip_gaps(data) < d)
        return held & (self.cube_pos(data)[2] > self.cube_half + lift)

    def _perturbation_cube_drop(self, low: float | None = None, high: float | None = None, lift: float | None = None):
        """Once the cube is held and lifted `lift` m, it drops back on the table `low`-`high` m away."""

        def trigger(state):
            return self.holding(state.physics, lift)

        def apply(state, key):
            return self.shift_cube(state, key, low, high)

        return trigger, apply

    def _perturbation_cube_shift(self, low: float | None = None, high: float | None = None, contact_distance=None):
        """At first fingertip contact while the cube rests on the table (before the grasp), it is moved."""

        def trigger(state):
            resting = self.cube_pos(state.physics)[2] < self.cube_half + 0.005
            return resting & self.touching(state.physics, contact_distance)

        def apply(state, key):
            return self.shift_cube(state, key, low, high)

        return trigger, apply

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


def _quat_to_mat(q):
    """Rotation matrix of a unit quaternion (w, x, y, z)."""
    w, x, y, z = q[0], q[1], q[2], q[3]
    return jnp.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )
