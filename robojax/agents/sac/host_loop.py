"""SAC on host-side envs (gymnasium, a real robot): actor and learner threads in one process.

SERL's actor/learner split without the network in between:

  actor thread    steps the `HostEnv` with the latest *published* policy parameters (a jitted
                  act on the CPU), asks the optional `InterventionSource` whether a human takes
                  over, and pushes each transition into a thread-safe staging queue.
  learner thread  drains the queue into the replay buffer (interventions also into the demo
                  buffer), runs jitted `learner.update`s, one per env step after `learning_starts`
                  (each is `utd_ratio` critic updates + one actor update), publishes new actor
                  parameters every `publish_interval` updates, evaluates and checkpoints.

Slow env steps and fast updates overlap: on a robot the learner waits for data; on a fast
simulator the actor may run at most `max_actor_lead` env steps ahead of the updates, so the
policy that collects data stays fresh (and sample efficiency matches the synchronous loop).

Checkpoints (learner thread) are taken right after draining the queue, so the saved replay holds
every transition counted in `env_steps`; a resumed run restores the buffers, learner and counters
and starts a fresh episode (a host env's state cannot be saved). An exception in either thread
stops both and is raised to the caller as `HostLoopError` naming the thread, with the original as
its cause; the learner still drains and checkpoints when the actor fails.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import queue
import threading
import time
import traceback
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging as absl_logging

from robojax import checkpoint as ckpt
from robojax import logging as rlog
from robojax import runs
from robojax.agents.sac import learner
from robojax.agents.sac import train as device_loop
from robojax.agents.sac.config import SACConfig
from robojax.agents.sac.interventions import InterventionSource
from robojax.agents.sac.networks import deterministic_action, make_networks, sample_tanh_gaussian
from robojax.config_utils import check_int, check_non_negative_int, check_positive_int, field
from robojax.data import normalizer, replay
from robojax.data.demos import load_demos
from robojax.data.replay import ReplayBuffer, Transition
from robojax.envs.core import ArraySpec, EnvState, HostEnv

HostEnvFactory = Callable[[], HostEnv]

# Tuned on gymnasium's InvertedPendulum-v5 (benchmarks/sac.py --parts=gym).
HOST_SAC_DEFAULTS = SACConfig(
    actor_hidden_dims=(64, 64), critic_hidden_dims=(64, 64), utd_ratio=2, batch_size=128
)

RESUMABLE_CHANGES = device_loop.RESUMABLE_CHANGES + ("log_interval", "max_actor_lead", "publish_interval")


class HostLoopError(RuntimeError):
    """An actor or learner thread of the host loop failed; `__cause__` is the original exception."""


@dataclasses.dataclass(frozen=True)
class HostTrainConfig:
    """The host actor/learner loop: env, budget, threading, evaluation, checkpoints, learner config."""

    env: str = field("InvertedPendulum-v5", "Gymnasium env id (Box spaces), or a name for a custom factory.")
    seed: int = field(0, "Seed of the learner, the env resets and the actor's sampling.")
    total_env_steps: int = field(30_000, "Env transitions to collect.")
    learning_starts: int = field(1_000, "Transitions of uniform random actions before updates begin.")
    replay_capacity: int = field(200_000, "Replay buffer capacity in transitions.")
    demo_path: str | None = field(None, "A .npz of demo transitions, preloaded into the demo buffer.")
    demo_capacity: int = field(10_000, "Demo buffer capacity (demos and interventions).")
    publish_interval: int = field(10, "Learner updates between publishing actor params to the actor thread.")
    max_actor_lead: int = field(100, "Env steps the actor may run ahead of the learner's updates.")
    eval_interval: int = field(2_000, "Transitions between evaluations.")
    eval_episodes: int = field(5, "Episodes per evaluation with the deterministic policy.")
    eval_max_steps: int = field(10_000, "Cut an evaluation episode after this many steps.")
    target_eval_return: float | None = field(None, "Stop once an evaluation reaches this mean return.")
    checkpoint_interval: int = field(10_000, "Transitions between checkpoints (also one at the end).")
    checkpoints_to_keep: int = field(2, "Most recent checkpoints kept on disk.")
    checkpoint_replay: bool = field(True, "Save replay and demo buffers with checkpoints.")
    log_interval: int = field(1_000, "Transitions between training-metric log lines.")
    workdir: str | None = field(None, "Run directory for checkpoints, logs, plot and policy (None: no files).")
    resume: bool = field(False, "Continue from the latest checkpoint in workdir.")
    progress_bar: bool = field(True, "Show a progress bar when stderr is a terminal.")
    sac: SACConfig = dataclasses.field(default_factory=lambda: HOST_SAC_DEFAULTS)

    def __post_init__(self):
        check_non_negative_int(self, "seed")
        check_positive_int(
            self, "total_env_steps", "replay_capacity", "demo_capacity", "publish_interval", "max_actor_lead",
            "eval_interval", "eval_episodes", "eval_max_steps", "checkpoint_interval", "checkpoints_to_keep",
            "log_interval",
        )
        check_int(self, "learning_starts", minimum=0, expected=">= 0")
        if self.sac.batch_size % 2:
            raise ValueError(
                f"SACConfig.batch_size ({self.sac.batch_size}) must be even: once the demo buffer holds"
                " demos or interventions, half of every batch comes from it"
            )
        if self.resume and not self.workdir:
            raise ValueError("HostTrainConfig.resume needs a workdir to resume from")


@dataclasses.dataclass
class HostTrainResult:
    final_return: float
    final_success: float | None  # None: host envs report no success signal
    eval_history: list[dict]
    steps: int  # env transitions in the replay buffer's count (collected and stored)
    updates: int
    interventions: int
    wall_s: float
    first_iteration_s: float  # until the first learner update finished (includes compiling it)
    workdir: str | None
    learner_state: learner.TrainState = dataclasses.field(repr=False)
    replay: ReplayBuffer = dataclasses.field(repr=False)
    demo: ReplayBuffer = dataclasses.field(repr=False)


# ---- env helpers ---------------------------------------------------------------------------------
class RescaleActions(HostEnv):
    """Maps the policy's [-1, 1] actions linearly onto a host env's finite action bounds."""

    def __init__(self, env: HostEnv):
        spec = env.action_spec
        low, high = np.broadcast_to(spec.low, spec.shape), np.broadcast_to(spec.high, spec.shape)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError(f"cannot rescale unbounded actions (low={spec.low}, high={spec.high})")
        self.env, self._low, self._high = env, low.astype(np.float32), high.astype(np.float32)
        self._spec = ArraySpec(spec.shape, np.float32, -np.ones(spec.shape, np.float32),
                               np.ones(spec.shape, np.float32), name="action")

    @property
    def observation_spec(self):
        return self.env.observation_spec

    @property
    def action_spec(self):
        return self._spec

    @property
    def dt(self):
        return self.env.dt

    def reset(self, key=None):
        return self.env.reset(key)

    def step(self, state, action):
        action = np.clip(np.asarray(action, np.float32), -1.0, 1.0)
        return self.env.step(state, self._low + (action + 1.0) * 0.5 * (self._high - self._low))

    def close(self):
        self.env.close()

    def __repr__(self):
        return f"RescaleActions({self.env!r})"


def make_gym_env(env_id: str, **make_kwargs) -> HostEnv:
    """An autoresetting `FromGymnasium` env with its actions rescaled to [-1, 1] when needed."""
    from robojax.envs.gym_bridge import FromGymnasium

    env = FromGymnasium(env_id, autoreset=True, **make_kwargs)
    spec = env.action_spec
    if np.all(spec.low == -1.0) and np.all(spec.high == 1.0):
        return env
    return RescaleActions(env)


def is_gym_id(name: str) -> bool:
    import gymnasium

    return name in gymnasium.registry


# ---- jitted functions, cached per config so tests and resumed runs share compilations -----------
def _cpu() -> jax.Device:
    return jax.devices("cpu")[0]


@functools.lru_cache(maxsize=16)
def _policy_fns(config: SACConfig, action_dim: int):
    """(explore, deterministic) jitted on whatever device the params live on (the CPU for the actor)."""
    nets = make_networks(config, action_dim)

    def prep(policy, obs):
        params, obs_norm = policy
        obs = jnp.asarray(obs, jnp.float32)
        if config.normalize_observations:
            obs = normalizer.normalize(obs_norm, obs)
        return nets.actor.apply(params, obs)

    @jax.jit
    def explore(policy, obs, key):
        key, sub = jax.random.split(key)
        mean, log_std = prep(policy, obs)
        action, _ = sample_tanh_gaussian(mean, log_std, sub)
        return action, key

    @jax.jit
    def deterministic(policy, obs):
        mean, _ = prep(policy, obs)
        return deterministic_action(mean)

    return explore, deterministic


@functools.lru_cache(maxsize=16)
def _learn_fn(config: SACConfig):
    """One learner update step: sample `utd_ratio` minibatches (half demo with demos), update."""
    from robojax.agents.sac.train import sample_update_batches

    @jax.jit
    def learn(state: learner.TrainState, online: ReplayBuffer, demo: ReplayBuffer | None, key):
        key, sub = jax.random.split(key)
        batches = sample_update_batches(sub, online, demo, config)
        state, metrics = learner.update(state, batches)
        return state, metrics, key

    return learn


_insert = jax.jit(replay.insert, donate_argnums=0)
_update_normalizer = jax.jit(learner.update_observation_normalizer)


def _insert_numpy(buffer: ReplayBuffer, batch: Transition) -> ReplayBuffer:
    """Insert a numpy batch in power-of-two chunks, so the jitted insert compiles a few shapes only."""
    n, start = len(batch.reward), 0
    while start < n:
        size = 1 << min((n - start).bit_length() - 1, 10)
        buffer = _insert(buffer, jax.tree.map(lambda x: x[start:start + size], batch))
        start += size
    return buffer


def _stack(transitions: list[Transition]) -> Transition:
    return jax.tree.map(lambda *xs: np.stack(xs), *transitions)


# ---- metadata, checkpoints -----------------------------------------------------------------------
def run_metadata(env: HostEnv, config: HostTrainConfig) -> dict:
    return device_loop.run_metadata(env, config, fmt="robojax.sac.host_loop/1")


def resume_fingerprint(metadata: dict) -> dict:
    return device_loop.resume_fingerprint(metadata, RESUMABLE_CHANGES)


# ---- the loop ------------------------------------------------------------------------------------
class _Shared:
    """State shared between the threads; plain attributes are swapped atomically under the GIL."""

    def __init__(self):
        self.stop = threading.Event()  # everyone stops (error, target reached, caller)
        self.actor_done = threading.Event()  # the actor has pushed its last transition
        self.queue: queue.Queue = queue.Queue()
        self.policy: tuple | None = None  # (actor params, obs normaliser) on the CPU
        self.policy_version = 0
        self.updates = 0  # learner updates so far (read by the actor for its lead)
        self.errors: list[tuple[str, BaseException, str]] = []

    def fail(self, where: str, error: BaseException) -> None:
        self.errors.append((where, error, traceback.format_exc()))
        self.stop.set()


def train(
    config: HostTrainConfig,
    env_factory: HostEnvFactory | None = None,
    intervention: InterventionSource | None = None,
    eval_env_factory: HostEnvFactory | None = None,
) -> HostTrainResult:
    """Run (or resume) SAC with the threaded host loop and return the final evaluation.

    env_factory: `() -> HostEnv`, autoresetting, with actions in [-1, 1] and the episode-statistics
      info keys (`FromGymnasium(..., autoreset=True)` has them). Default: `make_gym_env(config.env)`.
    eval_env_factory: the evaluation env (default: env_factory).
    intervention: polled every actor step; its actions replace the policy's (see interventions.py).
    """
    start = time.perf_counter()
    make_env = env_factory or functools.partial(make_gym_env, config.env)
    workdir = os.path.abspath(config.workdir) if config.workdir else None
    checkpointer = None
    if workdir:
        checkpointer = runs.open_checkpointer(workdir, resume=config.resume, keep=config.checkpoints_to_keep)
    env = eval_env = None
    try:
        env = make_env()
        eval_env = (eval_env_factory or make_env)()
        return _HostLoop(config, env, eval_env, intervention, workdir, checkpointer, start).run()
    finally:
        for e in (env, eval_env):
            if e is not None:
                e.close()
        if checkpointer:
            checkpointer.close()  # waits for asynchronous saves


class _HostLoop:
    def __init__(self, config, env, eval_env, intervention, workdir, checkpointer, start):
        self.config, self.env, self.eval_env = config, env, eval_env
        self.intervention, self.workdir, self.checkpointer, self.start = intervention, workdir, checkpointer, start
        self.first_iteration_s: float | None = None
        learner.check_action_spec(env.action_spec)
        obs_spec, action_spec = env.observation_spec, env.action_spec
        self.action_dim = action_spec.shape[0]
        self.metadata = run_metadata(env, config)
        example = Transition.example(obs_spec.shape, action_spec.shape)
        learner_key, self.actor_key, self.update_key, self.eval_key = jax.random.split(
            jax.random.PRNGKey(config.seed), 4
        )
        self.state = learner.init(learner_key, obs_spec, action_spec, config.sac)
        self.replay = replay.init(example, config.replay_capacity)
        self.demo = replay.init(example, config.demo_capacity)
        self.env_steps = self.updates = self.interventions = self.episodes = 0
        if config.demo_path is not None:
            demos = load_demos(config.demo_path, obs_spec.shape, action_spec.shape)
            if len(demos.reward) > config.demo_capacity:
                raise ValueError(
                    f"the demo file holds {len(demos.reward)} transitions but demo_capacity is"
                    f" {config.demo_capacity}; raise it"
                )
            self.demo = _insert_numpy(self.demo, jax.tree.map(np.asarray, demos))
        if checkpointer and config.resume:
            self._restore(checkpointer.latest_step())
        self.shared = _Shared()
        self.shared.updates = self.updates
        self.explore, self.deterministic = _policy_fns(config.sac, self.action_dim)
        self.learn = _learn_fn(config.sac)
        self.eval_history: list[dict] = []
        self.last_eval: dict | None = None
        self.train_returns: list[float] = []
        self.last_metrics = None

    # -- checkpoints --
    def _counters(self) -> dict:
        return {
            "env_steps": jnp.asarray(self.env_steps, jnp.int32),
            "updates": jnp.asarray(self.updates, jnp.int32),
            "interventions": jnp.asarray(self.interventions, jnp.int32),
            "episodes": jnp.asarray(self.episodes, jnp.int32),
        }

    def _core(self) -> dict:
        return {"learner": self.state, "counters": self._counters(),
                "keys": {"actor": self.actor_key, "update": self.update_key}}

    def save(self) -> None:
        extras = {"buffers": {"replay": self.replay, "demo": self.demo}} if self.config.checkpoint_replay else None
        self.checkpointer.save(self.env_steps, self._core(), extras=extras, metadata=self.metadata)

    def _restore(self, step: int) -> None:
        cp = self.checkpointer
        ckpt.check_compatible(resume_fingerprint(cp.read_metadata(step)), resume_fingerprint(self.metadata),
                              where=cp.step_path(step))
        buffers_template = {"replay": self.replay, "demo": self.demo}
        core, extras = cp.restore(self._core(), step=step, extras={"buffers": buffers_template})
        self.state = core["learner"]
        counters = {k: int(v) for k, v in core["counters"].items()}
        self.env_steps, self.updates = counters["env_steps"], counters["updates"]
        self.interventions, self.episodes = counters["interventions"], counters["episodes"]
        self.actor_key, self.update_key = core["keys"]["actor"], core["keys"]["update"]
        buffers = extras.get("buffers")
        if buffers is None:
            absl_logging.warning("checkpoint %s has no replay buffers: resuming with empty ones", cp.step_path(step))
        else:
            self.replay, self.demo = buffers["replay"], buffers["demo"]
        absl_logging.info("resumed at env step %d from %s", self.env_steps, cp.directory)

    # -- publishing params to the actor --
    def publish(self) -> None:
        policy = (self.state.actor_params, self.state.obs_normalizer)
        # A copy on the CPU: the actor never shares a buffer with the learner's state.
        self.shared.policy = jax.device_put(jax.tree.map(lambda x: jnp.array(x, copy=True), policy), _cpu())
        self.shared.policy_version += 1

    # -- actor thread --
    def actor(self) -> None:
        shared, config, env = self.shared, self.config, self.env
        try:
            rng = np.random.default_rng([config.seed, self.env_steps])
            key = jax.device_put(self.actor_key, _cpu())
            env_state: EnvState = env.reset(int(rng.integers(2**31)))
            steps = self.env_steps  # the actor's own count, ahead of the learner's by the queue
            while steps < config.total_env_steps and not shared.stop.is_set():
                # Keep the collecting policy fresh: wait while too far ahead of the updates.
                while (steps - config.learning_starts - shared.updates > config.max_actor_lead
                       and not shared.stop.is_set()):
                    time.sleep(0.0005)
                obs = np.asarray(env_state.obs, np.float32)
                if steps < config.learning_starts or shared.policy is None:
                    action = rng.uniform(-1.0, 1.0, self.action_dim).astype(np.float32)
                else:
                    action, key = self.explore(shared.policy, obs, key)
                    action = np.asarray(action)
                intervened = False
                if self.intervention is not None:
                    override = self.intervention.poll(obs)
                    if override is not None:
                        action = self.env.action_spec.validate(
                            np.asarray(override, np.float32).reshape(self.action_dim), "intervention action"
                        ).astype(np.float32)
                        action = np.clip(action, -1.0, 1.0)
                        intervened = True
                env_state = env.step(env_state, action)
                info = env_state.info
                shared.queue.put((
                    Transition(
                        obs=obs,
                        action=action,
                        reward=np.float32(env_state.reward),
                        next_obs=np.asarray(info["final_obs"], np.float32),
                        terminated=np.bool_(env_state.terminated),
                        truncated=np.bool_(env_state.truncated),
                        intervention=np.bool_(intervened),
                    ),
                    float(info["episode_return"]) if bool(info.get("episode_done", False)) else None,
                ))
                steps += 1
        except BaseException as e:  # noqa: BLE001 - reported to the caller by the main thread
            shared.fail("actor", e)
        finally:
            shared.actor_done.set()

    # -- learner thread --
    def drain(self, block: bool) -> int:
        """Move everything in the staging queue into the buffers; returns the number moved."""
        items = []
        try:
            items.append(self.shared.queue.get(timeout=0.01) if block else self.shared.queue.get_nowait())
            while True:
                items.append(self.shared.queue.get_nowait())
        except queue.Empty:
            pass
        if not items:
            return 0
        batch = _stack([t for t, _ in items])
        self.replay = _insert_numpy(self.replay, batch)
        mask = batch.intervention
        if mask.any():
            self.demo = _insert_numpy(self.demo, jax.tree.map(lambda x: x[mask], batch))
            self.interventions += int(mask.sum())
        if self.config.sac.normalize_observations:
            self.state = _update_normalizer(self.state, batch.obs)
        for _, ret in items:
            if ret is not None:
                self.train_returns.append(ret)
                self.episodes += 1
        before, self.env_steps = self.env_steps, self.env_steps + len(items)
        self.after_insert(before)
        return len(items)

    def after_insert(self, before: int) -> None:
        config, steps = self.config, self.env_steps
        self.progress.update(steps)
        if runs.crossed(before, steps, config.log_interval):
            self.log_training(steps)
        done = steps >= config.total_env_steps
        if runs.crossed(before, steps, config.eval_interval) or done:
            self.evaluate()
            if (config.target_eval_return is not None
                    and self.last_eval["eval/return"] >= config.target_eval_return):
                self.shared.stop.set()
        if self.checkpointer and runs.crossed(before, steps, config.checkpoint_interval) and not done:
            self.save()  # the buffers hold every transition counted so far (the queue was just drained)

    def target_updates(self) -> int:
        return max(0, self.env_steps - self.config.learning_starts + 1) if self.env_steps >= self.config.learning_starts else 0

    def learner_loop(self) -> None:
        shared, config = self.shared, self.config
        try:
            if self.updates > 0 or self.env_steps >= config.learning_starts:
                self.publish()
            while True:
                finishing = shared.stop.is_set() or shared.actor_done.is_set()
                moved = self.drain(block=not finishing and self.updates >= self.target_updates())
                if finishing and moved == 0 and shared.queue.empty():
                    break
                # Updates, one per stored env step (after learning_starts); drain between them.
                for _ in range(8):
                    if self.updates >= self.target_updates() or shared.stop.is_set():
                        break
                    demo = self.demo if int(self.demo.size) > 0 else None
                    first = self.first_iteration_s is None
                    t0 = time.perf_counter()
                    self.state, self.last_metrics, self.update_key = self.learn(
                        self.state, self.replay, demo, self.update_key
                    )
                    if first:  # the first update compiles it; later ones overlap with the actor
                        jax.block_until_ready(self.state)
                        self.first_iteration_s = time.perf_counter() - t0
                    self.updates += 1
                    shared.updates = self.updates
                    if self.updates % config.publish_interval == 0 or shared.policy is None:
                        self.publish()
        except BaseException as e:  # noqa: BLE001
            shared.fail("learner", e)

    # -- evaluation and logging (learner thread) --
    def evaluate(self) -> dict:
        config = self.config
        policy = jax.device_put((self.state.actor_params, self.state.obs_normalizer), _cpu())
        rng = np.random.default_rng([config.seed, 1, self.env_steps])
        returns, successes = [], []
        for _ in range(config.eval_episodes):
            env_state = self.eval_env.reset(int(rng.integers(2**31)))
            total, success = 0.0, False
            for _ in range(config.eval_max_steps):
                action = np.asarray(self.deterministic(policy, np.asarray(env_state.obs, np.float32)))
                env_state = self.eval_env.step(env_state, action)
                total += float(env_state.reward)
                if bool(env_state.info.get("episode_done", env_state.terminated | env_state.truncated)):
                    success = bool(env_state.info.get("episode_success", False))
                    break
            returns.append(total)
            successes.append(success)
        record = {
            "eval/return": float(np.mean(returns)),
            "eval/return_std": float(np.std(returns)),
            "eval/success": float(np.mean(successes)),
            "env_steps": self.env_steps,
            "updates": self.updates,
            "wall_s": time.perf_counter() - self.start,
        }
        self.logger.write(self.env_steps, record)
        self.eval_history.append(record)
        self.last_eval = record
        self.progress.set_eval_return(record["eval/return"])
        return record

    def log_training(self, steps: int) -> None:
        now = time.perf_counter()
        t0, s0, u0 = self._rate_mark
        record = {
            "env_steps": steps,
            "updates": self.updates,
            "interventions": self.interventions,
            "env_steps_per_s": (steps - s0) / max(now - t0, 1e-9),
            "updates_per_s": (self.updates - u0) / max(now - t0, 1e-9),
            "queue_size": self.shared.queue.qsize(),
            "wall_s": now - self.start,
        }
        self._rate_mark = (now, steps, self.updates)
        if self.train_returns:
            record["train/episode_return"] = float(np.mean(self.train_returns))
            record["train/episodes"] = len(self.train_returns)
            self.train_returns = []
        if self.last_metrics is not None:
            record.update({k: float(v) for k, v in jax.device_get(self.last_metrics).items()})
        self.logger.write(steps, record)

    # -- orchestration (caller's thread) --
    def run(self) -> HostTrainResult:
        config, workdir = self.config, self.workdir
        resume_step = self.env_steps if config.resume else None
        if workdir:
            runs.write_json(os.path.join(workdir, "config.json"), self.metadata)
        self.progress = rlog.ProgressBar(config.total_env_steps, initial=self.env_steps, enabled=config.progress_bar)
        sinks: list[rlog.MetricsSink] = [
            rlog.StdoutSink(keys=("eval/return", "eval/success"), print_fn=self.progress.write)
        ]
        if workdir:
            sinks.append(rlog.JsonlSink(os.path.join(workdir, "metrics.jsonl"), resume_step=resume_step))
            sinks.append(rlog.TensorBoardSink(os.path.join(workdir, "tensorboard"), purge_step=resume_step))
        self.logger = rlog.MetricsLogger(sinks)
        self.eval_history = [r for r in self.logger.history() if "eval/return" in r]
        self._rate_mark = (time.perf_counter(), self.env_steps, self.updates)
        threads = [
            threading.Thread(target=self.actor, name="robojax-sac-actor", daemon=True),
            threading.Thread(target=self.learner_loop, name="robojax-sac-learner", daemon=True),
        ]
        interrupted = False
        try:
            for t in threads:
                t.start()
            try:
                while any(t.is_alive() for t in threads):
                    for t in threads:
                        t.join(timeout=0.1)
            except KeyboardInterrupt:
                interrupted = True  # stop, then drain and checkpoint below before re-raising
            finally:
                self.shared.stop.set()
                for t in threads:
                    t.join()
                if self.intervention is not None:
                    self.intervention.close()
            learner_failed = any(where == "learner" for where, _, _ in self.shared.errors)
            if not learner_failed:
                while self.drain(block=False):  # the threads are gone: take what is left in the queue
                    pass
                if not interrupted and (self.last_eval is None or self.last_eval["env_steps"] != self.env_steps):
                    self.evaluate()
                if self.checkpointer and self.checkpointer.latest_step() != self.env_steps:
                    self.save()  # after the final drain: every collected transition is stored
            if interrupted:
                raise KeyboardInterrupt
            if self.shared.errors:
                where, error, trace = self.shared.errors[0]
                raise HostLoopError(
                    f"the host loop's {where} thread failed with {type(error).__name__}: {error}\n"
                    f"(threads stopped; {self.env_steps} transitions stored"
                    f"{', checkpoint saved' if self.checkpointer and not learner_failed else ''})\n"
                    f"{where} traceback:\n{trace}"
                ) from error
        finally:
            self.progress.close()
            self.logger.close()
        if workdir:
            policy = {"actor_params": self.state.actor_params, "obs_normalizer": self.state.obs_normalizer}
            ckpt.save_policy(os.path.join(workdir, "policy"), policy, self.metadata)
            rlog.plot_learning_curve(os.path.join(workdir, "metrics.jsonl"), os.path.join(workdir, "learning_curve.png"))
        return HostTrainResult(
            final_return=self.last_eval["eval/return"],
            final_success=self.last_eval.get("eval/success"),
            eval_history=self.eval_history,
            steps=self.env_steps,
            updates=self.updates,
            interventions=self.interventions,
            wall_s=time.perf_counter() - self.start,
            first_iteration_s=self.first_iteration_s or 0.0,
            workdir=workdir,
            learner_state=self.state,
            replay=self.replay,
            demo=self.demo,
        )
