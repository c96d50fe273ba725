"""The Diffusion Policy training loop: windows on device, scanned updates, closed-loop MJX evaluation.

The dataset (an episode directory, `robojax.data.episodes`) is cut into (To observations, Tp
actions) windows once and put on the device. Each jitted call runs `updates_per_call` gradient
steps in a `lax.scan`, each on a minibatch drawn uniformly from the windows. Between calls the host
evaluates (every `eval_interval` steps: one jitted `lax.scan` over a whole episode of a batch of
`eval_episodes` MJX envs with the receding-horizon policy inside, replanning every Ta steps),
logs, and checkpoints. Every random stream lives in the saved `LoopState`, and evaluation draws
from its own stream keyed by the step count, so a resumed run continues exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging as absl_logging
from flax import struct

import robojax
from robojax import checkpoint as ckpt
from robojax import logging as rlog
from robojax import runs
from robojax.agents.diffusion_policy import learner
from robojax.agents.diffusion_policy.config import DiffusionPolicyConfig, InferenceConfig, TrainConfig
from robojax.config_utils import from_dict, to_dict
from robojax.data.episodes import EpisodeDataset, load_episodes
from robojax.data.windows import make_windows
from robojax.envs import registry as env_registry
from robojax.envs.core import ArraySpec, Env

POLICY_FORMAT = "robojax.diffusion_policy/1"
RUN_FORMAT = "robojax.diffusion_policy.loop/1"
# Top-level loop settings that may change between a run and its resumption without changing what it learns.
RESUMABLE_CHANGES = (
    "workdir", "resume", "progress_bar", "eval_interval", "eval_episodes", "eval_env", "eval_episode_length",
    "checkpoint_interval", "checkpoints_to_keep", "inference", "dataset",
)


@struct.dataclass
class LoopState:
    """The whole state of a run between jitted calls (what a checkpoint holds)."""

    learner: learner.TrainState
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


def load_dataset(path: str, max_episodes: int = 0) -> EpisodeDataset:
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
            f"{path}: Diffusion Policy here needs flat state observations and actions, got"
            f" {dataset.observation_spec.shape} and {dataset.action_spec.shape}"
        )
    return dataset


def prepare_data(dataset: EpisodeDataset, config: DiffusionPolicyConfig) -> tuple[dict, learner.Normalizers]:
    """Windows as device arrays {obs [N, To, D], actions [N, Tp, A]} and normalisers fitted on all steps."""
    windows = make_windows(dataset, config.obs_horizon, config.pred_horizon)
    observations = np.concatenate([np.asarray(e.observations, np.float32) for e in dataset.episodes])
    actions = np.concatenate([np.asarray(e.actions, np.float32) for e in dataset.episodes])
    normalizers = learner.fit_normalizers(observations, actions, config, dataset.discrete_action_dims)
    data = {"obs": jnp.asarray(windows["obs"]), "actions": jnp.asarray(windows["actions"])}
    return data, normalizers


def init_loop_state(key: jax.Array, dataset: EpisodeDataset, config: DiffusionPolicyConfig,
                    normalizers: learner.Normalizers) -> LoopState:
    learner_key, loop_key = jax.random.split(key)
    state = learner.init(
        learner_key, dataset.observation_spec.shape[0], dataset.action_spec.shape[0], config, normalizers
    )
    return LoopState(learner=state, rng=loop_key)


# --------------------------------------------------------------------------------------------- jitted work


@functools.lru_cache(maxsize=8)
def make_train_call(config: DiffusionPolicyConfig, num_updates: int) -> Callable:
    """Jitted `num_updates` gradient steps in one `lax.scan`: (LoopState, data) -> (LoopState, mean metrics)."""

    def one_update(state: LoopState, data):
        rng, key = jax.random.split(state.rng)
        n = data["obs"].shape[0]
        idx = jax.random.randint(key, (config.batch_size,), 0, n)
        batch = {"obs": data["obs"][idx], "actions": data["actions"][idx]}
        learner_state, metrics = learner.update(state.learner, batch)
        return LoopState(learner=learner_state, rng=rng), metrics

    @functools.partial(jax.jit, donate_argnums=0)
    def call(state: LoopState, data: dict):
        state, metrics = jax.lax.scan(lambda s, _: one_update(s, data), state, None, length=num_updates)
        return state, jax.tree.map(jnp.mean, metrics)

    return call


def episode_length_of(env: Env) -> int:
    length = getattr(env, "max_steps", None) or getattr(env, "episode_length", None)
    if length is None:
        raise ValueError(f"{env!r} has neither a TimeLimit nor an episode_length; evaluation needs finite episodes")
    return int(length)


@functools.lru_cache(maxsize=16)
def make_evaluator(
    env: Env, config: DiffusionPolicyConfig, inference: InferenceConfig, obs_dim: int, action_dim: int,
    action_low: tuple, action_high: tuple,
) -> Callable:
    """Jitted closed-loop evaluation: one episode in every env of the batched `env`, as one `lax.scan`.

    Returns `evaluate(params, normalizers, key) -> {eval/success, ...}`; success is the task's flag at
    each episode's end (EpisodeStatistics), counted once per env (envs that finish early stop counting).
    The policy replans every `action_steps` control steps, all envs on the same clock.
    """
    max_steps = episode_length_of(env)
    low, high = np.asarray(action_low, np.float32), np.asarray(action_high, np.float32)

    @jax.jit
    def evaluate(params, normalizers: learner.Normalizers, key: jax.Array) -> dict:
        reset_key, policy_key = jax.random.split(key)
        env_state = env.reset(reset_key)
        batch = env_state.obs.shape[0]
        policy = learner.make_policy(
            params, normalizers, config, inference, obs_dim, action_dim,
            batch_size=batch, action_low=low, action_high=high,
        )

        def body(carry, step_key):
            env_state, policy_carry, success, ever, returns, running = carry
            action, policy_carry = policy.step(policy_carry, env_state.obs, step_key)
            env_state = env.step(env_state, action)
            info = env_state.info
            returns = returns + jnp.where(running, env_state.reward, 0.0)
            ever = ever | (running & info["success"])
            finished = running & info["episode_done"]
            success = jnp.where(finished, info["episode_success"], success)
            running = running & ~info["episode_done"]
            return (env_state, policy_carry, success, ever, returns, running), None

        zeros = jnp.zeros(batch, bool)
        init = (env_state, policy.init_carry(), zeros, zeros, jnp.zeros(batch), jnp.ones(batch, bool))
        keys = jax.random.split(policy_key, max_steps)
        (_, _, success, ever, returns, _), _ = jax.lax.scan(body, init, keys)
        return {
            "eval/success": jnp.mean(success.astype(jnp.float32)),
            "eval/success_any_step": jnp.mean(ever.astype(jnp.float32)),
            "eval/return": jnp.mean(returns),
            "eval/successes": success,
        }

    return evaluate


def make_eval_env(name: str, num_envs: int, episode_length: int = 0) -> Env:
    return env_registry.make(name, num_envs=num_envs, episode_length=episode_length or None)


# --------------------------------------------------------------------------------------------- run metadata


def run_metadata(config: TrainConfig, dataset: EpisodeDataset) -> dict:
    return {
        "format": RUN_FORMAT,
        "robojax_version": robojax.__version__,
        "jax_version": jax.__version__,
        "dataset": os.path.abspath(config.dataset),
        "dataset_episodes": len(dataset.episodes),
        "dataset_steps": dataset.num_steps,
        "env": dataset.env,
        "control_dt": dataset.control_dt,
        "observation_spec": dataset.observation_spec.to_dict(),
        "action_spec": dataset.action_spec.to_dict(),
        "discrete_action_dims": list(dataset.discrete_action_dims),
        "config": to_dict(config),
    }


def resume_fingerprint(metadata: dict) -> dict:
    # Through from_dict: checkpoints saved under the old field names compare by the new ones.
    saved = to_dict(from_dict(TrainConfig, metadata["config"]))
    config = {k: v for k, v in saved.items() if k not in RESUMABLE_CHANGES}
    return {
        "dataset_episodes": metadata["dataset_episodes"],
        "dataset_steps": metadata["dataset_steps"],
        "observation_spec": {k: metadata["observation_spec"][k] for k in ("shape", "dtype")},
        "action_spec": {k: metadata["action_spec"][k] for k in ("shape", "dtype")},
        "discrete_action_dims": metadata["discrete_action_dims"],
        "config": config,
    }


# --------------------------------------------------------------------------------------------- saved policies


def save_policy(directory: str, state: learner.TrainState, metadata: dict) -> str:
    """The EMA parameters and normalisers with a JSON sidecar (written aside, then renamed)."""
    tree = {"params": state.ema_params, "normalizers": state.normalizers.to_arrays()}
    meta = {
        **metadata,
        "format": POLICY_FORMAT,
        "policy_config": to_dict(state.config),
        "obs_dim": state.obs_dim,
        "action_dim": state.action_dim,
        "train_steps": int(state.step),
    }
    return ckpt.save_policy(directory, jax.device_get(tree), meta)


@dataclasses.dataclass
class LoadedPolicy:
    params: Any
    normalizers: learner.Normalizers
    config: DiffusionPolicyConfig
    obs_dim: int
    action_dim: int
    action_spec: ArraySpec
    observation_spec: ArraySpec
    metadata: dict

    def policy(self, inference: InferenceConfig, batch_size: int | None = None) -> learner.Policy:
        return learner.make_policy(
            self.params, self.normalizers, self.config, inference, self.obs_dim, self.action_dim,
            action_low=self.action_spec.low, action_high=self.action_spec.high, batch_size=batch_size,
        )


def load_policy(path: str) -> LoadedPolicy:
    """A saved policy from its directory, or from a run directory holding `policy/`."""
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(os.path.join(path, "policy.json")) and os.path.isfile(os.path.join(path, "policy", "policy.json")):
        path = os.path.join(path, "policy")
    tree, meta = ckpt.load_policy(path)
    if meta.get("format") != POLICY_FORMAT:
        raise ValueError(
            f"{path} holds a {meta.get('format')!r} policy, not a Diffusion Policy ({POLICY_FORMAT});"
            " pass the policy/ directory (or run directory) of experiments.train_diffusion_policy"
        )
    config = from_dict(DiffusionPolicyConfig, meta["policy_config"])
    params = jax.tree.map(jnp.asarray, tree["params"])
    normalizers = learner.Normalizers.from_arrays(tree["normalizers"], meta["discrete_action_dims"])
    return LoadedPolicy(
        params, normalizers, config, int(meta["obs_dim"]), int(meta["action_dim"]),
        ArraySpec.from_dict(meta["action_spec"]), ArraySpec.from_dict(meta["observation_spec"]), meta,
    )


# --------------------------------------------------------------------------------------------- the loop


def train(config: TrainConfig, env_factory: Callable[[str, int, int], Env] | None = None) -> TrainResult:
    """Run (or resume) Diffusion Policy training on the dataset in `config.dataset`.

    env_factory: `(name, num_envs, episode_length) -> batched Env` for evaluation (default: envs.make).
    """
    start = time.perf_counter()
    dataset = load_dataset(config.dataset, config.max_episodes)  # bad datasets fail before any directory is made
    workdir = os.path.abspath(config.workdir) if config.workdir else None
    checkpointer = (
        runs.open_checkpointer(workdir, resume=config.resume, keep=config.checkpoints_to_keep, resume_flag="--resume")
        if workdir else None
    )
    try:
        return _train(config, dataset, env_factory or make_eval_env, workdir, checkpointer, start)
    finally:
        if checkpointer:
            checkpointer.close()


def _train(config, dataset, make_env, workdir, checkpointer, start) -> TrainResult:
    policy_config = config.policy
    data, normalizers = prepare_data(dataset, policy_config)
    root = jax.random.PRNGKey(config.seed)
    train_key, eval_root = jax.random.split(root)
    state = init_loop_state(train_key, dataset, policy_config, normalizers)
    metadata = run_metadata(config, dataset)
    if checkpointer and config.resume:
        step = checkpointer.latest_step()
        saved = checkpointer.read_metadata(step)
        ckpt.check_compatible(resume_fingerprint(saved), resume_fingerprint(metadata), where=checkpointer.step_path(step))
        state, _ = checkpointer.restore(state, step=step)
        absl_logging.info("resumed at step %d from %s", int(state.learner.step), checkpointer.directory)
    if workdir:
        runs.write_json(os.path.join(workdir, "config.json"), metadata)

    eval_name = dataset.env if config.eval_env == "" else config.eval_env
    evaluate = None
    if eval_name and eval_name != "none":
        eval_env = make_env(eval_name, config.eval_episodes, config.eval_episode_length)
        evaluate = make_evaluator(
            eval_env, policy_config, config.inference, dataset.observation_spec.shape[0], dataset.action_spec.shape[0],
            tuple(np.broadcast_to(dataset.action_spec.low, dataset.action_spec.shape).tolist()),
            tuple(np.broadcast_to(dataset.action_spec.high, dataset.action_spec.shape).tolist()),
        )

    steps = int(state.learner.step)
    resume_step = steps if config.resume else None
    progress = rlog.ProgressBar(policy_config.total_grad_steps, initial=steps, enabled=config.progress_bar)
    sinks: list[rlog.MetricsSink] = [rlog.StdoutSink(keys=("eval/success", "eval/success_any_step", "eval/return"), print_fn=progress.write)]
    if workdir:
        sinks.append(rlog.JsonlSink(os.path.join(workdir, "metrics.jsonl"), resume_step=resume_step))
        sinks.append(rlog.TensorBoardSink(os.path.join(workdir, "tensorboard"), purge_step=resume_step))
    logger = rlog.MetricsLogger(sinks)
    eval_history = [r for r in logger.history() if "eval/success" in r]
    first_iteration_s = None
    last_eval = None

    def run_eval(state: LoopState, step: int) -> dict:
        learner_state = state.learner
        key = jax.random.fold_in(eval_root, step)
        out = jax.device_get(evaluate(learner_state.ema_params, learner_state.normalizers, key))
        record = {k: float(v) for k, v in out.items() if k != "eval/successes"}
        record.update(steps=step, wall_s=time.perf_counter() - start)
        logger.write(step, record)
        eval_history.append(record)
        progress.set_eval_return(record["eval/success"])
        return record

    try:
        while steps < policy_config.total_grad_steps:
            n = min(config.updates_per_call, policy_config.total_grad_steps - steps)
            t0 = time.perf_counter()
            state, metrics = make_train_call(policy_config, n)(state, data)
            metrics = jax.device_get(metrics)
            before, steps = steps, int(state.learner.step)
            dt = time.perf_counter() - t0
            first_iteration_s = dt if first_iteration_s is None else first_iteration_s
            progress.update(steps)
            record = {k: float(v) for k, v in metrics.items()}
            record.update(steps=steps, updates_per_s=n / dt, wall_s=time.perf_counter() - start)
            done = steps >= policy_config.total_grad_steps
            logger.write(steps, record)
            if evaluate is not None and (runs.crossed(before, steps, config.eval_interval) or done):
                last_eval = run_eval(state, steps)
            if checkpointer and (runs.crossed(before, steps, config.checkpoint_interval) or done):
                checkpointer.save(steps, state, metadata=metadata)
        if evaluate is not None and (last_eval is None or last_eval["steps"] != steps):
            last_eval = run_eval(state, steps)
    finally:
        progress.close()
        logger.close()

    if workdir:
        save_policy(os.path.join(workdir, "policy"), state.learner, metadata)
    return TrainResult(
        final_return=None if last_eval is None else last_eval["eval/return"],
        final_success=None if last_eval is None else last_eval["eval/success"],
        eval_history=eval_history,
        steps=steps,
        wall_s=time.perf_counter() - start,
        first_iteration_s=first_iteration_s or 0.0,
        workdir=workdir,
        state=state,
    )


# --------------------------------------------------------------------------------------------- evaluation of saved policies


def evaluate_success(
    loaded: LoadedPolicy,
    inference: InferenceConfig,
    *,
    episodes: int,
    num_envs: int,
    seed: int = 0,
    env_name: str | None = None,
    episode_length: int = 0,
    make_env: Callable[[str, int, int], Env] | None = None,
) -> dict:
    """Success rate over `episodes` closed-loop episodes, run `num_envs` at a time (jitted scans)."""
    name = env_name or loaded.metadata.get("env")
    if not name:
        raise ValueError("the policy's dataset names no env; pass the env to evaluate in")
    num_envs = min(num_envs, episodes)
    env = (make_env or make_eval_env)(name, num_envs, episode_length)
    spec = loaded.action_spec
    evaluate = make_evaluator(
        env, loaded.config, inference, loaded.obs_dim, loaded.action_dim,
        tuple(np.broadcast_to(spec.low, spec.shape).tolist()), tuple(np.broadcast_to(spec.high, spec.shape).tolist()),
    )
    successes, any_step, returns = [], [], []
    start = time.perf_counter()
    root = jax.random.PRNGKey(seed)
    for i in range(-(-episodes // num_envs)):
        out = jax.device_get(evaluate(loaded.params, loaded.normalizers, jax.random.fold_in(root, i)))
        successes.append(np.asarray(out["eval/successes"], bool))
        any_step.append(float(out["eval/success_any_step"]))
        returns.append(float(out["eval/return"]))
    success = np.concatenate(successes)[:episodes]
    return {
        "env": name,
        "episodes": int(success.size),
        "success": float(success.mean()),
        "success_any_step": float(np.mean(any_step)),
        "return": float(np.mean(returns)),
        "wall_s": time.perf_counter() - start,
    }


def measure_latency(
    loaded: LoadedPolicy,
    inference: InferenceConfig,
    *,
    num_actions: int = 200,
    seed: int = 0,
    env_name: str | None = None,
) -> dict:
    """Wall-clock of the jitted single-env `policy.step` per executed action (batch 1, this machine's device).

    Observations come from a single unbatched env driven by the policy. Calls that replan (every
    `action_steps`-th, starting with the first, which is a cold solve and excluded once compiled
    for RTI) are also reported on their own as per-chunk latency.
    """
    name = env_name or loaded.metadata.get("env")
    env = env_registry.make(name)
    policy = loaded.policy(inference)
    step = jax.jit(policy.step)
    env_step, env_reset = jax.jit(env.step), jax.jit(env.reset)
    key = jax.random.PRNGKey(seed)
    state = env_reset(key)
    carry = policy.init_carry()
    # Compile, and run once through a cold and a warm plan, untimed.
    for i in range(2 * policy.action_steps + 1):
        action, carry = step(carry, state.obs, jax.random.fold_in(key, 10_000 + i))
        action.block_until_ready()
    carry = policy.init_carry()
    keys = list(jax.random.split(jax.random.fold_in(key, 1), num_actions))
    times, replans, cold = [], [], []
    for i in range(num_actions):
        index_before, fresh = int(carry.index), not bool(carry.has_chunk)
        t0 = time.perf_counter()
        action, carry = step(carry, state.obs, keys[i])
        action.block_until_ready()
        dt = time.perf_counter() - t0
        times.append(dt)
        if fresh:
            cold.append(dt)
        elif index_before >= policy.action_steps:
            replans.append(dt)
        state = env_step(state, action)
        if bool(state.done):
            state = env_reset(jax.random.fold_in(key, 1000 + i))
            carry = policy.init_carry()
    ms = np.asarray(times) * 1e3
    chunk_ms = np.asarray(replans or cold) * 1e3
    return {
        "actions": num_actions,
        "per_action_ms_mean": float(ms.mean()),
        "per_action_ms_p50": float(np.percentile(ms, 50)),
        "per_action_ms_p99": float(np.percentile(ms, 99)),
        "per_chunk_ms_p50": float(np.percentile(chunk_ms, 50)),
        "per_chunk_ms_p99": float(np.percentile(chunk_ms, 99)),
        "first_chunk_ms": float(np.mean(cold) * 1e3) if cold else None,
        "replans": len(replans),
        "nfe_first_chunk": policy.nfe["first_chunk"],
        "nfe_per_chunk": policy.nfe["per_chunk"],
        "nfe_per_action": policy.nfe["per_action"],
        "action_steps": policy.action_steps,
        "device": str(jax.devices()[0]),
    }


def evaluate_saved_policy(
    checkpoint: str, inference: InferenceConfig, *, episodes: int, num_envs: int, latency_actions: int,
    seed: int = 0, env: str = "", episode_length: int = 0,
) -> dict:
    """Success rate, batch-1 latency and NFE of a saved policy under one inference setting (eval_policy's work)."""
    loaded = load_policy(checkpoint)
    inference.check_against(loaded.config)
    result = {"checkpoint": os.path.abspath(checkpoint), "objective": loaded.config.objective,
              "inference": dataclasses.asdict(inference)}
    if episodes:
        result.update(evaluate_success(loaded, inference, episodes=episodes, num_envs=num_envs, seed=seed,
                                       env_name=env or None, episode_length=episode_length))
    if latency_actions:
        result["latency"] = measure_latency(loaded, inference, num_actions=latency_actions, seed=seed,
                                            env_name=env or None)
    return result
