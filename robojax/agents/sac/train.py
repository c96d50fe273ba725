"""The on-device SAC loop: N vectorised envs, collect-and-update in one jit per iteration.

Each iteration is one jitted call that runs `steps_per_iteration` vectorised env steps in a
`lax.scan`; every step acts (uniform random during warm-up), inserts the batch of transitions into
the replay buffer, and runs one learner update step (`utd_ratio` critic updates + one actor and
temperature update). The host loop only evaluates, logs and checkpoints, at iteration boundaries,
so a run killed anywhere resumes exactly from its last checkpoint: every random stream lives in
the saved `LoopState`, and evaluation draws from its own stream keyed by the env-step count.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
from absl import logging as absl_logging
from flax import struct

from robojax import logging as rlog  # noqa: F401 - the loop's progress bar and sinks (tests patch rlog.ProgressBar)
from robojax import runs
from robojax.agents.sac import learner
from robojax.agents.sac.config import SACConfig, TrainConfig
from robojax.config_utils import to_dict
from robojax.data import replay
from robojax.data.demos import load_demos
from robojax.data.replay import ReplayBuffer, Transition
from robojax.envs import registry as env_registry
from robojax.envs.core import Env, EnvState
from robojax.evaluation import episode_length_of, make_episode_evaluator

EnvFactory = Callable[[str, int], Env]

# Loop settings that may change between a run and its resumption without changing what it learns.
RESUMABLE_CHANGES = (
    "total_env_steps",
    "eval_interval",
    "eval_episodes",
    "target_eval_return",
    "checkpoint_interval",
    "checkpoints_to_keep",
    "checkpoint_replay",
    "workdir",
    "resume",
    "progress_bar",
)


@struct.dataclass
class LoopState:
    """The whole state of an on-device run at an iteration boundary (what a checkpoint holds)."""

    learner: learner.TrainState
    env_state: EnvState
    replay: ReplayBuffer
    demo: ReplayBuffer | None
    rng: jax.Array  # acting, warm-up actions and minibatch sampling
    env_steps: jax.Array  # transitions collected, summed over envs
    iteration: jax.Array


@dataclasses.dataclass
class TrainResult:
    """What a finished run reports: final evaluation, the learning curve, and where things went."""

    final_return: float
    final_success: float | None  # mean of the task's success flag at the last evaluation
    eval_history: list[dict]  # one dict per evaluation: env_steps, wall_s, eval_return, ...
    steps: int  # env transitions collected
    wall_s: float
    first_iteration_s: float  # includes compiling the iteration
    workdir: str | None
    state: LoopState = dataclasses.field(repr=False)


def default_env_factory(name: str, num_envs: int) -> Env:
    """A batched, autoresetting task from the registry (`robojax.envs.make`)."""
    return env_registry.make(name, num_envs=num_envs)


def sample_update_batches(
    key: jax.Array, online: ReplayBuffer, demo: ReplayBuffer | None, config: SACConfig
) -> Transition:
    """`utd_ratio` minibatches, shape (utd_ratio, batch_size, ...); half demo, half online with demos."""
    keys = jax.random.split(key, config.utd_ratio)
    if demo is None:
        return jax.vmap(lambda k: replay.sample(online, k, config.batch_size))(keys)
    return jax.vmap(lambda k: replay.sample_symmetric(online, demo, k, config.batch_size))(keys)


def init_loop_state(key: jax.Array, env: Env, config: TrainConfig, demos: Transition | None = None) -> LoopState:
    """Fresh learner, env batch, empty replay buffer, and the demo buffer filled from `demos`."""
    learner_key, env_key, loop_key = jax.random.split(key, 3)
    obs_spec, action_spec = env.observation_spec, env.action_spec
    example = Transition.example(obs_spec.shape, action_spec.shape)
    demo_buffer = None
    if demos is not None:
        n = len(demos.reward)
        if n > config.demo_capacity:
            raise ValueError(
                f"the demo file holds {n} transitions but demo_capacity is {config.demo_capacity}; raise it"
            )
        demo_buffer = replay.insert(replay.init(example, config.demo_capacity), demos)
    state = LoopState(
        learner=learner.init(learner_key, obs_spec, action_spec, config.sac),
        env_state=env.reset(env_key),
        replay=replay.init(example, config.replay_capacity),
        demo=demo_buffer,
        rng=loop_key,
        env_steps=jnp.zeros((), jnp.int32),
        iteration=jnp.zeros((), jnp.int32),
    )
    # The iteration donates the whole state, and XLA refuses to donate one buffer twice: the target
    # critics start as the critics, and a reset's final_obs is its obs (matters when run eagerly).
    return jax.tree.map(lambda x: jnp.array(x, copy=True), state)


def learning_config(config: TrainConfig) -> TrainConfig:
    """`config` with the settings that do not change what is learned reset to their defaults.

    Jitted functions are cached on it, so runs that differ only in budget, intervals or run
    directory (a resumed run, a test's second run) reuse the compiled iteration.
    """
    defaults = TrainConfig()
    return dataclasses.replace(config, **{name: getattr(defaults, name) for name in RESUMABLE_CHANGES})


@functools.lru_cache(maxsize=8)
def make_iteration(env: Env, config: TrainConfig) -> Callable[[LoopState], tuple[LoopState, dict]]:
    """The jitted collect-insert-update iteration; the loop state (buffers included) is donated."""
    sac, num_envs = config.sac, config.num_envs
    action_shape = (num_envs,) + tuple(env.action_spec.shape)
    zero_metrics = {name: jnp.zeros((), jnp.float32) for name in learner.metric_names()}

    def env_step(state: LoopState, _):
        rng, act_key, random_key, update_key = jax.random.split(state.rng, 4)
        obs = state.env_state.obs
        warming_up = state.env_steps < config.learning_starts
        action = jnp.where(
            warming_up,
            jax.random.uniform(random_key, action_shape, minval=-1.0, maxval=1.0),
            learner.act(state.learner, obs, act_key),
        )
        next_env_state = env.step(state.env_state, action)
        buffer = replay.insert(state.replay, Transition.from_env_step(obs, action, next_env_state))
        learner_state = learner.update_observation_normalizer(state.learner, obs)
        env_steps = state.env_steps + num_envs

        def train_step(learner_state):
            batches = sample_update_batches(update_key, buffer, state.demo, sac)
            return learner.update(learner_state, batches)

        learning = env_steps >= config.learning_starts
        learner_state, metrics = jax.lax.cond(learning, train_step, lambda s: (s, zero_metrics), learner_state)
        info = next_env_state.info
        done = info["episode_done"].astype(jnp.float32)
        out = {
            **metrics,
            "learning": learning.astype(jnp.float32),
            "episodes": jnp.sum(done),
            "episode_return_sum": jnp.sum(done * info["episode_return"]),
            "episode_success_sum": jnp.sum(done * info["episode_success"].astype(jnp.float32)),
        }
        state = state.replace(
            learner=learner_state, env_state=next_env_state, replay=buffer, rng=rng, env_steps=env_steps
        )
        return state, out

    @functools.partial(jax.jit, donate_argnums=0)
    def iteration(state: LoopState) -> tuple[LoopState, dict]:
        state, out = jax.lax.scan(env_step, state, None, length=config.steps_per_iteration)
        updates = jnp.sum(out["learning"])
        episodes = jnp.sum(out["episodes"])
        metrics = {name: jnp.sum(out[name]) / jnp.maximum(updates, 1.0) for name in learner.metric_names()}
        metrics["train/episodes"] = episodes
        metrics["train/episode_return"] = jnp.sum(out["episode_return_sum"]) / jnp.maximum(episodes, 1.0)
        metrics["train/episode_success"] = jnp.sum(out["episode_success_sum"]) / jnp.maximum(episodes, 1.0)
        metrics["update_steps"] = updates
        return state.replace(iteration=state.iteration + 1), metrics

    return iteration


# Jitted: run eagerly, an MJX reset and the network inits dispatch thousands of small ops.
_init_loop_state_jit = jax.jit(init_loop_state, static_argnums=(1, 2))


@functools.lru_cache(maxsize=8)
def make_evaluator(eval_env: Env) -> Callable[[learner.TrainState, jax.Array], dict]:
    """Jitted evaluation: one episode per env of `eval_env` with the deterministic actor."""
    episodes = make_episode_evaluator(
        eval_env, functools.partial(learner.policy, deterministic=True), episode_length=episode_length_of(eval_env)
    )

    @jax.jit
    def evaluate(learner_state: learner.TrainState, key: jax.Array) -> dict:
        out = episodes(learner_state, key)
        returns = out["return"]
        return {
            "eval/return": jnp.mean(returns),
            "eval/return_std": jnp.std(returns),
            "eval/success": jnp.mean(out["success"].astype(jnp.float32)),
            "eval/returns": returns,
        }

    return evaluate


def run_metadata(env, config, fmt: str = "robojax.sac.loop/1") -> dict:
    """What a checkpoint records about the run, checked on resume (shared with the host loop)."""
    return runs.env_run_metadata(fmt, to_dict(config), config.env, env)


def resume_fingerprint(metadata: dict, resumable: tuple[str, ...] = RESUMABLE_CHANGES) -> dict:
    """The part of the run metadata that must match for a resume to continue the same run."""
    return {
        "env": metadata["env"],
        "observation_spec": {k: metadata["observation_spec"][k] for k in ("shape", "dtype")},
        "action_spec": {k: metadata["action_spec"][k] for k in ("shape", "dtype", "low", "high")},
        "config": runs.without_fields(metadata["config"], resumable),
    }


def train(config: TrainConfig, env_factory: EnvFactory | None = None) -> TrainResult:
    """Run (or resume) SAC on a batched env and return the final evaluation and learning curve.

    env_factory: `(name, num_envs) -> Env`, batched, autoresetting, with `EpisodeStatistics`, as
      `envs.make(name, num_envs=n)` builds (the default).
    """
    with open_run(config) as run:
        return _train(config, env_factory or default_env_factory, run)


def open_run(config, resumable: tuple[str, ...] = RESUMABLE_CHANGES) -> runs.Run:
    """The `runs.Run` of a SAC loop (this one or the host loop): env steps, eval/return, SAC's fingerprint."""
    return runs.Run(
        config.workdir,
        resume=config.resume,
        resumable=resumable,
        fingerprint=functools.partial(resume_fingerprint, resumable=resumable),
        checkpoints_to_keep=config.checkpoints_to_keep,
        stdout_keys=("eval/return", "eval/success"),
        eval_key="eval/return",
        progress_bar=config.progress_bar,
        progress_unit="env step",
    )


def _train(config: TrainConfig, make_env: EnvFactory, run: runs.Run) -> TrainResult:
    env = make_env(config.env, config.num_envs)
    eval_env = make_env(config.env, config.eval_episodes)
    if env.batch_size != config.num_envs:
        raise ValueError(f"env factory returned batch size {env.batch_size}, expected num_envs={config.num_envs}")
    learner.check_action_spec(env.action_spec)
    demos = None
    if config.demo_path is not None:
        demos = load_demos(config.demo_path, env.observation_spec.shape, env.action_spec.shape)

    train_key, eval_root = jax.random.split(jax.random.PRNGKey(config.seed))
    loop_state = _init_loop_state_jit(train_key, env, learning_config(config), demos)
    run.describe(run_metadata(env, config))
    if run.resuming:
        loop_state = restore_loop_state(run, loop_state)
        absl_logging.info("resumed at env step %d from %s", int(loop_state.env_steps), run.checkpointer.directory)
    env_steps = int(loop_state.env_steps)
    run.start(step=env_steps, total=config.total_env_steps)
    iteration = make_iteration(env, learning_config(config))
    evaluate = make_evaluator(eval_env)

    def run_eval(state: LoopState, steps: int) -> dict:
        # Its own random stream, keyed by the step count: evaluating never perturbs training.
        out = jax.device_get(evaluate(state.learner, jax.random.fold_in(eval_root, steps)))
        record = {k: float(v) for k, v in out.items() if k != "eval/returns"}
        record.update(env_steps=steps, wall_s=run.elapsed())
        return run.log_eval(steps, record)

    last_eval: dict | None = None
    while env_steps < config.total_env_steps:
        t0 = time.perf_counter()
        loop_state, metrics = iteration(loop_state)
        metrics = jax.device_get(metrics)  # the one device-to-host transfer per iteration
        before, env_steps = env_steps, int(loop_state.env_steps)
        dt = time.perf_counter() - t0
        run.advance(env_steps, seconds=dt)
        record = {k: float(v) for k, v in metrics.items()}
        record.update(env_steps=env_steps, env_steps_per_s=config.env_steps_per_iteration / dt, wall_s=run.elapsed())
        run.log(env_steps, record)
        done = env_steps >= config.total_env_steps
        if run.crossed(before, env_steps, config.eval_interval) or done:
            last_eval = run_eval(loop_state, env_steps)
        target_reached = (
            config.target_eval_return is not None
            and last_eval is not None
            and last_eval["env_steps"] == env_steps
            and last_eval["eval/return"] >= config.target_eval_return
        )
        if run.checkpoint_due(before, env_steps, config.checkpoint_interval, final=done or target_reached):
            save_loop_state(run, loop_state, config.checkpoint_replay)
        if target_reached:
            break
    if last_eval is None or last_eval["env_steps"] != env_steps:
        last_eval = run_eval(loop_state, env_steps)

    learner_state = loop_state.learner
    run.finish(policy={"actor_params": learner_state.actor_params, "obs_normalizer": learner_state.obs_normalizer})
    record = run.record()
    return TrainResult(
        final_return=last_eval["eval/return"],
        final_success=last_eval.get("eval/success"),
        **record.result_fields(steps=env_steps),
        state=loop_state,
    )


def save_loop_state(run: runs.Run, state: LoopState, with_replay: bool) -> None:
    """Checkpoint at the current env-step count; buffers go in their own item so they can be left out."""
    buffers = {"replay": state.replay, "demo": state.demo}
    core = state.replace(replay=None, demo=None)
    run.save(int(state.env_steps), core, extras={"buffers": buffers} if with_replay else None)


def restore_loop_state(run: runs.Run, template: LoopState) -> LoopState:
    """Restore the latest checkpoint into the shapes of `template`, refusing one from a different run."""
    buffers_template = {"replay": template.replay, "demo": template.demo}
    core, extras = run.restore(template.replace(replay=None, demo=None), extras={"buffers": buffers_template})
    buffers = extras.get("buffers")
    if buffers is None:
        absl_logging.warning(
            "checkpoint %s was saved without replay buffers: resuming with empty ones (not an exact resume)",
            run.checkpointer.step_path(run.checkpointer.latest_step()),
        )
        buffers = buffers_template
    return core.replace(replay=buffers["replay"], demo=buffers["demo"])
