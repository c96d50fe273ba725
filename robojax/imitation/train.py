"""The training loop of a demonstration-trained chunk policy: windows on device, scanned updates,
closed-loop MJX evaluation, exact resume, a saved policy.

The dataset (an episode directory, `robojax.data.episodes`) is cut into (To observations, Tp
actions) windows once and put on the device. Each jitted call runs `updates_per_call` gradient
steps in a `lax.scan`, each on a minibatch drawn uniformly from the windows. Between calls the host
evaluates (every `eval_interval` steps: one jitted `lax.scan` over a whole episode of a batch of
`eval_episodes` MJX envs with the receding-horizon policy inside, replanning every Ta steps),
logs, and checkpoints. Every random stream lives in the saved `LoopState`, and evaluation draws
from its own stream keyed by the step count, so a resumed run continues exactly.

A learner plugs in by describing itself as a `ChunkLearner`: its config classes, `init`,
`update`, `fit_normalizers`, `make_policy` and its saved-policy format. Its TrainState must carry
`params`, `ema_params`, `step`, `normalizers` (a `ChunkNormalizers`), `config`, `obs_dim` and
`action_dim`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging as absl_logging
from flax import struct

from robojax import checkpoint as ckpt
from robojax import evaluation, runs
from robojax.config_utils import from_dict, to_dict
from robojax.data.episodes import EpisodeDataset, load_episodes
from robojax.data.normalizer import ChunkNormalizers
from robojax.data.windows import make_windows
from robojax.envs import registry as env_registry
from robojax.envs.core import ArraySpec, Env
from robojax.evaluation import episode_length_of, make_episode_evaluator
from robojax.imitation.config import ChunkTrainConfig
from robojax.policy import Policy, spec_action_bounds

# Top-level loop settings that may change between a run and its resumption without changing what it learns.
RESUMABLE_CHANGES = (
    "workdir",
    "resume",
    "progress_bar",
    "eval_interval",
    "eval_episodes",
    "eval_env",
    "eval_episode_length",
    "checkpoint_interval",
    "checkpoints_to_keep",
    "inference",
    "dataset",
)


@dataclasses.dataclass(frozen=True, eq=False)
class ChunkLearner:
    """One demonstration-trained chunk-policy learner, as the shared loop sees it (hashable by identity).

    init(key, obs_dim, action_dim, config, normalizers) -> TrainState
    update(state, batch {obs [B, To, D], actions [B, Tp, A]}) -> (state, metrics)
    fit_normalizers(observations [N, D], actions [N, A], config, discrete_dims) -> ChunkNormalizers
    make_policy(params, normalizers, config, inference, obs_dim, action_dim, *, action_low,
                action_high, action_dtype, name) -> Policy (single env; `batched(n)`)
    check_windows(normalized actions [N, Tp, A]) -> None: raise on data the learner cannot use
    describe(config) -> dict: what `evaluate_saved_policy` reports about the policy
    plan_trace(policy carry) -> pytree [n, ...] and summarize_plans(traced) -> dict: what an
      evaluation records of the policy's plans each step and reports of them (EBT: energy, compute)
    """

    name: str  # "Diffusion Policy"
    experiment: str  # "experiments.train_diffusion_policy"
    policy_format: str
    run_format: str
    train_config: type
    policy_config: type
    inference_config: type
    init: Callable
    update: Callable
    fit_normalizers: Callable
    make_policy: Callable
    check_windows: Callable | None = None
    describe: Callable = lambda config: {}
    plan_trace: Callable | None = None
    summarize_plans: Callable | None = None


@struct.dataclass
class LoopState:
    """The whole state of a run between jitted calls (what a checkpoint holds)."""

    learner: Any  # the learner's TrainState
    rng: jax.Array  # minibatch sampling


@dataclasses.dataclass
class TrainResult:
    final_return: float | None  # None: no evaluation
    final_success: float | None
    eval_history: list[dict]
    steps: int  # gradient steps
    wall_s: float
    first_iteration_s: float  # the first jitted call, including compiling it
    workdir: str | None
    state: LoopState = dataclasses.field(repr=False)


# --------------------------------------------------------------------------------------------- data


def load_dataset(path: str, max_episodes: int = 0, learner_name: str = "a chunk policy") -> EpisodeDataset:
    """The episode dataset at `path`, optionally cut to its first `max_episodes` episodes."""
    dataset = load_episodes(path)
    if max_episodes:
        if max_episodes > len(dataset.episodes):
            raise ValueError(
                f"max_episodes={max_episodes} but {path} holds {len(dataset.episodes)} episodes;"
                " collect more or lower max_episodes"
            )
        dataset = dataclasses.replace(dataset, episodes=dataset.episodes[:max_episodes])
    if len(dataset.action_spec.shape) != 1 or len(dataset.observation_spec.shape) != 1:
        raise ValueError(
            f"{path}: {learner_name} here needs flat state observations and actions, got"
            f" {dataset.observation_spec.shape} and {dataset.action_spec.shape}"
        )
    return dataset


def prepare_data(dataset: EpisodeDataset, config: Any, learner: ChunkLearner) -> tuple[dict, ChunkNormalizers]:
    """Windows as device arrays {obs [N, To, D], actions [N, Tp, A]} and normalisers fitted on all steps."""
    windows = make_windows(dataset, config.obs_horizon, config.pred_horizon)
    observations = np.concatenate([np.asarray(e.observations, np.float32) for e in dataset.episodes])
    actions = np.concatenate([np.asarray(e.actions, np.float32) for e in dataset.episodes])
    normalizers = learner.fit_normalizers(observations, actions, config, dataset.discrete_action_dims)
    if learner.check_windows is not None:
        learner.check_windows(np.asarray(normalizers.action.normalize(jnp.asarray(windows["actions"]))))
    data = {"obs": jnp.asarray(windows["obs"]), "actions": jnp.asarray(windows["actions"])}
    return data, normalizers


def init_loop_state(
    key: jax.Array, dataset: EpisodeDataset, config: Any, normalizers: ChunkNormalizers, learner: ChunkLearner
) -> LoopState:
    learner_key, loop_key = jax.random.split(key)
    state = learner.init(
        learner_key, dataset.observation_spec.shape[0], dataset.action_spec.shape[0], config, normalizers
    )
    return LoopState(learner=state, rng=loop_key)


# --------------------------------------------------------------------------------------------- jitted work


@functools.lru_cache(maxsize=8)
def make_train_call(update: Callable, batch_size: int, num_updates: int) -> Callable:
    """Jitted `num_updates` gradient steps in one `lax.scan`: (LoopState, data) -> (LoopState, mean metrics).

    `update` is the learner's (state, batch) -> (state, metrics); minibatches of `batch_size`
    windows are drawn uniformly with replacement.
    """

    def one_update(state: LoopState, data):
        rng, key = jax.random.split(state.rng)
        n = data["obs"].shape[0]
        idx = jax.random.randint(key, (batch_size,), 0, n)
        batch = {"obs": data["obs"][idx], "actions": data["actions"][idx]}
        learner_state, metrics = update(state.learner, batch)
        return LoopState(learner=learner_state, rng=rng), metrics

    @functools.partial(jax.jit, donate_argnums=0)
    def call(state: LoopState, data: dict):
        state, metrics = jax.lax.scan(lambda s, _: one_update(s, data), state, None, length=num_updates)
        return state, jax.tree.map(jnp.mean, metrics)

    return call


def make_evaluator(
    env: Env,
    learner: ChunkLearner,
    config: Any,
    inference: Any,
    observation_spec: ArraySpec,
    action_spec: ArraySpec,
) -> Callable:
    """Jitted closed-loop evaluation: one episode in every env of the batched `env` (robojax.evaluation).

    Returns `evaluate(params, normalizers, key) -> {eval/success, eval/success_any_step, eval/return,
    eval/successes}`: success is the task's flag at each episode's end, counted once per env. The
    policy replans every `action_steps` control steps, all envs on the same clock.
    """
    bounds = [tuple(np.broadcast_to(b, action_spec.shape).tolist()) for b in (action_spec.low, action_spec.high)]
    return _evaluator(
        env,
        learner,
        config,
        inference,
        observation_spec.shape[0],
        action_spec.shape[0],
        *bounds,
        np.dtype(action_spec.dtype).name,
    )


@functools.lru_cache(maxsize=16)
def _evaluator(env, learner, config, inference, obs_dim, action_dim, action_low, action_high, action_dtype) -> Callable:
    # Cached on hashable figures (an ArraySpec holds arrays): a resumed run or a second evaluation reuses it.
    def build(params_and_normalizers):
        params, normalizers = params_and_normalizers
        return learner.make_policy(
            params,
            normalizers,
            config,
            inference,
            obs_dim,
            action_dim,
            action_low=action_low,
            action_high=action_high,
            action_dtype=action_dtype,
        )

    episodes = make_episode_evaluator(env, build, episode_length=episode_length_of(env))

    @jax.jit
    def evaluate(params, normalizers: ChunkNormalizers, key: jax.Array) -> dict:
        out = episodes((params, normalizers), key)
        return {
            "eval/success": jnp.mean(out["success"].astype(jnp.float32)),
            "eval/success_any_step": jnp.mean(out["success_any_step"].astype(jnp.float32)),
            "eval/return": jnp.mean(out["return"]),
            "eval/successes": out["success"],
        }

    return evaluate


def make_eval_env(name: str, num_envs: int, episode_length: int = 0) -> Env:
    return env_registry.make(name, num_envs=num_envs, episode_length=episode_length or None)


# --------------------------------------------------------------------------------------------- run metadata


def run_metadata(learner: ChunkLearner, config: ChunkTrainConfig, dataset: EpisodeDataset) -> dict:
    """What config.json, every checkpoint and the saved policy record about the run."""
    return runs.run_metadata(
        learner.run_format,
        to_dict(config),
        dataset=os.path.abspath(config.dataset),
        dataset_episodes=len(dataset.episodes),
        dataset_steps=dataset.num_steps,
        env=dataset.env,
        control_dt=dataset.control_dt,
        observation_spec=dataset.observation_spec.to_dict(),
        action_spec=dataset.action_spec.to_dict(),
        discrete_action_dims=list(dataset.discrete_action_dims),
    )


def resume_fingerprint(learner: ChunkLearner, metadata: dict) -> dict:
    """The part of the run metadata that must match for a resume to continue the same run."""
    # Through from_dict: checkpoints saved under the old field names compare by the new ones.
    saved = to_dict(from_dict(learner.train_config, metadata["config"]))
    return {
        "dataset_episodes": metadata["dataset_episodes"],
        "dataset_steps": metadata["dataset_steps"],
        "observation_spec": {k: metadata["observation_spec"][k] for k in ("shape", "dtype")},
        "action_spec": {k: metadata["action_spec"][k] for k in ("shape", "dtype")},
        "discrete_action_dims": metadata["discrete_action_dims"],
        "config": runs.without_fields(saved, RESUMABLE_CHANGES),
    }


# --------------------------------------------------------------------------------------------- saved policies


def save_policy(learner: ChunkLearner, directory: str, state: Any, metadata: dict) -> str:
    """The EMA parameters and normalisers with a JSON sidecar (written aside, then renamed)."""
    tree = {"params": state.ema_params, "normalizers": state.normalizers.to_arrays()}
    meta = {
        **metadata,
        "format": learner.policy_format,
        "policy_config": to_dict(state.config),
        "obs_dim": state.obs_dim,
        "action_dim": state.action_dim,
        "train_steps": int(state.step),
    }
    return ckpt.save_policy(directory, jax.device_get(tree), meta)


@dataclasses.dataclass
class LoadedPolicy:
    learner: ChunkLearner
    params: Any
    normalizers: ChunkNormalizers
    config: Any
    obs_dim: int
    action_dim: int
    action_spec: ArraySpec
    observation_spec: ArraySpec
    metadata: dict
    path: str = ""  # the saved policy directory

    def policy(self, inference: Any, *, name: str = "") -> Policy:
        """The single-env receding-horizon policy (`batch_policy(policy, n)` for n envs on one clock)."""
        return self.learner.make_policy(
            self.params,
            self.normalizers,
            self.config,
            inference,
            self.obs_dim,
            self.action_dim,
            **spec_action_bounds(self.action_spec),
            name=name,
        )

    def saved_inference(self) -> Any:
        """The run's own inference settings, if its config was recorded (else None)."""
        saved = (self.metadata.get("config") or {}).get("inference")
        if not isinstance(saved, dict):
            return None
        return from_dict(self.learner.inference_config, saved)


def policy_directory(path: str) -> str:
    """`path` itself when it holds policy.json, else its `policy/` when that does."""
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.isfile(os.path.join(path, "policy.json")) and os.path.isfile(
        os.path.join(path, "policy", "policy.json")
    ):
        path = os.path.join(path, "policy")
    return path


def load_policy(learner: ChunkLearner, path: str) -> LoadedPolicy:
    """A saved policy from its directory, or from a run directory holding `policy/`."""
    path = policy_directory(path)
    tree, meta = ckpt.load_policy(path)
    if meta.get("format") != learner.policy_format:
        raise ValueError(
            f"{path} holds a {meta.get('format')!r} policy, not a {learner.name} ({learner.policy_format});"
            f" pass the policy/ directory (or run directory) of {learner.experiment}"
        )
    config = from_dict(learner.policy_config, meta["policy_config"])
    params = jax.tree.map(jnp.asarray, tree["params"])
    normalizers = ChunkNormalizers.from_arrays(tree["normalizers"], meta["discrete_action_dims"])
    return LoadedPolicy(
        learner,
        params,
        normalizers,
        config,
        int(meta["obs_dim"]),
        int(meta["action_dim"]),
        ArraySpec.from_dict(meta["action_spec"]),
        ArraySpec.from_dict(meta["observation_spec"]),
        meta,
        path,
    )


# --------------------------------------------------------------------------------------------- the loop


def train(
    learner: ChunkLearner, config: ChunkTrainConfig, env_factory: Callable[[str, int, int], Env] | None = None
) -> TrainResult:
    """Run (or resume) training on the dataset in `config.dataset`.

    env_factory: `(name, num_envs, episode_length) -> batched Env` for evaluation (default: envs.make).
    """
    if not isinstance(config, learner.train_config):
        raise TypeError(f"{learner.name} trains from a {learner.train_config.__name__}, got {type(config).__name__}")
    start = time.perf_counter()
    # Bad datasets fail before any directory is made.
    dataset = load_dataset(config.dataset, config.max_episodes, learner.name)
    # The headline figure is the success rate: it is what the progress bar and eval_history follow.
    with runs.Run(
        config.workdir,
        resume=config.resume,
        resume_flag="--resume",
        started=start,
        resumable=RESUMABLE_CHANGES,
        fingerprint=functools.partial(resume_fingerprint, learner),
        checkpoints_to_keep=config.checkpoints_to_keep,
        stdout_keys=("eval/success", "eval/success_any_step", "eval/return"),
        eval_key="eval/success",
        progress_bar=config.progress_bar,
    ) as run:
        return _train(learner, config, dataset, env_factory or make_eval_env, run)


def _train(learner: ChunkLearner, config, dataset: EpisodeDataset, make_env, run: runs.Run) -> TrainResult:
    policy_config = config.policy
    data, normalizers = prepare_data(dataset, policy_config, learner)
    root = jax.random.PRNGKey(config.seed)
    train_key, eval_root = jax.random.split(root)
    state = init_loop_state(train_key, dataset, policy_config, normalizers, learner)
    metadata = run_metadata(learner, config, dataset)
    run.describe(metadata)
    if run.resuming:
        state, _ = run.restore(state)
        absl_logging.info("resumed at step %d from %s", int(state.learner.step), run.checkpointer.directory)
    steps = int(state.learner.step)
    run.start(step=steps, total=policy_config.total_grad_steps)

    eval_name = dataset.env if config.eval_env == "" else config.eval_env
    evaluate = None
    if eval_name and eval_name != "none":
        eval_env = make_env(eval_name, config.eval_episodes, config.eval_episode_length)
        evaluate = make_evaluator(
            eval_env, learner, policy_config, config.inference, dataset.observation_spec, dataset.action_spec
        )

    def run_eval(state: LoopState, step: int) -> dict:
        # Its own random stream, keyed by the step count: evaluating never perturbs training.
        learner_state = state.learner
        key = jax.random.fold_in(eval_root, step)
        out = jax.device_get(evaluate(learner_state.ema_params, learner_state.normalizers, key))
        record = {k: float(v) for k, v in out.items() if k != "eval/successes"}
        record.update(steps=step, wall_s=run.elapsed())
        return run.log_eval(step, record)

    last_eval = None
    while steps < policy_config.total_grad_steps:
        n = min(config.updates_per_call, policy_config.total_grad_steps - steps)
        t0 = time.perf_counter()
        state, metrics = make_train_call(learner.update, policy_config.batch_size, n)(state, data)
        metrics = jax.device_get(metrics)
        before, steps = steps, int(state.learner.step)
        dt = time.perf_counter() - t0
        run.advance(steps, seconds=dt)
        record = {k: float(v) for k, v in metrics.items()}
        record.update(steps=steps, updates_per_s=n / dt, wall_s=run.elapsed())
        done = steps >= policy_config.total_grad_steps
        run.log(steps, record)
        if evaluate is not None and (run.crossed(before, steps, config.eval_interval) or done):
            last_eval = run_eval(state, steps)
        if run.checkpoint_due(before, steps, config.checkpoint_interval, final=done):
            run.save(steps, state)
    if evaluate is not None and (last_eval is None or last_eval["steps"] != steps):
        last_eval = run_eval(state, steps)

    run.finish(save_policy=lambda directory: save_policy(learner, directory, state.learner, metadata), plot=False)
    record = run.record()
    return TrainResult(
        final_return=None if last_eval is None else last_eval["eval/return"],
        final_success=None if last_eval is None else last_eval["eval/success"],
        **record.result_fields(steps=steps),
        state=state,
    )


# --------------------------------------------------------------------------------------------- evaluation of saved policies


def evaluate_success(
    loaded: LoadedPolicy,
    inference: Any,
    *,
    episodes: int,
    num_envs: int,
    seed: int = 0,
    env_name: str | None = None,
    episode_length: int = 0,
    make_env: Callable[[str, int, int], Env] | None = None,
    trace: Callable | None = None,
    keep_episodes: bool = False,
) -> dict:
    """Success rate over `episodes` closed-loop episodes, run `num_envs` at a time (robojax.evaluation.evaluate).

    make_env: `(name, num_envs, episode_length) -> batched Env` (e.g. with a perturbation wrapper).
    trace: `(state, action, next_state) -> pytree` recorded every step (`keep_episodes` returns it).
    keep_episodes: also return "per_episode" arrays and "traced" records. "plans" summarises the
    plans when the learner records them (EBT-Policy: energy and compute per action).
    """
    name = env_name or loaded.metadata.get("env")
    if not name:
        raise ValueError("the policy's dataset names no env; pass the env to evaluate in")
    make_env = make_env or make_eval_env
    learner = loaded.learner
    out = evaluation.evaluate(
        loaded.policy(inference),
        lambda n: make_env(name, n, episode_length),
        episodes=episodes,
        num_envs=num_envs,
        seed=seed,
        episode_length=episode_length or None,
        trace=trace,
        policy_trace=learner.plan_trace,
    )
    result = {"env": name, **{k: out[k] for k in ("episodes", "success", "success_any_step", "return", "wall_s")}}
    if learner.summarize_plans is not None:
        result["plans"] = learner.summarize_plans(out["traced"])
    if keep_episodes:
        result["per_episode"] = out["per_episode"]
        result["traced"] = out.get("traced", {})
    return result


def measure_latency(
    loaded: LoadedPolicy,
    inference: Any,
    *,
    num_actions: int = 200,
    seed: int = 0,
    env_name: str | None = None,
) -> dict:
    """Wall-clock of the jitted single-env `policy.step` per executed action (robojax.evaluation.measure_latency).

    Observations come from a single unbatched env driven by the policy; the calls that replan are
    also reported on their own as per-chunk latency, the first (cold) one as first_chunk_ms.
    """
    name = env_name or loaded.metadata.get("env")
    if not name:
        raise ValueError("the policy's dataset names no env; pass the env to time the policy in")
    return evaluation.measure_latency(
        loaded.policy(inference), env_registry.make(name), num_actions=num_actions, seed=seed
    )


def evaluate_saved_policy(
    learner: ChunkLearner,
    checkpoint: str,
    inference: Any,
    *,
    episodes: int,
    num_envs: int,
    latency_actions: int,
    seed: int = 0,
    env: str = "",
    episode_length: int = 0,
) -> dict:
    """Success rate and batch-1 latency of a saved policy under one inference setting (eval_policy's work)."""
    loaded = load_policy(learner, checkpoint)
    inference.check_against(loaded.config)
    result = {
        "checkpoint": os.path.abspath(checkpoint),
        **learner.describe(loaded.config),
        "inference": dataclasses.asdict(inference),
    }
    if episodes:
        result.update(
            evaluate_success(
                loaded,
                inference,
                episodes=episodes,
                num_envs=num_envs,
                seed=seed,
                env_name=env or None,
                episode_length=episode_length,
            )
        )
    if latency_actions:
        result["latency"] = measure_latency(
            loaded, inference, num_actions=latency_actions, seed=seed, env_name=env or None
        )
    return result
