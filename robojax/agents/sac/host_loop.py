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
import queue
import threading
import time
import traceback
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging as absl_logging

from robojax import runs
from robojax.agents.sac import learner
from robojax.agents.sac import train as device_loop
from robojax.agents.sac.config import HOST_SAC_DEFAULTS, HostTrainConfig, SACConfig  # noqa: F401 - re-exported
from robojax.agents.sac.interventions import InterventionSource
from robojax.data import replay
from robojax.data.demos import load_demos
from robojax.data.replay import ReplayBuffer, Transition
from robojax.envs.core import EnvState, HostEnv
from robojax.envs.host import make_gym_env
from robojax.evaluation import evaluate_host

HostEnvFactory = Callable[[], HostEnv]

RESUMABLE_CHANGES = device_loop.RESUMABLE_CHANGES + ("log_interval", "max_actor_lead", "publish_interval")


class HostLoopError(RuntimeError):
    """An actor or learner thread of the host loop failed; `__cause__` is the original exception."""


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


# ---- jitted functions, cached per config so tests and resumed runs share compilations -----------
def _cpu() -> jax.Device:
    return jax.devices("cpu")[0]


def _build_policy(params, *, config, action_dim, deterministic):
    """`learner.policy` of (actor params, obs normaliser): what the actor and the evaluation run."""
    return learner.policy(params, deterministic, config=config, action_dim=action_dim)


@functools.lru_cache(maxsize=16)
def _policy_fns(config, action_dim: int):
    """(evaluation build, explore): the deterministic `params -> Policy` (one object per config, so
    `evaluate_host` compiles its step once) and the actor's jitted exploration step."""
    deterministic = functools.partial(_build_policy, config=config, action_dim=action_dim, deterministic=True)
    stochastic = functools.partial(_build_policy, config=config, action_dim=action_dim, deterministic=False)

    @jax.jit
    def explore(params, obs, key):
        key, sub = jax.random.split(key)
        action, _ = stochastic(params).step((), obs, sub)
        return action, key

    return deterministic, explore


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


_update_normalizer = jax.jit(learner.update_observation_normalizer)


# ---- metadata, checkpoints -----------------------------------------------------------------------
def run_metadata(env: HostEnv, config: HostTrainConfig) -> dict:
    return device_loop.run_metadata(env, config, fmt="robojax.sac.host_loop/1")


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
      info keys (the `robojax.envs.host` stack; `FromGymnasium(..., autoreset=True)` has them).
      Default: `make_gym_env(config.env)`.
    eval_env_factory: the evaluation env (default: env_factory).
    intervention: polled every actor step; its actions replace the policy's (see interventions.py).
    """
    make_env = env_factory or functools.partial(make_gym_env, config.env)
    with device_loop.open_run(config, RESUMABLE_CHANGES) as run:
        env = eval_env = None
        try:
            env = make_env()
            eval_env = (eval_env_factory or make_env)()
            return _HostLoop(config, env, eval_env, intervention, run).run()
        finally:
            for e in (env, eval_env):
                if e is not None:
                    e.close()


class _HostLoop:
    def __init__(self, config, env, eval_env, intervention, run: runs.Run):
        self.config, self.env, self.eval_env = config, env, eval_env
        self.intervention, self.run_ = intervention, run
        learner.check_action_spec(env.action_spec)
        obs_spec, action_spec = env.observation_spec, env.action_spec
        self.action_dim = action_spec.shape[0]
        run.describe(run_metadata(env, config))
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
            self.demo = replay.insert_numpy(self.demo, jax.tree.map(np.asarray, demos))
        if run.resuming:
            self._restore()
        self.shared = _Shared()
        self.shared.updates = self.updates
        self.build_eval_policy, self.explore = _policy_fns(config.sac, self.action_dim)
        self.learn = _learn_fn(config.sac)
        self.train_returns: list[float] = []
        self.last_metrics = None
        self.first_update_done = False

    # -- checkpoints --
    def _counters(self) -> dict:
        return {
            "env_steps": jnp.asarray(self.env_steps, jnp.int32),
            "updates": jnp.asarray(self.updates, jnp.int32),
            "interventions": jnp.asarray(self.interventions, jnp.int32),
            "episodes": jnp.asarray(self.episodes, jnp.int32),
        }

    def _core(self) -> dict:
        return {
            "learner": self.state,
            "counters": self._counters(),
            "keys": {"actor": self.actor_key, "update": self.update_key},
        }

    def save(self) -> None:
        extras = {"buffers": {"replay": self.replay, "demo": self.demo}} if self.config.checkpoint_replay else None
        self.run_.save(self.env_steps, self._core(), extras=extras)

    def _restore(self) -> None:
        buffers_template = {"replay": self.replay, "demo": self.demo}
        core, extras = self.run_.restore(self._core(), extras={"buffers": buffers_template})
        self.state = core["learner"]
        counters = {k: int(v) for k, v in core["counters"].items()}
        self.env_steps, self.updates = counters["env_steps"], counters["updates"]
        self.interventions, self.episodes = counters["interventions"], counters["episodes"]
        self.actor_key, self.update_key = core["keys"]["actor"], core["keys"]["update"]
        buffers = extras.get("buffers")
        checkpointer = self.run_.checkpointer
        if buffers is None:
            absl_logging.warning(
                "checkpoint %s has no replay buffers: resuming with empty ones",
                checkpointer.step_path(checkpointer.latest_step()),
            )
        else:
            self.replay, self.demo = buffers["replay"], buffers["demo"]
        absl_logging.info("resumed at env step %d from %s", self.env_steps, checkpointer.directory)

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
                while (
                    steps - config.learning_starts - shared.updates > config.max_actor_lead and not shared.stop.is_set()
                ):
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
                shared.queue.put(
                    (
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
                    )
                )
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
        batch = replay.stack([t for t, _ in items])
        self.replay = replay.insert_numpy(self.replay, batch)
        mask = batch.intervention
        if mask.any():
            self.demo = replay.insert_numpy(self.demo, jax.tree.map(lambda x: x[mask], batch))
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
        config, steps, run = self.config, self.env_steps, self.run_
        run.advance(steps)
        if run.crossed(before, steps, config.log_interval):
            self.log_training(steps)
        done = steps >= config.total_env_steps
        if run.crossed(before, steps, config.eval_interval) or done:
            record = self.evaluate()
            if config.target_eval_return is not None and record["eval/return"] >= config.target_eval_return:
                self.shared.stop.set()
        if run.checkpoint_due(before, steps, config.checkpoint_interval) and not done:
            self.save()  # the buffers hold every transition counted so far (the queue was just drained)

    def target_updates(self) -> int:
        return (
            max(0, self.env_steps - self.config.learning_starts + 1)
            if self.env_steps >= self.config.learning_starts
            else 0
        )

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
                    t0 = time.perf_counter()
                    self.state, self.last_metrics, self.update_key = self.learn(
                        self.state, self.replay, demo, self.update_key
                    )
                    if not self.first_update_done:  # it compiles; later ones overlap with the actor
                        jax.block_until_ready(self.state)
                        self.run_.advance(self.env_steps, seconds=time.perf_counter() - t0)
                        self.first_update_done = True
                    self.updates += 1
                    shared.updates = self.updates
                    if self.updates % config.publish_interval == 0 or shared.policy is None:
                        self.publish()
        except BaseException as e:  # noqa: BLE001
            shared.fail("learner", e)

    # -- evaluation and logging (learner thread) --
    def evaluate(self) -> dict:
        """The deterministic policy on the evaluation env (`evaluation.evaluate_host`), logged."""
        config = self.config
        params = jax.device_put((self.state.actor_params, self.state.obs_normalizer), _cpu())
        out = evaluate_host(
            self.build_eval_policy,
            params,
            self.eval_env,
            episodes=config.eval_episodes,
            max_steps=config.eval_max_steps,
            seed=[config.seed, 1, self.env_steps],
        )
        record = {
            "eval/return": float(np.mean(out["return"])),
            "eval/return_std": float(np.std(out["return"])),
            "eval/success": float(np.mean(out["success"])),
            "env_steps": self.env_steps,
            "updates": self.updates,
            "wall_s": self.run_.elapsed(),
        }
        return self.run_.log_eval(self.env_steps, record)

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
            "wall_s": self.run_.elapsed(),
        }
        self._rate_mark = (now, steps, self.updates)
        if self.train_returns:
            record["train/episode_return"] = float(np.mean(self.train_returns))
            record["train/episodes"] = len(self.train_returns)
            self.train_returns = []
        if self.last_metrics is not None:
            record.update({k: float(v) for k, v in jax.device_get(self.last_metrics).items()})
        self.run_.log(steps, record)

    # -- orchestration (caller's thread) --
    def run(self) -> HostTrainResult:
        run = self.run_
        run.start(step=self.env_steps, total=self.config.total_env_steps)
        self._rate_mark = (time.perf_counter(), self.env_steps, self.updates)
        threads = [
            threading.Thread(target=self.actor, name="robojax-sac-actor", daemon=True),
            threading.Thread(target=self.learner_loop, name="robojax-sac-learner", daemon=True),
        ]
        interrupted = False
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
            last_eval = run.last_eval
            if not interrupted and (last_eval is None or last_eval["env_steps"] != self.env_steps):
                self.evaluate()
            if run.checkpointer and run.checkpointer.latest_step() != self.env_steps:
                self.save()  # after the final drain: every collected transition is stored
        if interrupted:
            raise KeyboardInterrupt
        if self.shared.errors:
            where, error, trace = self.shared.errors[0]
            raise HostLoopError(
                f"the host loop's {where} thread failed with {type(error).__name__}: {error}\n"
                f"(threads stopped; {self.env_steps} transitions stored"
                f"{', checkpoint saved' if run.checkpointer and not learner_failed else ''})\n"
                f"{where} traceback:\n{trace}"
            ) from error
        run.finish(policy={"actor_params": self.state.actor_params, "obs_normalizer": self.state.obs_normalizer})
        record = run.record()
        return HostTrainResult(
            final_return=record.final_eval["eval/return"],
            final_success=record.final_eval.get("eval/success"),
            updates=self.updates,
            interventions=self.interventions,
            **record.result_fields(steps=self.env_steps),
            learner_state=self.state,
            replay=self.replay,
            demo=self.demo,
        )
