"""SAC learner: init, act, and the update step, all pure and jittable.

Per update step (SERL's `update_high_utd`, RLPD Alg. 1, REDQ Alg. 1):
  1. `utd_ratio` critic updates in one `lax.scan`, each on its own minibatch:
       a' ~ pi(.|s'),  subset M of the N target critics drawn without replacement,
       y = r + gamma (1 - terminated) (min_M Qbar(s', a') - alpha log pi(a'|s')),
       minimise sum_i 1/2 (Q_i(s, a) - y)^2, then Polyak-average the target critics.
  2. one actor update: minimise alpha log pi(a~|s) - mean_N Q_i(s, a~), a~ ~ pi(.|s).
  3. one temperature update: minimise -alpha (log pi(a~|s) + target entropy).
Critic, actor and temperature have separate parameters and separate Adam states, so a critic
update leaves the actor's parameters *and* its optimiser moments untouched (SERL sums the three
optimisers over one shared tree, which keeps stepping the actor's Adam momentum on critic-only steps).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from robojax.agents.sac import losses
from robojax.agents.sac.config import SACConfig
from robojax.agents.sac.networks import SACNetworks, deterministic_action, make_networks, sample_tanh_gaussian
from robojax.data import normalizer
from robojax.data.normalizer import RunningMeanStd
from robojax.data.replay import Transition
from robojax.envs.core import ArraySpec
from robojax.nets import sample_ensemble_subset
from robojax.policy import Policy, stateless

Metrics = dict[str, jax.Array]


@struct.dataclass
class TrainState:
    """Everything a SAC learner carries between updates; one pytree, saved whole by Orbax."""

    actor_params: Any
    critic_params: Any  # leading axis N on every leaf
    target_critic_params: Any
    temperature_params: Any
    actor_opt_state: Any
    critic_opt_state: Any
    temperature_opt_state: Any
    obs_normalizer: RunningMeanStd
    rng: jax.Array  # raw uint32 key: every random draw of the learner comes from here
    critic_steps: jax.Array
    actor_steps: jax.Array
    config: SACConfig = struct.field(pytree_node=False)
    action_dim: int = struct.field(pytree_node=False)

    @property
    def networks(self) -> SACNetworks:
        return make_networks(self.config, self.action_dim)


def optimizers(config: SACConfig) -> tuple[optax.GradientTransformation, ...]:
    """(critic, actor, temperature) optimisers: three independent Adams."""
    return optax.adam(config.critic_lr), optax.adam(config.actor_lr), optax.adam(config.temperature_lr)


def check_action_spec(action_spec: ArraySpec) -> None:
    """SAC's tanh actor emits actions in [-1, 1]; refuse envs whose action bounds differ."""
    if not (np.all(action_spec.low == -1.0) and np.all(action_spec.high == 1.0)):
        raise ValueError(
            f"SAC needs actions bounded in [-1, 1], got low={action_spec.low}, high={action_spec.high};"
            " rescale the env's actions (robojax tasks already use [-1, 1])"
        )
    if len(action_spec.shape) != 1:
        raise ValueError(f"SAC needs a flat action vector, got action shape {action_spec.shape}")


def init(key: jax.Array, obs_spec: ArraySpec, action_spec: ArraySpec, config: SACConfig) -> TrainState:
    """Fresh parameters, target critics equal to the critics, and zeroed optimiser states."""
    check_action_spec(action_spec)
    action_dim = action_spec.shape[0]
    nets = make_networks(config, action_dim)
    actor_key, critic_key, rng = jax.random.split(key, 3)
    obs = jnp.zeros((1,) + tuple(obs_spec.shape), jnp.float32)
    action = jnp.zeros((1, action_dim), jnp.float32)
    actor_params = nets.actor.init(actor_key, obs)
    critic_params = nets.critic.init(critic_key, obs, action)
    temperature_params = nets.temperature.init(jax.random.PRNGKey(0))
    critic_tx, actor_tx, temperature_tx = optimizers(config)
    return TrainState(
        actor_params=actor_params,
        critic_params=critic_params,
        target_critic_params=critic_params,
        temperature_params=temperature_params,
        actor_opt_state=actor_tx.init(actor_params),
        critic_opt_state=critic_tx.init(critic_params),
        temperature_opt_state=temperature_tx.init(temperature_params),
        obs_normalizer=RunningMeanStd.create(tuple(obs_spec.shape)),
        rng=rng,
        critic_steps=jnp.zeros((), jnp.int32),
        actor_steps=jnp.zeros((), jnp.int32),
        config=config,
        action_dim=action_dim,
    )


def normalize_obs(state: TrainState, obs: jax.Array) -> jax.Array:
    """Observations as the networks see them (identity unless normalisation is on)."""
    if not state.config.normalize_observations:
        return obs
    return normalizer.normalize(state.obs_normalizer, obs)


def update_observation_normalizer(state: TrainState, obs: jax.Array) -> TrainState:
    """Merge a batch of raw observations into the running statistics (no-op when normalisation is off)."""
    if not state.config.normalize_observations:
        return state
    return state.replace(obs_normalizer=normalizer.update(state.obs_normalizer, obs))


def policy(
    source: TrainState | tuple[Any, RunningMeanStd],
    deterministic: bool = True,
    *,
    config: SACConfig | None = None,
    action_dim: int | None = None,
    name: str = "sac",
    normalization: dict | None = None,
    action_dtype: Any = jnp.float32,
) -> Policy:
    """The SAC actor as a stateless Policy: normalise -> actor -> tanh(mean), or a ~ pi(.|s).

    source: a TrainState, or (actor_params, obs_normalizer) with `config` and `action_dim` given.
    The step takes one observation or any batch of them (one key draws the noise of the whole
    batch), so its batched form is the same step; parameters may be traced (built inside a jit).
    normalization: the sidecar's description of the statistics (see export.make_policy).
    """
    if isinstance(source, TrainState):
        actor_params, obs_normalizer = source.actor_params, source.obs_normalizer
        config, action_dim = source.config, source.action_dim
    else:
        actor_params, obs_normalizer = source
        if config is None or action_dim is None:
            raise ValueError("learner.policy((actor_params, obs_normalizer), ...) needs config= and action_dim=")
    actor = make_networks(config, action_dim).actor

    def act(obs, key):
        x = jnp.asarray(obs, jnp.float32)
        if config.normalize_observations:
            x = normalizer.normalize(obs_normalizer, x)
        mean, log_std = actor.apply(actor_params, x)
        action = deterministic_action(mean) if deterministic else sample_tanh_gaussian(mean, log_std, key)[0]
        return action.astype(action_dtype)

    single = stateless(
        act,
        name=name,
        stochastic=not deterministic,
        normalization=normalization,
        action_chunking={"chunk_length": 1, "executed_steps": 1},
        evals_per_action=1,
    )
    return dataclasses.replace(single, batched=lambda n: dataclasses.replace(single, batch_size=int(n)))


def act(state: TrainState, obs: jax.Array, key: jax.Array) -> jax.Array:
    """Exploration action a ~ pi(.|s) for a single or batched observation."""
    return policy(state, deterministic=False).step((), obs, key)[0]


def act_deterministic(state: TrainState, obs: jax.Array) -> jax.Array:
    """Evaluation action tanh(mean) for a single or batched observation."""
    return policy(state, deterministic=True).step((), obs, None)[0]


def temperature(state: TrainState) -> jax.Array:
    """The current entropy temperature alpha."""
    return state.networks.temperature.apply(state.temperature_params)


def update_critic(state: TrainState, batch: Transition) -> tuple[TrainState, Metrics]:
    """One critic gradient step on the soft Bellman error, then a Polyak step of the target critics."""
    config, nets = state.config, state.networks
    rng, next_action_key, subset_key = jax.random.split(state.rng, 3)
    obs, next_obs = normalize_obs(state, batch.obs), normalize_obs(state, batch.next_obs)
    alpha = temperature(state)

    # a' ~ pi(.|s') from the current actor; Qbar from a random subset of M target critics.
    mean, log_std = nets.actor.apply(state.actor_params, next_obs)
    next_action, next_log_prob = sample_tanh_gaussian(mean, log_std, next_action_key)
    subset = sample_ensemble_subset(subset_key, config.critic_ensemble_size, config.critic_subset_size)
    subset_params = jax.tree.map(lambda p: p[subset], state.target_critic_params)
    next_q_subset = nets.critic_subset.apply(subset_params, next_obs, next_action)
    target = losses.critic_target(
        batch.reward, batch.terminated, next_q_subset, next_log_prob, alpha, config.discount, config.backup_entropy
    )

    def loss_fn(params):
        q = nets.critic.apply(params, obs, batch.action)
        return losses.critic_loss(q, target), q

    (loss, q), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.critic_params)
    critic_tx, _, _ = optimizers(config)
    updates, critic_opt_state = critic_tx.update(grads, state.critic_opt_state, state.critic_params)
    critic_params = optax.apply_updates(state.critic_params, updates)
    target_critic_params = optax.incremental_update(critic_params, state.target_critic_params, config.tau)
    metrics = {"critic_loss": loss, "q_mean": jnp.mean(q), "target_mean": jnp.mean(target)}
    new_state = state.replace(
        critic_params=critic_params,
        target_critic_params=target_critic_params,
        critic_opt_state=critic_opt_state,
        rng=rng,
        critic_steps=state.critic_steps + 1,
    )
    return new_state, metrics


def update_actor_and_temperature(state: TrainState, batch: Transition) -> tuple[TrainState, Metrics]:
    """One actor step (reparameterised, through the critic ensemble mean), then one temperature step."""
    config, nets = state.config, state.networks
    rng, action_key = jax.random.split(state.rng)
    obs = normalize_obs(state, batch.obs)
    alpha = temperature(state)

    def actor_loss_fn(params):
        mean, log_std = nets.actor.apply(params, obs)
        action, log_prob = sample_tanh_gaussian(mean, log_std, action_key)
        q = nets.critic.apply(state.critic_params, obs, action)
        return losses.actor_loss(log_prob, q, alpha), log_prob

    (actor_loss, log_prob), actor_grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(state.actor_params)
    _, actor_tx, temperature_tx = optimizers(config)
    updates, actor_opt_state = actor_tx.update(actor_grads, state.actor_opt_state, state.actor_params)
    actor_params = optax.apply_updates(state.actor_params, updates)

    target_entropy = config.resolved_target_entropy(state.action_dim)

    def temperature_loss_fn(params):
        return losses.temperature_loss(nets.temperature.apply(params), log_prob, target_entropy)

    temp_loss, temp_grads = jax.value_and_grad(temperature_loss_fn)(state.temperature_params)
    updates, temperature_opt_state = temperature_tx.update(
        temp_grads, state.temperature_opt_state, state.temperature_params
    )
    temperature_params = optax.apply_updates(state.temperature_params, updates)
    metrics = {
        "actor_loss": actor_loss,
        "entropy": -jnp.mean(log_prob),
        "temperature": alpha,
        "temperature_loss": temp_loss,
    }
    new_state = state.replace(
        actor_params=actor_params,
        actor_opt_state=actor_opt_state,
        temperature_params=temperature_params,
        temperature_opt_state=temperature_opt_state,
        rng=rng,
        actor_steps=state.actor_steps + 1,
    )
    return new_state, metrics


def update(state: TrainState, batches: Transition) -> tuple[TrainState, Metrics]:
    """`utd_ratio` critic updates (one per minibatch), then one actor and temperature update.

    batches: transitions with leading axes (utd_ratio, batch_size). The actor uses the last
    minibatch, as RLPD does.
    """
    num = jax.tree.leaves(batches)[0].shape[0]
    if num != state.config.utd_ratio:
        raise ValueError(f"update got {num} minibatches; utd_ratio is {state.config.utd_ratio}")
    state, critic_metrics = jax.lax.scan(update_critic, state, batches)
    last = jax.tree.map(lambda x: x[-1], batches)
    state, actor_metrics = update_actor_and_temperature(state, last)
    return state, {**jax.tree.map(jnp.mean, critic_metrics), **actor_metrics}


def metric_names() -> tuple[str, ...]:
    """Keys of the metrics dict `update` returns."""
    return ("critic_loss", "q_mean", "target_mean", "actor_loss", "entropy", "temperature", "temperature_loss")
