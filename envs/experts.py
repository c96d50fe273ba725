"""Scripted experts for the arm tasks: jittable, vmappable state-feedback controllers.

    action = expert_action(env, state, key, noise=0.0)

`env` is the task (wrapped or not), `state` one env's `EnvState` (vmap over a batch), and `key`
the *episode's* expert key: pass the same key at every step of an episode. Everything else is
read from the state each step (cube, target and ee from `state.physics`/`state.episode`), so the
expert recovers from disturbances and needs no memory. The one per-episode choice, the side on
which `arm_pick_place` passes the pillar, is drawn from `key` (`expert_mode`). Exploration noise
(`noise` > 0: Gaussian, std in action units, on the Cartesian dims only) uses
`fold_in(key, step)` with the step number read from the physics clock, so it differs per step.
The gripper command stays exactly -1 (closed) or +1 (open).

Phase machines (chosen afresh every step from the state):
  arm_push_cube:  reposition behind the cube (lift over it when needed) -> descend -> push
                  along the cube-to-goal line with lateral correction -> stop at the goal.
  arm_pick_place: open and hover over the cube -> descend -> close -> lift and move to the
                  chosen side of the pillar -> carry past it -> over the target -> lower the
                  cube onto it -> open and retreat upwards.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from envs.arm import ArmPickPlace, ArmPushCube
from robojax.envs.core import Env, EnvState

MODES = ("left", "right")  # arm_pick_place: pass the pillar at +y (left, seen from the robot) or -y


def expert_mode(env: Env, key: jax.Array) -> jax.Array:
    """The episode's mode drawn from its expert key: 0 = left (+y), 1 = right (-y); 0 for tasks without modes."""
    if isinstance(env.unwrapped, ArmPickPlace):
        return jax.random.bernoulli(jax.random.fold_in(key, 0x5EED)).astype(jnp.int32)
    return jnp.zeros((), jnp.int32)


def _move(env, ee, goal, gain=1.0):
    """Cartesian action that moves the ee towards `goal`, direction preserved, capped at one max step.

    gain > 1 commands past the goal when close, which cancels the IK's steady-state lag (its
    null-space pull leaks into the task space).
    """
    a = gain * (goal - ee) / env.max_ee_step
    return a / jnp.maximum(1.0, jnp.max(jnp.abs(a)))


def _noise(env, state, key, noise, action):
    if noise == 0.0:
        return action
    step = jnp.round(state.physics.time / env.dt).astype(jnp.int32)
    eps = noise * jax.random.normal(jax.random.fold_in(key, step), (3,))
    return action.at[:3].set(jnp.clip(action[:3] + eps, -1.0, 1.0))


def push_cube_action(env: Env, state: EnvState, key: jax.Array, noise: float = 0.0) -> jax.Array:
    """Expert for `arm_push_cube` (3-D action)."""
    task: ArmPushCube = env.unwrapped
    data = state.physics
    ee, cube, goal = task.ee_pos(data), task.cube_pos(data), state.episode["goal"]
    d = goal[:2] - cube[:2]
    dist = jnp.linalg.norm(d)
    u = d / jnp.maximum(dist, 1e-6)
    rel = ee[:2] - cube[:2]
    along = rel @ u
    lat = rel - along * u
    push_z, clear_z = 0.02, 0.075
    # Pushing: behind the cube, on the line through its centre, at pushing height.
    behind = (along < -0.025) & (along > -0.075) & (jnp.linalg.norm(lat) < 0.015) & (ee[2] < 0.035)
    push_xy = ee[:2] + u * jnp.minimum(0.03, 0.7 * dist) - lat
    # Repositioning: to a pre-push point 6.5 cm behind the cube, over the cube when the way crosses it.
    pre = cube[:2] - 0.065 * u
    at_pre = jnp.linalg.norm(ee[:2] - pre) < 0.015
    seg = pre - ee[:2]
    s = jnp.clip(((cube[:2] - ee[:2]) @ seg) / jnp.maximum(seg @ seg, 1e-9), 0.0, 1.0)
    # Half-diagonal of the cube (0.035) + half-width of the closed fingers (0.018).
    path_hits_cube = jnp.linalg.norm(ee[:2] + s * seg - cube[:2]) < 0.055
    lift_first = path_hits_cube & (ee[2] < clear_z - 0.015)
    repos_goal = jnp.where(
        at_pre,
        jnp.concatenate([pre, jnp.array([push_z])]),
        jnp.where(
            lift_first,
            jnp.concatenate([ee[:2], jnp.array([clear_z])]),
            jnp.concatenate([pre, jnp.array([jnp.where(path_hits_cube, clear_z, ee[2])])]),
        ),
    )
    goal_pos = jnp.where(behind, jnp.concatenate([push_xy, jnp.array([push_z])]), repos_goal)
    action = _move(task, ee, goal_pos, gain=4.0)
    action = jnp.where(dist < 0.012, jnp.zeros(3), action)  # at the goal: hold still
    return _noise(task, state, key, noise, action)


def pick_place_action(env: Env, state: EnvState, key: jax.Array, noise: float = 0.0) -> jax.Array:
    """Expert for `arm_pick_place` (4-D action; gripper -1 closed / +1 open)."""
    task: ArmPickPlace = env.unwrapped
    data = state.physics
    ee, cube, target = task.ee_pos(data), task.cube_pos(data), state.episode["target"]
    g = task.finger_opening(data)
    mode = expert_mode(task, key)
    side_y = jnp.where(mode == 0, 0.16, -0.16)
    carry_z, grasp_z, hover = 0.12, 0.012, 0.07
    rel = cube - ee
    x_past = float(task.pillar_center[0] + task.pillar_half[0]) + task.keep_out_margin + task.cube_half + 0.015
    x_before = float(task.pillar_center[0] - task.pillar_half[0]) - task.keep_out_margin - task.cube_half - 0.01

    # Released on the target: open, then retreat to hover above the cube (anchored to the cube,
    # so IK drift cannot walk the ee into the keep-out box).
    placed = (jnp.linalg.norm(target[:2] - cube[:2]) < 0.025) & (cube[2] < task.cube_half + 0.006)
    release_goal = jnp.concatenate([cube[:2], jnp.array([jnp.where(g > 0.03, carry_z, ee[2])])])

    # Holding the cube: pads closed on it, cube between the fingers.
    # (Soft contacts: the pads sink ~6 mm into the cube, so a held cube reads g ~ 0.014.)
    in_hand = (jnp.linalg.norm(rel[:2]) < 0.03) & (jnp.abs(rel[2] - (task.cube_half - grasp_z)) < 0.03)
    in_hand = in_hand & (g < 0.026) & (g > 0.006)
    # Carry route by zones along x: before the pillar (lift, go to the side), beside it (travel
    # along x at the side), past it (over the target, never back towards the pillar).
    at_side = (jnp.abs(ee[1] - side_y) < 0.015) & (ee[2] > carry_z - 0.03)
    travel = jnp.stack([jnp.asarray(x_past + 0.045), side_y, jnp.asarray(carry_z)])
    to_side = jnp.stack([jnp.minimum(ee[0], x_before), side_y, jnp.asarray(carry_z)])
    # Aim with the cube, not the ee, for placing (the grasp offset is never exactly zero).
    place_xy = ee[:2] + target[:2] - cube[:2]
    place_xy = place_xy.at[0].set(jnp.maximum(place_xy[0], x_past + 0.015))
    # Lower the cube as it closes in on the target: a continuous blend (no toggling between
    # "descend" and "carry" that would jerk the cube out of the fingers).
    err = jnp.linalg.norm(target[:2] - cube[:2])
    w = jnp.clip((err - 0.008) / 0.02, 0.0, 1.0)
    place_z = (1.0 - w) * (ee[2] + task.cube_half + 0.001 - cube[2]) + w * carry_z
    carry_goal = jnp.where(
        ee[0] < x_before,
        jnp.where(at_side, travel, to_side),
        jnp.where(ee[0] < x_past, travel, jnp.concatenate([place_xy, place_z[None]])),
    )

    # Grasping: open above the cube, descend, close.
    aligned = jnp.linalg.norm(rel[:2]) < 0.01
    low = ee[2] < grasp_z + 0.006
    is_open = g > 0.032
    above = jnp.concatenate([cube[:2], jnp.array([cube[2] + hover])])
    down = jnp.concatenate([cube[:2], jnp.array([grasp_z])])
    close = aligned & low & (g > 0.006)
    grasp_goal = jnp.where(aligned & (is_open | low), down, above)
    grasp_grip = jnp.where(close, -1.0, 1.0)

    goal = jnp.where(placed, release_goal, jnp.where(in_hand, carry_goal, grasp_goal))
    grip = jnp.where(placed, 1.0, jnp.where(in_hand, -1.0, grasp_grip))
    # Carry a little slower than full speed: gentler on the grasp.
    move = _move(task, ee, goal) * jnp.where(in_hand & ~placed, 0.7, 1.0)
    action = jnp.concatenate([move, grip[None]])
    return _noise(task, state, key, noise, action)


def expert_action(env: Env, state: EnvState, key: jax.Array, noise: float = 0.0) -> jax.Array:
    """The scripted expert's action for `env`'s task (see module docstring)."""
    task = env.unwrapped
    if isinstance(task, ArmPickPlace):
        return pick_place_action(env, state, key, noise)
    if isinstance(task, ArmPushCube):
        return push_cube_action(env, state, key, noise)
    raise ValueError(
        f"no scripted expert for {type(task).__name__}; experts exist for arm_push_cube and arm_pick_place"
    )


def make_rollout(env: Env, episode_length: int, noise: float = 0.0):
    """A jitted `rollout(keys [B]) -> dict` running the expert for `episode_length` steps in a batched env.

    `env` must be batched (`envs.make(..., num_envs=B, autoreset=False)`). Each key seeds one
    episode: `split(key)` gives its reset key and its expert key. Returns arrays with time first:
    obs [T, B, *obs] (the observation each action was taken at), action [T, B, A], reward,
    terminated, done, success [T, B] (after each step), mode [B] (`expert_mode`).
    """
    if env.batch_size is None:
        raise ValueError("make_rollout needs a batched env: envs.make(name, num_envs=B, autoreset=False)")

    def rollout(keys):
        pairs = jax.vmap(jax.random.split)(keys)
        reset_keys, expert_keys = pairs[:, 0], pairs[:, 1]
        state = env.reset(reset_keys)
        act = jax.vmap(lambda s, k: expert_action(env, s, k, noise))

        def body(state, _):
            action = act(state, expert_keys)
            nxt = env.step(state, action)
            out = {
                "obs": state.obs,
                "action": action,
                "reward": nxt.reward,
                "terminated": nxt.terminated,
                "done": nxt.done,
                "success": nxt.info["success"],
            }
            return nxt, out

        _, traj = jax.lax.scan(body, state, None, length=episode_length)
        traj["mode"] = jax.vmap(lambda k: expert_mode(env, k))(expert_keys)
        return traj

    return jax.jit(rollout)
