"""The PPO training loop on `runs.Run`: every seed in one program, `iterations_per_eval` iterations per call.

The host loop calls ONE jitted function, vmapped over seeds, that runs `PPOConfig.iterations_per_eval`
iterations of `learner.make_iteration` in a `lax.scan` and then evaluates each seed's deterministic
policy (`learner.make_evaluator`). So a call is the unit of logging, evaluation and checkpointing;
metrics come back once per call. Seed i of a run is `PPOConfig.seed + i`: a run with num_seeds=N
gives each seed exactly what a num_seeds=1 run with that seed gives (up to float reassociation
under vmap).

Env steps count the transitions of ONE seed's run (num_envs x unroll_length per iteration), in the
budget, the intervals, the logs and the checkpoint step numbers; `env_steps_per_s_all_seeds` in the
logs is the machine's total rate.

A checkpoint holds the whole vmapped `learner.TrainState` (parameters, Adam moments, normaliser,
the envs' states and every seed's rng), so a killed run resumes exactly: evaluations draw from
their own stream, `fold_in(eval key of the seed, env steps)`, never from the training state.
Checkpoints are taken at the end of a call (an evaluation) once `checkpoint_interval` env steps
have passed, and at the end of the run.

The final policy is saved to `policy/` for all seeds at once: every leaf of `policy_params` and
`obs_normalizer` has a leading seed axis, and policy.json lists the `seeds`; the export adapter
(`robojax.agents.ppo.export`, `experiments.export_policy --seed_index=i`) picks one.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging as absl_logging

from robojax import logging as rlog  # noqa: F401 - the run's progress bar (tests patch rlog.ProgressBar)
from robojax import runs
from robojax.agents.ppo import learner
from robojax.agents.ppo.config import PPOConfig, TrainConfig
from robojax.agents.ppo.networks import check_action_spec
from robojax.config_utils import to_dict
from robojax.data.demos import load_demos
from robojax.data.episodes import load_episodes
from robojax.envs import registry as env_registry
from robojax.envs.core import ArraySpec, Env
from robojax.evaluation import episode_length_of

EnvFactory = Callable[[str, int], Env]

FORMAT = "robojax.ppo/1"

# Settings that may change between a run and its resumption without changing what it learns.
# Not total_env_steps: the learning rate anneals to 0 over the whole run's iterations.
RESUMABLE_CHANGES = (
    "ppo.eval_interval",
    "ppo.eval_episodes",
    "target_eval_return",
    "checkpoint_interval",
    "checkpoints_to_keep",
    "workdir",
    "resume",
    "progress_bar",
)

# Per-seed figures in the logs (besides their means over seeds) when num_seeds > 1.
_PER_SEED_TRAIN = ("train/episode_return",)


@dataclasses.dataclass
class TrainResult:
    """What a finished run reports. Env steps are those of one seed's run."""

    final_return: float  # mean over seeds of the last evaluation's mean return
    final_returns: list[float]  # per seed (seed = PPOConfig.seed + index)
    final_success: float | None  # mean over seeds of the task's success flag at the last evaluation
    final_successes: list[float]
    eval_history: list[dict]  # one record per evaluation: env_steps, wall_s, eval/return, eval/return_seed{i}, ...
    steps: int  # env steps of one seed
    wall_s: float
    first_iteration_s: float  # the first call (iterations_per_eval iterations and an evaluation), compile included
    workdir: str | None
    seeds: list[int]
    state: learner.TrainState = dataclasses.field(repr=False)  # leading seed axis on every leaf


# ---- envs ------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def task_episode_length(name: str) -> int:
    """The task's own episode length in its control steps (before any action repeat)."""
    return episode_length_of(env_registry.make(name))


@functools.lru_cache(maxsize=16)
def make_env(name: str, num_envs: int, action_repeat: int) -> Env:
    """A batched, autoresetting task repeating each action `action_repeat` control steps.

    Episodes last ceil(task episode length / action_repeat) policy steps, so they cover the task's
    simulated time. Cached, so train() calls with the same env share compiled functions.
    """
    length = math.ceil(task_episode_length(name) / action_repeat)
    return env_registry.make(name, num_envs=num_envs, action_repeat=action_repeat, episode_length=length)


def default_env_factory(action_repeat: int) -> EnvFactory:
    """`(name, num_envs) -> Env` building registry tasks with `action_repeat` (see `make_env`)."""
    return lambda name, num_envs: make_env(name, num_envs, action_repeat)


# ---- compiled pieces, shared by runs with the same learning config ---------------------------------


def learning_config(config: TrainConfig | PPOConfig) -> PPOConfig:
    """The PPOConfig with the fields that do not enter a compiled program reset (seeds, demo path).

    Jitted functions are cached on it, so runs that differ in seed, seed count, run directory or
    checkpointing reuse the compiled calls.
    """
    ppo = config.ppo if isinstance(config, TrainConfig) else config
    return dataclasses.replace(ppo, seed=0, num_seeds=1, bc_demo_path=None)


@functools.lru_cache(maxsize=8)
def make_init(env: Env, config: PPOConfig) -> Callable[[jax.Array], learner.TrainState]:
    """Jitted `init(seed keys [S, 2]) -> TrainState` with a leading seed axis (as `make_train` splits its key)."""
    return jax.jit(jax.vmap(lambda key: learner.init(jax.random.split(key)[0], env, config)))


@functools.lru_cache(maxsize=8)
def make_bc(env: Env, config: PPOConfig) -> Callable:
    """Jitted, vmapped `learner.bc_init`: `(states, obs, actions) -> (states, {"bc/nll": [S, bc_steps]})`."""
    bc = functools.partial(learner.bc_init, config=config, action_spec=env.action_spec)
    return jax.jit(jax.vmap(lambda s, o, a: bc(s, o, a), in_axes=(0, None, None)))


@functools.lru_cache(maxsize=8)
def make_chunk(env: Env, eval_env: Env, config: PPOConfig) -> Callable:
    """Jitted `chunk(states, start_iteration, eval_roots) -> (states, metrics, evals)`, vmapped over seeds.

    Runs iterations start .. start + iterations_per_eval - 1 of every seed in a `lax.scan`, then
    evaluates each seed once with key `fold_in(eval_root, env_steps)`. Iterations past the run's
    last leave the state as it is (metrics NaN), so the last call needs no program of its own; those
    before `value_warmup_iterations` update the value only. `start_iteration` is shared by all seeds
    (not vmapped), so both choices stay real `lax.cond`s rather than selects that run both branches.
    metrics: [S, iterations_per_eval] per key; evals: [S] per key.
    """
    policy_iteration = learner.make_iteration(env, config)
    warmup_iteration = learner.make_iteration(env, config, value_only=True) if config.value_warmup_iterations else None
    evaluate = learner.make_evaluator(eval_env, config)

    def skipped(state):
        shapes = jax.eval_shape(policy_iteration, state)[1]
        fill = lambda x: jnp.full(x.shape, jnp.nan if jnp.issubdtype(x.dtype, jnp.floating) else 0, x.dtype)
        return state, jax.tree.map(fill, shapes)

    def iterate(state, index):
        if warmup_iteration is None:
            return policy_iteration(state)
        return jax.lax.cond(index < config.value_warmup_iterations, warmup_iteration, policy_iteration, state)

    def one_seed(state, start, eval_root):
        def body(state, index):
            return jax.lax.cond(index < config.num_iterations, lambda s: iterate(s, index), skipped, state)

        state, metrics = jax.lax.scan(body, state, start + jnp.arange(config.iterations_per_eval, dtype=jnp.int32))
        evals = evaluate(state, jax.random.fold_in(eval_root, state.env_steps))
        return state, metrics, evals

    return jax.jit(jax.vmap(one_seed, in_axes=(0, None, 0)))


@functools.lru_cache(maxsize=8)
def make_eval(eval_env: Env, config: PPOConfig) -> Callable:
    """Jitted `evaluate(states, eval_roots) -> evals [S]`, as at the end of a chunk (for a run resumed at its end)."""
    evaluate = learner.make_evaluator(eval_env, config)
    return jax.jit(jax.vmap(lambda s, root: evaluate(s, jax.random.fold_in(root, s.env_steps))))


# ---- data ------------------------------------------------------------------------------------------


def load_bc_demos(path: str, observation_spec: ArraySpec, action_spec: ArraySpec) -> tuple[np.ndarray, np.ndarray]:
    """(observations [N, ...], actions [N, A]) for behaviour cloning, checked against the env's spaces.

    path: a demo `.npz` of transitions (`robojax.data.save_demos`, `experiments.collect_demos`) or an
    episode dataset directory (`robojax.data.episodes`, format robojax.episodes/1).
    """
    if os.path.isdir(path):
        dataset = load_episodes(path, observation_spec=observation_spec, action_spec=action_spec)
        if not dataset.episodes:
            raise ValueError(f"episode dataset {path!r} holds no episodes to behaviour-clone")
        obs = np.concatenate([e.observations for e in dataset.episodes]).astype(np.float32)
        actions = np.concatenate([e.actions for e in dataset.episodes]).astype(np.float32)
        return obs, actions
    demos = load_demos(path, tuple(observation_spec.shape), tuple(action_spec.shape))
    return demos.obs, demos.action


# ---- the loop --------------------------------------------------------------------------------------


def seeds_of(config: TrainConfig) -> list[int]:
    """The seeds of the run's vmapped copies: seed, seed + 1, ..., seed + num_seeds - 1."""
    return [config.ppo.seed + i for i in range(config.ppo.num_seeds)]


def run_metadata(env: Env, config: TrainConfig) -> dict:
    """What config.json, every checkpoint and the saved policy record about the run (checked on resume)."""
    try:
        dt = env.dt  # the policy's control period: the task's dt x action_repeat
    except (AttributeError, NotImplementedError):  # envs without a clock (probe envs)
        dt = None
    return runs.env_run_metadata(
        FORMAT,
        to_dict(config),
        config.env,
        env,
        control_dt=None if dt is None else float(dt),
        episode_length=episode_length_of(env),
    )


def open_run(config: TrainConfig) -> runs.Run:
    return runs.Run(
        config.workdir,
        resume=config.resume,
        resumable=RESUMABLE_CHANGES,
        checkpoints_to_keep=config.checkpoints_to_keep,
        stdout_keys=("eval/return", "eval/success"),
        eval_key="eval/return",
        progress_bar=config.progress_bar,
        progress_unit="env step",
    )


def train(config: TrainConfig, env_factory: EnvFactory | None = None) -> TrainResult:
    """Run (or resume) PPO with `config.ppo.num_seeds` seeds in one program; the final evaluation and curve.

    env_factory: `(name, num_envs) -> Env`, batched and autoresetting with `EpisodeStatistics`;
      default `make_env` with `config.action_repeat` (a custom factory applies any action repeat itself).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"ppo.train takes a TrainConfig, got {type(config).__name__}")
    with open_run(config) as run:
        return _train(config, env_factory or default_env_factory(config.action_repeat), run)


def _mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _train(config: TrainConfig, make: EnvFactory, run: runs.Run) -> TrainResult:
    ppo = config.ppo
    env = make(config.env, ppo.num_envs)
    eval_env = make(config.env, ppo.eval_episodes)
    for what, built, expected in (("num_envs", env, ppo.num_envs), ("eval_episodes", eval_env, ppo.eval_episodes)):
        if built.batch_size != expected:
            raise ValueError(f"env factory returned batch size {built.batch_size}, expected {what}={expected}")
    check_action_spec(env.action_spec)
    demos = None
    if ppo.bc_demo_path and not run.resuming:
        demos = load_bc_demos(ppo.bc_demo_path, env.observation_spec, env.action_spec)

    seeds = seeds_of(config)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    eval_roots = jax.vmap(lambda k: jax.random.split(k)[1])(keys)
    learning = learning_config(config)
    state = make_init(env, learning)(keys)
    run.describe(run_metadata(env, config))
    if run.resuming:
        state, _ = run.restore(state)
        absl_logging.info("resumed at env step %d from %s", int(state.env_steps[0]), run.checkpointer.directory)
    env_steps = int(state.env_steps[0])
    run.start(step=env_steps, total=ppo.num_iterations * ppo.batch_size)
    if demos is not None:
        state, bc_metrics = make_bc(env, learning)(state, jnp.asarray(demos[0]), jnp.asarray(demos[1]))
        nll = np.asarray(jax.device_get(bc_metrics["bc/nll"]))  # [S, bc_steps]
        run.log(0, {"bc/nll_first": float(nll[:, 0].mean()), "bc/nll_last": float(nll[:, -1].mean()), "env_steps": 0})
    chunk = make_chunk(env, eval_env, learning)

    def eval_record(evals: dict, steps: int, extra: dict) -> dict:
        record = {
            "eval/return": float(np.mean(evals["eval/return"])),
            "eval/success": float(np.mean(evals["eval/success"])),
        }
        if len(seeds) > 1:
            for i in range(len(seeds)):
                record[f"eval/return_seed{i}"] = float(evals["eval/return"][i])
                record[f"eval/success_seed{i}"] = float(evals["eval/success"][i])
        record.update(extra, env_steps=steps, wall_s=run.elapsed())
        return run.log_eval(steps, record)

    last_evals, last_eval = None, None
    reached = np.zeros(len(seeds), bool)  # seeds whose eval return has reached target_eval_return
    iteration = int(state.iteration[0])
    while iteration < ppo.num_iterations:
        t0 = time.perf_counter()
        state, metrics, evals = chunk(state, jnp.int32(iteration), eval_roots)
        metrics, evals = jax.device_get((metrics, evals))  # the one device-to-host transfer per call
        dt = time.perf_counter() - t0
        before, iteration = env_steps, int(state.iteration[0])
        env_steps = int(state.env_steps[0])
        run.advance(env_steps, seconds=dt)
        done_iterations = iteration - before // ppo.batch_size
        for j in range(done_iterations):
            steps = before + (j + 1) * ppo.batch_size
            record = {}
            for name, values in metrics.items():
                value = _mean(np.asarray(values[:, j], np.float64))
                if value is not None:
                    record[name] = value
            if len(seeds) > 1:
                for name in _PER_SEED_TRAIN:
                    for i in range(len(seeds)):
                        value = float(metrics[name][i, j]) if name in metrics else math.nan
                        if math.isfinite(value):
                            record[f"{name}_seed{i}"] = value
            record["env_steps"] = steps
            run.log(steps, record)
        rate = (env_steps - before) / dt
        last_evals = evals
        last_eval = eval_record(
            evals, env_steps, {"env_steps_per_s": rate, "env_steps_per_s_all_seeds": rate * len(seeds)}
        )
        done = iteration >= ppo.num_iterations
        if config.target_eval_return is not None:
            reached |= np.asarray(evals["eval/return"]) >= config.target_eval_return
        target_reached = bool(reached.all())
        if run.checkpoint_due(before, env_steps, config.checkpoint_interval, final=done or target_reached):
            run.save(env_steps, state)
        if target_reached:
            break
    if last_evals is None:  # resumed at the end: evaluate the restored state
        last_evals = jax.device_get(make_eval(eval_env, learning)(state, eval_roots))
        last_eval = eval_record(last_evals, env_steps, {})

    metadata = {**run.metadata, "seeds": seeds, "num_seeds": len(seeds)}
    run.finish(
        policy={"policy_params": state.params["policy"], "obs_normalizer": state.obs_normalizer},
        policy_metadata=metadata,
    )
    record = run.record()
    successes = [float(x) for x in np.asarray(last_evals["eval/success"])]
    return TrainResult(
        final_return=last_eval["eval/return"],
        final_returns=[float(x) for x in np.asarray(last_evals["eval/return"])],
        final_success=float(np.mean(successes)),
        final_successes=successes,
        **record.result_fields(steps=env_steps),
        seeds=seeds,
        state=state,
    )
