"""Mid-episode perturbations: a wrapper that applies a disturbance once per episode, when it is due.

    env = Perturbation(task, trigger, apply, delay=0)

`trigger(state) -> bool` says when the perturbation becomes due (e.g. first contact with an
object); it is checked on the state each step returns. `apply(state, key) -> state` is the
disturbance itself (e.g. move the object); it runs at the end of the step `delay` control steps
after the one whose state triggered it (delay 0: that same step), so the observation that step
returns already shows the disturbed world. It fires at most once per episode and never on a step
that ended the episode. Tasks expose named perturbations through `perturbation(name, **kw) ->
(trigger, apply)` and `perturbation_names`; `robojax.envs.make(name, perturbation=...)` builds the
wrapper from them, directly on the task (below ActionRepeat, TimeLimit and EpisodeStatistics).

Reported in `info` every step (and so in the final step's info that AutoResetWrapper keeps):
  perturbed:       bool, the perturbation has been applied in this episode.
  perturbed_step:  int, the number of control steps the episode had taken when it was applied
                   (1: at the end of the first step; the same count TimeLimit keeps); -1 before.
The per-episode flags live in `state.episode` (so every reset, autoreset included, clears them):
`perturbation_t` (steps taken), `perturbation_due` (the step it is due at, -1 while not
triggered), `perturbed_step`, and `perturbation_key`, the episode's key for `apply`. That key is
`fold_in(reset key, ...)`, and the wrapped env's own reset gets the reset key unchanged: for the
same reset key the initial state is the unwrapped env's, and the perturbation's random draw is
the same whichever policy runs the episode, so perturbed and clean evaluations pair up.

`shift_free_joint` is the generic MuJoCo building block for "the object was moved": it moves a
free joint's body by a random horizontal distance in a random direction and recomputes the
derived physics, the observation and the success flag.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from robojax.envs.core import Env, EnvState, Wrapper

Trigger = Callable[[EnvState], jax.Array]
Apply = Callable[[EnvState, jax.Array], EnvState]

INFO_KEYS = ("perturbed", "perturbed_step")
_KEY_SALT = 0x7E27  # fold_in salt for the episode's perturbation key


class Perturbation(Wrapper):
    """Applies `apply` once per episode, `delay` control steps after `trigger` first holds.

    Args:
      env: the task (put it directly on the task: `apply` usually recomputes the task's own
        observation, and `delay` then counts the task's control steps).
      trigger: `(state) -> bool scalar`, evaluated on the state every step returns.
      apply: `(state, key) -> state` of the same pytree structure and dtypes; it must leave the
        state consistent (physics, obs, info) since the step returns what it gives.
      delay: control steps between the step whose state triggered and the step that applies.
      name: what to call it in reprs and errors (e.g. the task's perturbation name).

    Works on one env; batch it with VmapWrapper (each env fires on its own). Under `vmap` the
    `apply` branch is evaluated every step for every env and selected, as `lax.cond` does there.
    """

    def __init__(self, env: Env, trigger: Trigger, apply: Apply, delay: int = 0, name: str = ""):
        super().__init__(env)
        if not callable(trigger) or not callable(apply):
            raise TypeError(
                f"Perturbation needs callables trigger(state) and apply(state, key), got {trigger!r}, {apply!r}"
            )
        if int(delay) != delay or delay < 0:
            raise ValueError(f"Perturbation delay must be a non-negative integer (control steps), got {delay!r}")
        if env.batch_size is not None:
            raise ValueError(
                "Perturbation wraps one env (it sits inside the vmap); wrap the task before"
                f" VmapWrapper, e.g. envs.make(..., perturbation=...). Got a batched env {env!r}"
            )
        self.trigger = trigger
        self.apply = apply
        self.delay = int(delay)
        self.name = name

    def _begin(self, state: EnvState, key) -> EnvState:
        if any(k in state.info for k in INFO_KEYS):
            raise ValueError(
                f"{self!r}: the wrapped env already reports {INFO_KEYS} in info; stack one Perturbation"
                " per env (compose several disturbances into one trigger/apply pair instead)"
            )
        minus_one = jnp.full((), -1, jnp.int32)
        episode = {
            **state.episode,
            "perturbation_t": jnp.zeros((), jnp.int32),
            "perturbation_due": minus_one,
            "perturbed_step": minus_one,
            "perturbation_key": jax.random.fold_in(key, _KEY_SALT),
        }
        info = {**state.info, "perturbed": jnp.zeros((), bool), "perturbed_step": minus_one}
        return state.replace(episode=episode, info=info)

    def reset(self, key):
        return self._begin(self.env.reset(key), key)

    def reset_with_parameters(self, key, params):
        return self._begin(self.env.reset_with_parameters(key, params), key)

    def step(self, state, action):
        nxt = self.env.step(state, action)
        ep = state.episode
        t = ep["perturbation_t"] + 1
        done_before = ep["perturbed_step"] >= 0
        pending = ep["perturbation_due"] >= 0
        triggered = ~done_before & ~pending & jnp.asarray(self.trigger(nxt), bool)
        due = jnp.where(triggered, t + self.delay, ep["perturbation_due"]).astype(jnp.int32)
        fire = ~done_before & (due >= 0) & (t >= due) & ~nxt.done
        key = ep["perturbation_key"]
        out = jax.lax.cond(fire, lambda s: self.apply(s, key), lambda s: s, nxt)
        perturbed_step = jnp.where(fire, t, ep["perturbed_step"]).astype(jnp.int32)
        episode = {**out.episode, "perturbation_t": t, "perturbation_due": due, "perturbed_step": perturbed_step}
        info = {**out.info, "perturbed": perturbed_step >= 0, "perturbed_step": perturbed_step}
        return out.replace(episode=episode, info=info)

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        return f"Perturbation({label}{self.env!r}, delay={self.delay})"


def yaw_only(quat: jax.Array) -> jax.Array:
    """The rotation about world z closest in heading to `quat` (w, x, y, z): the body set upright."""
    w, x, y, z = quat[0], quat[1], quat[2], quat[3]
    yaw = jnp.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
    zero = jnp.zeros_like(yaw)
    return jnp.stack([jnp.cos(yaw / 2), zero, zero, jnp.sin(yaw / 2)]).astype(quat.dtype)


def shift_free_joint(
    env: Env,
    state: EnvState,
    key: jax.Array,
    joint: str | int,
    *,
    low: float,
    high: float,
    z: float | None = None,
    upright: bool = False,
    valid: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    tries: int = 64,
) -> EnvState:
    """Move the body of MuJoCo free joint `joint` by a random distance in [low, high] m, horizontally.

    The direction is uniform; `z` (if given) sets the body's height, e.g. its resting height to put
    it on the table; `upright=True` keeps only its heading (yaw). Its velocities are zeroed, then
    `mjx.forward` recomputes the derived data (positions, contacts, sensors) and the state's
    observation and `info["success"]` are recomputed from them, so the state is consistent.

    `valid(pos (3,), quat (4,)) -> bool` restricts where it may land (table limits, clearance
    from the gripper): `tries` (angle, distance) candidates are drawn and the first valid one is
    taken, which keeps the distance in [low, high] (its distribution conditioned on validity).
    If no candidate is valid the body is left untouched.

    `env` is an MjxEnv task or any wrapper of one (the task's `_observe`/`_success` are used, so
    put the Perturbation wrapper directly on the task). Pure and jittable; `key` is consumed.
    """
    import mujoco
    from mujoco import mjx

    from robojax.envs.mjx_env import MjxEnv

    task = env.unwrapped
    if not isinstance(task, MjxEnv):
        raise TypeError(f"shift_free_joint needs an MJX task (an MjxEnv), got {type(task).__name__}")
    if not 0.0 <= low <= high:
        raise ValueError(f"shift distance needs 0 <= low <= high, got low={low}, high={high}")
    if tries < 1:
        raise ValueError(f"tries must be >= 1, got {tries}")
    model = task.mj_model
    jid = int(joint) if isinstance(joint, (int, np.integer)) else model.joint(joint).id
    if not 0 <= jid < model.njnt or model.jnt_type[jid] != mujoco.mjtJoint.mjJNT_FREE:
        raise ValueError(f"joint {joint!r} is not a free joint of {type(task).__name__}'s model")
    qa, va = int(model.jnt_qposadr[jid]), int(model.jnt_dofadr[jid])

    data = state.physics
    pos, quat = data.qpos[qa : qa + 3], data.qpos[qa + 3 : qa + 7]
    if upright:
        quat = yaw_only(quat)
    k_angle, k_dist = jax.random.split(key)
    angle = jax.random.uniform(k_angle, (tries,), minval=-jnp.pi, maxval=jnp.pi)
    dist = jax.random.uniform(k_dist, (tries,), minval=low, maxval=high)
    offset = jnp.stack([dist * jnp.cos(angle), dist * jnp.sin(angle), jnp.zeros(tries)], axis=-1)
    candidates = pos + offset.astype(pos.dtype)
    if z is not None:
        candidates = candidates.at[:, 2].set(z)
    if valid is None:
        ok = jnp.ones(tries, bool)
    else:
        ok = jax.vmap(lambda p: jnp.asarray(valid(p, quat), bool))(candidates)
    found = jnp.any(ok)
    new_pos = candidates[jnp.argmax(ok)]

    qpos = data.qpos.at[qa : qa + 3].set(new_pos).at[qa + 3 : qa + 7].set(quat)
    qvel = data.qvel.at[va : va + 6].set(0.0)
    moved = data.replace(qpos=jnp.where(found, qpos, data.qpos), qvel=jnp.where(found, qvel, data.qvel))
    moved = mjx.forward(task.model_for(state.dynamics), moved)
    obs = task._observe(moved, state.episode).astype(state.obs.dtype)
    success = jnp.asarray(task._success(moved, state.episode), bool)
    return state.replace(physics=moved, obs=obs, info={**state.info, "success": success})
