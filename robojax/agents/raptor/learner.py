"""RAPTOR meta-imitation: distil many quadrotor teachers into one small recurrent student.

Per epoch (research note 3.6, paper Fig. 8):
  1. Rebuild the dataset from scratch (no aggregation, no beta-mixing; this is not DAgger): on
     every training quadrotor, roll out `episodes_per_quadrotor` full episodes, with the teachers
     acting during the first `warmup_epochs` epochs and the student acting on-policy afterwards.
  2. Label every visited state with that quadrotor's *deterministic* teacher action, computed
     from the teacher's privileged observation.
  3. Shuffle the episodes and take gradient steps of MSE(student(o_1..t), a*_t) with
     backpropagation through time over whole episodes (a `lax.scan` through the GRU).
Steady-state position correction (RLtools' STEADY_STATE_POSITION_CORRECTION, optional): each
teacher settles at its own small position offset instead of exactly at the target. Left alone, the
student must imitate a different bias on every quadrotor, which it cannot tell apart. With the
correction, the student's position input during distillation is p - p_ref - offset_i, where
offset_i is teacher i's measured steady-state hover offset, so "where teacher i settles" reads as
zero, and the student learns to settle at the target itself. The labels are unchanged, and at
deployment the student sees the raw position.
Collection is vmapped over quadrotors and episodes; collection and all updates of an epoch are
one jitted call. The student networks are in `networks.py`, the imitation loss in `losses.py`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from robojax.agents.raptor.config import DistillConfig
from robojax.agents.raptor.losses import imitation_loss
from robojax.agents.raptor.networks import StudentFunctions, student_fns
from robojax.agents.raptor.teachers import teacher_action
from robojax.agents.sac import learner as sac_learner
from robojax.envs.core import Env, tree_where
from robojax.tasks.quadrotor import TEACHER_OBS_KEY


class Episodes(NamedTuple):
    """Fixed-length episodes (leading axes ..., time); steps after a crash are masked out."""

    obs: jax.Array  # student observation o_t (22)
    label: jax.Array  # deterministic teacher action a*_t
    action: jax.Array  # the action executed
    valid: jax.Array  # bool: the step happened before any termination
    crashed: jax.Array  # bool per episode: terminated before the end
    position: jax.Array  # true position (3)
    reference: jax.Array  # reference position (3); zeros when hovering
    reward: jax.Array


def _position_and_reference(state) -> tuple[jax.Array, jax.Array]:
    """True position and the reference; the observation's first 3 values are p - p_ref."""
    position = state.physics["position"]
    return position, position - state.obs[..., :3]


def rollout(
    env: Env,
    length: int,
    student: StudentFunctions,
    student_params: Any,
    teacher: sac_learner.TrainState,
    dynamics: dict,
    key: jax.Array,
    teacher_acts: jax.Array | bool,
    position_offset: jax.Array | None = None,
) -> Episodes:
    """One episode on one quadrotor, unbatched; `env` is an unwrapped-enough quadrotor task with
    `reset_with_parameters`. The teacher labels every state; `teacher_acts` picks who flies.
    `position_offset` (3,) is subtracted from the student's position input (and from the stored
    observations it is trained on); the teacher's input and the recorded positions are untouched."""
    state = env.unwrapped.reset_with_parameters(key, dynamics)
    carry = student.initial_carry((), student_params)
    shift = jnp.zeros(state.obs.shape, state.obs.dtype)
    if position_offset is not None:
        shift = shift.at[:3].set(jnp.asarray(position_offset, state.obs.dtype))

    def body(c, _):
        state, carry, alive = c
        obs = state.obs - shift
        label = teacher_action(teacher, state.info[TEACHER_OBS_KEY])
        student_action, carry = student.step(student_params, carry, obs)
        action = jnp.where(teacher_acts, label, student_action)
        nxt = env.unwrapped.step(state, action)
        position, reference = _position_and_reference(state)
        out = (obs, label, action, alive, position, reference, nxt.reward)
        # A crashed quadrotor stays frozen at its last state (steps after it are masked out).
        still = alive & ~nxt.terminated
        nxt = tree_where(still, nxt, state)
        return (nxt, carry, still), out

    (_, _, alive), (obs, label, action, valid, position, reference, reward) = jax.lax.scan(
        body, (state, carry, jnp.ones((), bool)), None, length=length
    )
    return Episodes(obs, label, action, valid, ~alive, position, reference, reward)


def collect(
    env: Env,
    length: int,
    episodes_per_quadrotor: int,
    student: StudentFunctions,
    student_params: Any,
    teachers: sac_learner.TrainState,
    dynamics: dict,
    key: jax.Array,
    teacher_acts: jax.Array | bool,
    position_offsets: jax.Array | None = None,
) -> Episodes:
    """Episodes on every quadrotor: leading axes (quadrotor, episode, time).

    teachers: one per quadrotor (leading axis); they label every state. (Evaluation, where quadrotors
    may have no teachers, flies policies through `evaluate.fly` instead.)
    position_offsets: (quadrotor, 3) student position-input corrections (None: none)."""
    num = jax.tree.leaves(dynamics)[0].shape[0]
    keys = jax.random.split(key, (num, episodes_per_quadrotor))
    if position_offsets is None:
        position_offsets = jnp.zeros((num, 3), jnp.float32)

    def per_quadrotor(teacher, dyn, quad_keys, offset):
        one = lambda k: rollout(env, length, student, student_params, teacher, dyn, k, teacher_acts, offset)
        return jax.vmap(one)(quad_keys)

    return jax.vmap(per_quadrotor)(teachers, dynamics, keys, position_offsets)


def steady_state_offsets(
    env: Env,
    teachers: sac_learner.TrainState,
    dynamics: dict,
    key: jax.Array,
    *,
    length: int = 500,
    episodes_per_quadrotor: int = 4,
    tail: int = 200,
) -> jax.Array:
    """Each teacher's steady-state position offset (quadrotor, 3): the mean of p - p_ref over the last
    `tail` steps of its own hover episodes that did not crash (zero where all of them crashed)."""
    if not 0 < tail <= length:
        raise ValueError(f"need 0 < tail <= length, got tail={tail}, length={length}")
    student = student_fns(True)
    params = student.init(jax.random.PRNGKey(0))  # not used: the teachers fly
    episodes = collect(env, length, episodes_per_quadrotor, student, params, teachers, dynamics, key, True)
    p_rel = (episodes.position - episodes.reference)[..., -tail:, :]  # (quadrotor, episode, tail, 3)
    ok = (~episodes.crashed).astype(jnp.float32)[..., None]  # (quadrotor, episode, 1)
    total = jnp.sum(jnp.mean(p_rel, axis=-2) * ok, axis=1)
    return total / jnp.maximum(jnp.sum(ok, axis=1), 1.0)


@struct.dataclass
class DistillState:
    params: Any
    opt_state: Any
    rng: jax.Array
    epoch: jax.Array


def optimizer(config: DistillConfig) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(config.grad_clip), optax.adam(config.learning_rate))


def init_distill(key: jax.Array, config: DistillConfig, student: StudentFunctions | None = None) -> DistillState:
    student = student or student_fns(config.recurrent)
    init_key, rng = jax.random.split(key)
    params = student.init(init_key)
    return DistillState(params, optimizer(config).init(params), rng, jnp.zeros((), jnp.int32))


def fit_episodes(
    state: DistillState, episodes: Episodes, config: DistillConfig, student: StudentFunctions
) -> tuple[DistillState, jax.Array]:
    """`updates_per_epoch` Adam steps on shuffled batches of whole episodes (leading axis = episode)."""
    n = episodes.obs.shape[0]
    batch = min(config.batch_size, n)
    tx = optimizer(config)
    rng, perm_key = jax.random.split(state.rng)
    order = jax.random.permutation(perm_key, n)

    def update(carry, u):
        params, opt_state = carry
        idx = order[(u * batch + jnp.arange(batch)) % n]
        loss, grads = jax.value_and_grad(functools.partial(imitation_loss, student))(
            params, episodes.obs[idx], episodes.label[idx], episodes.valid[idx]
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(
        update, (state.params, state.opt_state), jnp.arange(config.updates_per_epoch)
    )
    return state.replace(params=params, opt_state=opt_state, rng=rng), losses


def episode_metrics(episodes: Episodes) -> dict:
    """Success (no crash), survived steps and mean position error over valid steps; the label-action
    MSE too when the episodes have labels. Steps after a crash never count, whatever they hold."""
    valid = episodes.valid.astype(jnp.float32)
    error = jnp.where(episodes.valid, jnp.linalg.norm(episodes.position - episodes.reference, axis=-1), 0.0)
    metrics = {
        "success": jnp.mean(1.0 - episodes.crashed.astype(jnp.float32)),
        "episode_length": jnp.mean(jnp.sum(valid, axis=-1)),
        "position_error": jnp.sum(error) / jnp.maximum(jnp.sum(valid), 1.0),
    }
    if episodes.label is not None:
        metrics["label_action_mse"] = jnp.sum(
            jnp.square(episodes.action - episodes.label) * valid[..., None]
        ) / jnp.maximum(jnp.sum(valid) * episodes.label.shape[-1], 1.0)
    return metrics


@functools.lru_cache(maxsize=8)
def make_epoch(envs: tuple[Env, ...], config: DistillConfig) -> Callable:
    """The jitted epoch: rebuild the dataset on every task env (teacher or student rollouts), fit it."""
    student = student_fns(config.recurrent)

    @jax.jit
    def epoch(state: DistillState, teachers, dynamics, position_offsets=None) -> tuple[DistillState, dict]:
        rng, collect_key = jax.random.split(state.rng)
        teacher_acts = state.epoch < config.warmup_epochs
        parts = []
        for i, env in enumerate(envs):
            episodes = collect(
                env,
                config.episode_length,
                config.episodes_per_quadrotor,
                student,
                state.params,
                teachers,
                dynamics,
                jax.random.fold_in(collect_key, i),
                teacher_acts,
                position_offsets,
            )
            parts.append(jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), episodes))
        flat = jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)
        state, losses = fit_episodes(state.replace(rng=rng), flat, config, student)
        metrics = {f"rollout/{k}": v for k, v in episode_metrics(flat).items()}
        metrics.update({"loss": jnp.mean(losses), "loss_last": losses[-1], "teacher_rollouts": teacher_acts})
        return state.replace(epoch=state.epoch + 1), metrics

    return epoch


def distill_multi(
    state: DistillState,
    envs: tuple[Env, ...],
    config: DistillConfig,
    teachers: sac_learner.TrainState,
    dynamics: dict,
    callback: Callable[[DistillState, dict], None] | None = None,
    position_offsets: jax.Array | None = None,
) -> DistillState:
    """Run the remaining epochs (resumes from `state.epoch`) collecting on every env of `envs`.

    teachers / dynamics: the training quadrotors' teacher learner states and parameters (leading
    axis = quadrotor). `callback(state, metrics)` runs on the host after each epoch.
    position_offsets: (quadrotor, 3) steady-state corrections of the student's position input.
    """
    epoch = make_epoch(tuple(envs), config)
    while int(state.epoch) < config.epochs:
        state, metrics = epoch(state, teachers, dynamics, position_offsets)
        if callback is not None:
            callback(state, {k: float(v) for k, v in jax.device_get(metrics).items()})
    return state


def distill(state, env, config, teachers, dynamics, callback=None) -> DistillState:
    """`distill_multi` on one task env."""
    return distill_multi(state, (env,), config, teachers, dynamics, callback)
