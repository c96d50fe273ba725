"""RAPTOR teachers: one SAC learner per sampled quadrotor, all trained in one jitted, vmapped loop.

The SAC on-device iteration (`robojax.agents.sac.train.make_iteration`) is written for one learner
on a batch of envs. Here a leading *teacher* axis goes on top with `jax.vmap`: every teacher has
its own LoopState (learner, replay buffer, env batch, RNG), and each teacher's env batch carries
that teacher's quadrotor parameters in `env_state.dynamics`. The autoreset wrapper keeps those
parameters across resets (`keep_dynamics=True`), so a teacher only ever flies its own quadrotor,
as in the paper (domain randomisation disabled per teacher, research note 3.2).

Teachers observe a prefix of the quadrotor's 29-value privileged observation through
`PrivilegedObservation`: the 22-value student observation, the true motor speeds and the episode's
external-force draw (research note 3.4: the paper's teachers observe the full state, f_ext
included). A teacher's input size is read back from its learner state (`teacher_observation`),
so labelling in distillation and evaluation always feeds each teacher what it was trained on.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robojax.agents.raptor.config import TeacherConfig
from robojax.agents.sac import learner as sac_learner
from robojax.agents.sac.config import TrainConfig
from robojax.agents.sac.train import LoopState, init_loop_state, learning_config, make_iteration
from robojax.envs import registry as env_registry
from robojax.envs.core import ArraySpec, Env, Wrapper
from robojax.envs.wrappers import AutoResetWrapper, VmapWrapper
from robojax.tasks.quadrotor import TEACHER_OBS_KEY

TASK_ENVS = {"hover": "quadrotor_hover", "track": "quadrotor_track"}


class PrivilegedObservation(Wrapper):
    """The teacher's observation: the first `size` values of `info["teacher_obs"]` (all if None)."""

    def __init__(self, env: Env, size: int | None = None):
        super().__init__(env)
        self.size = size
        self._spec: ArraySpec | None = None

    @property
    def observation_spec(self) -> ArraySpec:
        if self._spec is None:
            probe = jax.eval_shape(self.env.reset, jax.random.PRNGKey(0))
            if TEACHER_OBS_KEY not in probe.info:
                raise ValueError(
                    f"{self.env!r} has no info[{TEACHER_OBS_KEY!r}]; build the quadrotor task with privileged=True"
                )
            shape = probe.info[TEACHER_OBS_KEY].shape
            if self.size is not None:
                if not 0 < self.size <= shape[-1]:
                    raise ValueError(f"teacher observation size {self.size} is outside 1..{shape[-1]}")
                shape = shape[:-1] + (self.size,)
            self._spec = ArraySpec(shape, np.float32, name="teacher_obs")
        return self._spec

    def _select(self, state):
        return state.replace(obs=state.info[TEACHER_OBS_KEY][..., : self.size])

    def reset(self, key):
        return self._select(self.env.reset(key))

    def reset_with_parameters(self, key, params):
        return self._select(self.env.reset_with_parameters(key, params))

    def step(self, state, action):
        return self._select(self.env.step(state, action))


def env_name(task: str) -> str:
    """The registered env of a RAPTOR task ('hover' or 'track')."""
    if task not in TASK_ENVS:
        raise ValueError(f"unknown RAPTOR task {task!r}; choose from {sorted(TASK_ENVS)}")
    return TASK_ENVS[task]


@functools.lru_cache(maxsize=16)
def make_task_env(task: str, episode_length: int) -> Env:
    """One unbatched quadrotor env (time limit and episode statistics, no autoreset); the privileged
    observation is always in info["teacher_obs"]."""
    return env_registry.make(env_name(task), episode_length=episode_length)


@functools.lru_cache(maxsize=16)
def make_teacher_env(task: str, num_envs: int, episode_length: int, observation_size: int | None = None) -> Env:
    """A teacher's env batch: `num_envs` copies of one quadrotor, autoreset keeping its parameters.

    observation_size: how many leading values of the privileged observation the teacher sees
    (`TeacherConfig.observation_size`; None: all of them)."""
    env = PrivilegedObservation(make_task_env(task, episode_length), observation_size)
    return AutoResetWrapper(VmapWrapper(env, num_envs), keep_dynamics=True)


def sac_train_config(config: TeacherConfig, task: str) -> TrainConfig:
    """The SAC loop settings of one teacher; its replay buffer holds every transition (paper 3.4)."""
    return learning_config(
        TrainConfig(
            env=env_name(task),
            num_envs=config.num_envs,
            total_env_steps=config.total_env_steps,
            learning_starts=config.learning_starts,
            steps_per_iteration=config.steps_per_iteration,
            replay_capacity=max(config.total_env_steps, config.num_envs),
            progress_bar=False,
            sac=config.sac,
        )
    )


def num_teachers_of(tree: Any) -> int:
    return int(jax.tree.leaves(tree)[0].shape[0])


def _with_dynamics(state: LoopState, dynamics: dict) -> LoopState:
    """Put one quadrotor's parameters into every env of a teacher's batch."""
    current = state.env_state.dynamics
    if set(current) != set(dynamics):
        raise ValueError(
            f"quadrotor parameters have keys {sorted(dynamics)}, but the env carries {sorted(current)};"
            " sample them with the task's sample_parameters (evaluate.sample_quadrotors)"
        )
    batched = {
        name: jnp.broadcast_to(jnp.asarray(value, current[name].dtype), current[name].shape)
        for name, value in dynamics.items()
    }
    return state.replace(env_state=state.env_state.replace(dynamics=batched))


@functools.lru_cache(maxsize=8)
def _init_fn(env: Env, train_config: TrainConfig) -> Callable:
    def init_one(key, dynamics):
        return _with_dynamics(init_loop_state(key, env, train_config), dynamics)

    return jax.jit(jax.vmap(init_one))


def init_teachers(key: jax.Array, env: Env, train_config: TrainConfig, dynamics: dict) -> LoopState:
    """One SAC LoopState per quadrotor (leading axis = teacher), each env batch on its own quadrotor.

    dynamics: quadrotor parameters with a leading teacher axis (`jax.vmap(sample_parameters)(keys)`).
    """
    keys = jax.random.split(key, num_teachers_of(dynamics))
    return _init_fn(env, train_config)(keys, dynamics)


@functools.lru_cache(maxsize=8)
def make_teachers_iteration(env: Env, train_config: TrainConfig) -> Callable[[LoopState], tuple[LoopState, dict]]:
    """SAC's collect-insert-update iteration vmapped over teachers, in one jit (state donated).

    Metrics come back per teacher (leading axis = teacher).
    """
    iteration = make_iteration(env, train_config)
    return jax.jit(jax.vmap(iteration), donate_argnums=0)


@dataclasses.dataclass
class TeacherProgress:
    iteration: int
    env_steps_per_teacher: int
    metrics: dict  # per-teacher numpy arrays
    seconds: float


def train_teachers(
    state: LoopState,
    env: Env,
    train_config: TrainConfig,
    *,
    until_env_steps: int,
    callback: Callable[[LoopState, TeacherProgress], None] | None = None,
) -> LoopState:
    """Run vmapped SAC iterations until every teacher has `until_env_steps` transitions.

    `callback(state, progress)` runs on the host after every iteration (logging, checkpoints).
    """
    import time

    iteration = make_teachers_iteration(env, train_config)
    steps = int(np.max(jax.device_get(state.env_steps)))
    while steps < until_env_steps:
        t0 = time.perf_counter()
        state, metrics = iteration(state)
        metrics = jax.device_get(metrics)
        steps = int(np.max(jax.device_get(state.env_steps)))
        if callback is not None:
            callback(state, TeacherProgress(int(np.max(state.iteration)), steps, metrics, time.perf_counter() - t0))
    return state


def teacher_observation(learner_state: sac_learner.TrainState, privileged_obs: jax.Array) -> jax.Array:
    """The part of the full privileged observation (29 values) this teacher was trained on.

    Its input size is the shape of its observation statistics (present whether or not it normalises)."""
    size = learner_state.obs_normalizer.mean.shape[-1]
    if size > privileged_obs.shape[-1]:
        raise ValueError(f"the teacher expects {size} observation values, the env gives {privileged_obs.shape[-1]}")
    return privileged_obs[..., :size]


def teacher_action(learner_state: sac_learner.TrainState, privileged_obs: jax.Array) -> jax.Array:
    """One teacher's deterministic action tanh(mean) (the distillation label, research note 3.6) from
    the full privileged observation `info["teacher_obs"]`."""
    return sac_learner.act_deterministic(learner_state, teacher_observation(learner_state, privileged_obs))
