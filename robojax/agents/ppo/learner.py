"""PPO learner: init, one jitted iteration, a whole run as a pure function of a key, BC init.

One iteration (`make_iteration`):
  1. roll the policy out for `unroll_length` steps of the `num_envs` batched env (`lax.scan`),
     storing the observations *as the policy saw them* (normalised with the statistics of the
     iteration's start, so the first epoch's probability ratio is exactly 1);
  2. GAE(lambda) from V(obs) and V(info["final_obs"]), truncation-correct (`losses.gae`);
  3. merge the rollout's raw observations into the running normaliser (used from the next rollout on);
  4. `update_epochs` x `num_minibatches` Adam steps on shuffled minibatches (nested `lax.scan`),
     gradients clipped to `max_grad_norm`, the learning rate annealed linearly to 0 over the run.
A run (`make_train`) scans iterations inside one program, so `jax.jit(jax.vmap(make_train(env,
config)))(keys)` trains one independent seed per key at once (purejaxrl's trick).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from robojax.agents.ppo import losses
from robojax.agents.ppo.config import PPOConfig
from robojax.agents.ppo.networks import PPONetworks, make_networks
from robojax.data import normalizer
from robojax.data.normalizer import RunningMeanStd
from robojax.envs.core import ArraySpec, Env, EnvState
from robojax.evaluation import episode_length_of, make_episode_evaluator
from robojax.policy import Policy, stateless

Metrics = dict[str, jax.Array]
Evaluate = Callable[["TrainState", jax.Array], Metrics]


@struct.dataclass
class TrainState:
    """Everything a PPO run carries between iterations; one pytree (a leading seed axis when vmapped)."""

    params: dict  # {"policy": ..., "value": ...}
    opt_state: Any
    obs_normalizer: RunningMeanStd
    env_state: EnvState
    rng: jax.Array  # raw uint32 key: every random draw of the learner comes from here
    iteration: jax.Array  # int32, iterations done
    env_steps: jax.Array  # int32, transitions collected


@struct.dataclass
class Rollout:
    """One iteration's transitions, time-major (T, B, ...)."""

    obs: jax.Array  # normalised, as the policy saw it
    pre_action: jax.Array  # the Gaussian sample u (the env got it clipped or squashed)
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array  # normalised info["final_obs"]
    raw_obs: jax.Array


def optimizer(config: PPOConfig) -> optax.GradientTransformation:
    """Global-norm clipping, then Adam (eps 1e-5, as in PPO2), linearly annealed to 0 if asked."""
    lr: Any = config.learning_rate
    if config.anneal_lr:
        lr = optax.linear_schedule(
            config.learning_rate, 0.0, config.num_iterations * config.update_epochs * config.num_minibatches
        )
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(lr, eps=1e-5))


def check_env(env: Env, config: PPOConfig) -> None:
    """PPO trains on a batched, autoresetting env of exactly `num_envs` copies."""
    if env.batch_size != config.num_envs:
        raise ValueError(
            f"PPO needs a batched env of PPOConfig.num_envs = {config.num_envs} copies, got batch size"
            f" {env.batch_size}; build it with envs.make(name, num_envs={config.num_envs})"
        )


def init_params(key: jax.Array, networks: PPONetworks, obs_shape: tuple[int, ...]) -> dict:
    policy_key, value_key = jax.random.split(key)
    obs = jnp.zeros((1,) + tuple(obs_shape), jnp.float32)
    return {"policy": networks.policy.init(policy_key, obs), "value": networks.value.init(value_key, obs)}


def init(key: jax.Array, env: Env, config: PPOConfig) -> TrainState:
    """Fresh parameters and optimiser state, an empty normaliser and freshly reset envs."""
    check_env(env, config)
    networks = make_networks(config, env.action_spec)
    param_key, env_key, rng = jax.random.split(key, 3)
    params = init_params(param_key, networks, env.observation_spec.shape)
    return TrainState(
        params=params,
        opt_state=optimizer(config).init(params),
        obs_normalizer=RunningMeanStd.create(tuple(env.observation_spec.shape)),
        env_state=env.reset(env_key),
        rng=rng,
        iteration=jnp.zeros((), jnp.int32),
        env_steps=jnp.zeros((), jnp.int32),
    )


def normalize_obs(config: PPOConfig, obs_normalizer: RunningMeanStd, obs: jax.Array) -> jax.Array:
    """Observations as the networks see them (identity unless normalisation is on)."""
    if not config.normalize_observations:
        return obs
    return normalizer.normalize(obs_normalizer, obs)


def sample_action(
    networks: PPONetworks, policy_params: Any, obs: jax.Array, key: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(env action, pre-action u ~ pi(.|obs), log pi(u|obs)) for already-normalised observations."""
    mean, log_std = networks.policy.apply(policy_params, obs)
    pre_action = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)
    return networks.to_env_action(pre_action), pre_action, losses.gaussian_log_prob(mean, log_std, pre_action)


def deterministic_action(
    config: PPOConfig, action_spec: ArraySpec, policy_params: Any, obs_normalizer: RunningMeanStd, obs: jax.Array
) -> jax.Array:
    """Evaluation / deployment action: the policy mean, clipped or squashed onto the bounds.

    A pure function of the policy parameters, the normaliser and a raw (single or batched)
    observation; `config` and `action_spec` are static.
    """
    networks = make_networks(config, action_spec)
    mean, _ = networks.policy.apply(policy_params, normalize_obs(config, obs_normalizer, obs))
    return networks.to_env_action(mean)


def stochastic_action(
    config: PPOConfig,
    action_spec: ArraySpec,
    policy_params: Any,
    obs_normalizer: RunningMeanStd,
    obs: jax.Array,
    key: jax.Array,
) -> jax.Array:
    """Exploration action a ~ pi(.|obs) for a raw (single or batched) observation."""
    networks = make_networks(config, action_spec)
    action, _, _ = sample_action(networks, policy_params, normalize_obs(config, obs_normalizer, obs), key)
    return action


def _episode_metrics(info: dict) -> Metrics:
    """Mean return and success of the training episodes that finished in the rollout (EpisodeStatistics)."""
    if "episode_done" not in info:
        return {}
    done = info["episode_done"].astype(jnp.float32)
    count = jnp.sum(done)
    mean = lambda x: jnp.where(count > 0, jnp.sum(x * done) / jnp.maximum(count, 1.0), jnp.nan)
    return {
        "train/episodes": count,
        "train/episode_return": mean(info["episode_return"]),
        "train/episode_success": mean(info["episode_success"].astype(jnp.float32)),
    }


def make_iteration(
    env: Env, config: PPOConfig, value_only: bool = False
) -> Callable[[TrainState], tuple[TrainState, Metrics]]:
    """One jitted PPO iteration: rollout, GAE, normaliser update, epochs x minibatches of updates.

    value_only: update the value function only (the policy loss and entropy drop out of the
    objective, so the policy's gradients, Adam moments and parameters stay exactly as they were):
    the warm-up that keeps a behaviour-cloned policy from being wrecked by a random critic.
    Metrics are scalars; `train/episode_return` and `train/episode_success` average the training
    episodes that ended in this rollout (NaN when none did: episodes longer than `unroll_length`).
    """
    check_env(env, config)
    networks = make_networks(config, env.action_spec)
    tx = optimizer(config)

    def rollout(state: TrainState, key: jax.Array) -> tuple[EnvState, Rollout, dict]:
        def step(env_state: EnvState, step_key: jax.Array):
            obs = normalize_obs(config, state.obs_normalizer, env_state.obs)
            action, pre_action, log_prob = sample_action(networks, state.params["policy"], obs, step_key)
            value = networks.value.apply(state.params["value"], obs)
            nxt = env.step(env_state, action)
            transition = Rollout(
                obs=obs,
                pre_action=pre_action,
                log_prob=log_prob,
                value=value,
                reward=nxt.reward.astype(jnp.float32),
                terminated=nxt.terminated,
                truncated=nxt.truncated,
                final_obs=normalize_obs(config, state.obs_normalizer, nxt.info["final_obs"]),
                raw_obs=env_state.obs,
            )
            return nxt, (transition, nxt.info)

        env_state, (trajectory, infos) = jax.lax.scan(
            step, state.env_state, jax.random.split(key, config.unroll_length)
        )
        return env_state, trajectory, infos

    def loss_fn(params, minibatch):
        mean, log_std = networks.policy.apply(params["policy"], minibatch["obs"])
        log_prob = losses.gaussian_log_prob(mean, log_std, minibatch["pre_action"])
        advantages = minibatch["advantages"]
        if config.normalize_advantages:
            advantages = losses.normalize(advantages)
        policy_loss, clip_fraction = losses.clipped_surrogate_loss(
            log_prob, minibatch["log_prob"], advantages, config.clip_eps
        )
        values = networks.value.apply(params["value"], minibatch["obs"])
        value_loss = losses.value_loss(values, minibatch["value"], minibatch["targets"], config.value_clip_eps)
        entropy = jnp.mean(losses.gaussian_entropy(log_std))
        if value_only:
            total = config.vf_coef * value_loss
        else:
            total = policy_loss + config.vf_coef * value_loss - config.entropy_coef * entropy
        log_ratio = log_prob - minibatch["log_prob"]
        metrics = {
            "loss/total": total,
            "loss/policy": policy_loss,
            "loss/value": value_loss,
            "policy/entropy": entropy,
            "policy/std": jnp.mean(jnp.exp(log_std)),
            "policy/clip_fraction": clip_fraction,
            "policy/approx_kl": jnp.mean(jnp.expm1(log_ratio) - log_ratio),  # Schulman's k3 estimator
        }
        return total, metrics

    def minibatch_step(carry, minibatch):
        params, opt_state = carry
        grads, metrics = jax.grad(loss_fn, has_aux=True)(params, minibatch)
        if value_only:  # exact zeros already; made explicit so no optimiser term can move the policy
            grads = {**grads, "policy": jax.tree.map(jnp.zeros_like, grads["policy"])}
        updates, opt_state = tx.update(grads, opt_state, params)
        metrics["optim/grad_norm"] = optax.tree.norm(grads)
        return (optax.apply_updates(params, updates), opt_state), metrics

    def iteration(state: TrainState) -> tuple[TrainState, Metrics]:
        rng, rollout_key, shuffle_key = jax.random.split(state.rng, 3)
        env_state, trajectory, infos = rollout(state, rollout_key)
        next_values = networks.value.apply(state.params["value"], trajectory.final_obs)
        advantages, targets = losses.gae(
            trajectory.reward * config.reward_scaling,
            trajectory.value,
            next_values,
            trajectory.terminated,
            trajectory.truncated,
            config.discount,
            config.gae_lambda,
        )
        obs_normalizer = state.obs_normalizer
        if config.normalize_observations:
            obs_normalizer = normalizer.update(obs_normalizer, trajectory.raw_obs)

        batch = {
            "obs": trajectory.obs,
            "pre_action": trajectory.pre_action,
            "log_prob": trajectory.log_prob,
            "value": trajectory.value,
            "advantages": advantages,
            "targets": targets,
        }
        batch = jax.tree.map(lambda x: x.reshape((config.batch_size,) + x.shape[2:]), batch)

        def epoch(carry, key):
            permutation = jax.random.permutation(key, config.batch_size)
            minibatches = jax.tree.map(
                lambda x: x[permutation].reshape((config.num_minibatches, config.minibatch_size) + x.shape[1:]), batch
            )
            return jax.lax.scan(minibatch_step, carry, minibatches)

        (params, opt_state), update_metrics = jax.lax.scan(
            epoch, (state.params, state.opt_state), jax.random.split(shuffle_key, config.update_epochs)
        )
        new_state = state.replace(
            params=params,
            opt_state=opt_state,
            obs_normalizer=obs_normalizer,
            env_state=env_state,
            rng=rng,
            iteration=state.iteration + 1,
            env_steps=state.env_steps + config.batch_size,
        )
        metrics = {
            **jax.tree.map(jnp.mean, update_metrics),
            **_episode_metrics(infos),
            "value/mean": jnp.mean(trajectory.value),
            "value/target_mean": jnp.mean(targets),
            "env_steps": new_state.env_steps,
        }
        return new_state, metrics

    return jax.jit(iteration)


def bc_init(
    state: TrainState, dataset_obs: jax.Array, dataset_actions: jax.Array, config: PPOConfig, action_spec: ArraySpec
) -> tuple[TrainState, Metrics]:
    """Behaviour-clone the policy on demo (obs, action) pairs: `bc_steps` Adam steps on the Gaussian NLL.

    The mean is fitted to the pre-action that maps onto each demo action (`to_pre_action`) and the
    std learns the demos' spread (within the log-std clip). With normalisation on, the demo
    observations seed the running statistics first, so the policy is cloned on the input scale PPO
    will feed it. Only the policy (and the normaliser) change; the PPO optimiser state is untouched.
    Returns the new state and {"bc/nll": (bc_steps,) per-step losses}.
    """
    networks = make_networks(config, action_spec)
    dataset_obs = jnp.asarray(dataset_obs, jnp.float32)
    dataset_actions = jnp.asarray(dataset_actions, jnp.float32)
    if dataset_obs.shape[:1] != dataset_actions.shape[:1] or dataset_obs.shape[0] == 0:
        raise ValueError(
            f"bc_init needs as many observations as actions (and at least one), got {dataset_obs.shape[0]}"
            f" observations and {dataset_actions.shape[0]} actions"
        )
    if dataset_actions.shape[1:] != tuple(action_spec.shape):
        raise ValueError(f"bc_init actions have shape {dataset_actions.shape[1:]}, the env's are {action_spec.shape}")
    obs_normalizer = state.obs_normalizer
    if config.normalize_observations:
        obs_normalizer = normalizer.update(obs_normalizer, dataset_obs)
    inputs = normalize_obs(config, obs_normalizer, dataset_obs)
    targets = networks.to_pre_action(dataset_actions)
    tx = optax.adam(config.bc_learning_rate)
    count = dataset_obs.shape[0]

    def nll(policy_params, obs, target):
        mean, log_std = networks.policy.apply(policy_params, obs)
        return losses.gaussian_nll(mean, log_std, target)

    def step(carry, key):
        policy_params, opt_state = carry
        index = jax.random.randint(key, (config.bc_batch_size,), 0, count)
        loss, grads = jax.value_and_grad(nll)(policy_params, inputs[index], targets[index])
        updates, opt_state = tx.update(grads, opt_state, policy_params)
        return (optax.apply_updates(policy_params, updates), opt_state), loss

    rng, bc_key = jax.random.split(state.rng)
    policy_params = state.params["policy"]
    (policy_params, _), nlls = jax.lax.scan(
        step, (policy_params, tx.init(policy_params)), jax.random.split(bc_key, config.bc_steps)
    )
    new_state = state.replace(params={**state.params, "policy": policy_params}, obs_normalizer=obs_normalizer, rng=rng)
    return new_state, {"bc/nll": nlls}


def policy(
    config: PPOConfig,
    action_spec: ArraySpec,
    params: Any,
    obs_normalizer: RunningMeanStd,
    deterministic: bool = True,
    *,
    name: str = "ppo",
    action_dtype: Any = jnp.float32,
) -> Policy:
    """The PPO policy as a stateless `robojax.policy.Policy`: normalise -> Gaussian -> clip/tanh onto the bounds.

    params: the policy network's parameters (`state.params["policy"]`); they and the normaliser
    may be traced (a policy built inside a jit, as the evaluator does). deterministic: the mean
    (`deterministic_action`), else u ~ N(mean, std) drawn from the step's key (`stochastic_action`).
    The step takes one observation or any batch of them (one key draws the whole batch's noise), so
    the batched form is the same step. `normalization` describes the statistics for the artifact's
    sidecar (None when normalisation is off, or while the statistics are traced).
    """

    def act(obs, key):
        x = jnp.asarray(obs, jnp.float32)
        if deterministic:
            action = deterministic_action(config, action_spec, params, obs_normalizer, x)
        else:
            action = stochastic_action(config, action_spec, params, obs_normalizer, x, key)
        return action.astype(action_dtype)

    single = stateless(
        act,
        name=name,
        stochastic=not deterministic,
        normalization=normalizer.running_stats_record(obs_normalizer) if config.normalize_observations else None,
        action_chunking={"chunk_length": 1, "executed_steps": 1},
        evals_per_action=1,
    )
    return dataclasses.replace(single, batched=lambda n: dataclasses.replace(single, batch_size=int(n)))


def make_evaluator(eval_env: Env, config: PPOConfig) -> Evaluate:
    """evaluate(state, key): one episode per env of the batched `eval_env` with the deterministic policy.

    Built on `robojax.evaluation.make_episode_evaluator` (episodes of the env's own length).
    Returns {"eval/return", "eval/success"} (means over the batch). Pure, so it runs inside
    `make_train`'s program (and under its vmap over seeds).
    """
    action_spec = eval_env.action_spec
    episodes = make_episode_evaluator(
        eval_env,
        lambda state: policy(config, action_spec, state.params["policy"], state.obs_normalizer),
        episode_length=episode_length_of(eval_env),
    )

    def evaluate(state: TrainState, key: jax.Array) -> Metrics:
        out = episodes(state, key)
        return {"eval/return": jnp.mean(out["return"]), "eval/success": jnp.mean(out["success"].astype(jnp.float32))}

    return evaluate


def make_train(
    env: Env,
    config: PPOConfig,
    evaluate: Evaluate | None = None,
    demos: tuple[jax.Array, jax.Array] | None = None,
) -> Callable[[jax.Array], tuple[TrainState, Metrics]]:
    """The whole run as a pure function of a key: train(key) -> (final state, per-iteration metrics).

    Metrics have a leading axis of `num_iterations`. With `evaluate` (e.g. `make_evaluator`), the
    eval metrics are filled every `iterations_per_eval` iterations and at the last one, NaN
    elsewhere: the schedule comes from the scan index, not the state, so under `jax.vmap` over keys
    the evaluation stays a real `lax.cond` rather than running every iteration. With `demos`
    (obs, actions), the policy is behaviour-cloned first (`bc_init`, `config.bc_steps` steps).
    The first `value_warmup_iterations` iterations update the value only.
    Not jitted: call `jax.jit(make_train(...))(key)` or `jax.jit(jax.vmap(make_train(...)))(keys)`.
    """
    check_env(env, config)
    policy_iteration = make_iteration(env, config)
    warmup_iteration = make_iteration(env, config, value_only=True) if config.value_warmup_iterations else None
    last = config.num_iterations - 1

    def train(key: jax.Array) -> tuple[TrainState, Metrics]:
        init_key, eval_key = jax.random.split(key)
        state = init(init_key, env, config)
        if demos is not None and config.bc_steps:
            state, _ = bc_init(state, demos[0], demos[1], config, env.action_spec)

        def body(iteration_fn, state, index):
            state, metrics = iteration_fn(state)
            if evaluate is not None:

                def skipped(s):
                    shapes = jax.eval_shape(evaluate, s, eval_key)
                    return jax.tree.map(lambda x: jnp.full(x.shape, jnp.nan, x.dtype), shapes)

                due = ((index + 1) % config.iterations_per_eval == 0) | (index == last)
                evals = jax.lax.cond(due, lambda s: evaluate(s, jax.random.fold_in(eval_key, index)), skipped, state)
                metrics = {**metrics, **evals}
            return state, metrics

        warmup = config.value_warmup_iterations
        parts = []
        if warmup_iteration is not None:
            state, metrics = jax.lax.scan(functools.partial(body, warmup_iteration), state, jnp.arange(warmup))
            parts.append(metrics)
        state, metrics = jax.lax.scan(
            functools.partial(body, policy_iteration), state, jnp.arange(warmup, config.num_iterations)
        )
        parts.append(metrics)
        if len(parts) == 1:
            return state, metrics
        return state, jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)

    return train
