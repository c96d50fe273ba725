"""EBT-Policy learner (Davies et al. 2025, on Gladstone et al.'s Energy-Based Transformers).

Training (`update`), per minibatch of windows (O_t, A_t):
  normalise O_t (fitted per dim on the dataset) and A_t (min/max to [-1, 1], gripper dims +-1);
  N ~ U{train_steps_min..train_steps_max}; a_0 ~ N(0, I);
  descend a_0 for N steps along -grad_a E_theta(O_t, a) (Nesterov look-ahead, step size
  alpha * U(1/s, s) * exp(E) / temperature, Langevin noise annealed; `descent.unroll`);
  loss = mean over steps of MSE(a_i, A_t) (or the last step's), back-propagated through the
  unroll (second order) or cut as the gradient mode says; AdamW with warm-up and cosine decay,
  gradient clipping; EMA of the weights for evaluation. log(alpha) is a parameter, learned with
  its own learning-rate multiple in EBT's S1 and frozen otherwise.

Inference (`plan`): a_0 ~ N(0, I) per sample (N samples per observation for best-of-N), K steps
or adaptive descent without noise or step-size randomisation, the lowest-energy plan kept, its
energy reported as the policy's uncertainty.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from robojax import optim
from robojax.agents.ebt_policy import descent, losses
from robojax.agents.ebt_policy.config import EBTPolicyConfig, InferenceConfig
from robojax.agents.ebt_policy.networks import make_energy_model
from robojax.data.normalizer import ChunkNormalizers

Metrics = dict[str, jax.Array]


def fit_normalizers(observations, actions, config: EBTPolicyConfig, discrete_dims=()) -> ChunkNormalizers:
    """Both normalisers fitted on a dataset's raw observations [N, obs_dim] and actions [N, A]."""
    return ChunkNormalizers.fit(observations, actions, config.obs_normalization, discrete_dims)


def check_model_actions(actions_model, what: str = "dataset actions") -> None:
    """Raise unless normalised actions lie in [-1, 1], where descent starts and the energy was trained."""
    x = np.asarray(actions_model)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} contain NaN/inf; clean the dataset")
    worst = float(np.max(np.abs(x))) if x.size else 0.0
    if worst > 1.0 + 1e-4:
        raise ValueError(
            f"{what} fall outside [-1, 1] after normalisation (max |a| = {worst:.3f}): EBT-Policy descends in"
            " that box; refit the normaliser on this dataset (a saved normaliser from another dataset does not"
            " cover it)"
        )


@struct.dataclass
class TrainState:
    """Everything the learner carries between updates; one pytree, saved whole by Orbax."""

    params: Any  # {"model": energy-model parameters, "log_alpha": () log step size}
    ema_params: Any
    opt_state: Any
    rng: jax.Array
    step: jax.Array
    normalizers: ChunkNormalizers
    config: EBTPolicyConfig = struct.field(pytree_node=False)
    obs_dim: int = struct.field(pytree_node=False)
    action_dim: int = struct.field(pytree_node=False)


def learning_rate_schedule(config: EBTPolicyConfig) -> optax.Schedule:
    return optim.warmup_cosine_schedule(config.learning_rate, config.warmup_steps, config.total_grad_steps)


def optimizer(config: EBTPolicyConfig) -> optax.GradientTransformation:
    """AdamW for the model; log(alpha) learned at lr x step_size_lr_multiplier (S1) or frozen."""
    model = optim.adamw(
        learning_rate_schedule(config), weight_decay=config.weight_decay, clip_norm=config.grad_clip_norm
    )
    if config.learnable_step_size:
        peak = config.learning_rate * config.step_size_lr_multiplier
        alpha = optim.adamw(optim.warmup_cosine_schedule(peak, config.warmup_steps, config.total_grad_steps))
    else:
        alpha = optax.set_to_zero()
    return optax.multi_transform({"model": model, "alpha": alpha}, {"model": "model", "log_alpha": "alpha"})


def init(
    key: jax.Array, obs_dim: int, action_dim: int, config: EBTPolicyConfig, normalizers: ChunkNormalizers
) -> TrainState:
    """Fresh energy-model parameters, log(alpha) = log(step_size), EMA equal to them, zeroed AdamW state."""
    param_key, rng = jax.random.split(key)
    model = make_energy_model(config, action_dim)
    obs = jnp.zeros((1, config.obs_horizon, obs_dim), jnp.float32)
    actions = jnp.zeros((1, config.pred_horizon, action_dim), jnp.float32)
    params = {
        "model": model.init(param_key, obs, actions),
        "log_alpha": jnp.asarray(np.log(config.step_size), jnp.float32),
    }
    return TrainState(
        params=params,
        ema_params=jax.tree.map(jnp.array, params),
        opt_state=optimizer(config).init(params),
        rng=rng,
        step=jnp.zeros((), jnp.int32),
        normalizers=normalizers,
        config=config,
        obs_dim=int(obs_dim),
        action_dim=int(action_dim),
    )


def energy_function(params, config: EBTPolicyConfig, action_dim: int, obs_normalized, *, dropout_key=None):
    """E(O, .) for a batch of normalised observation histories [B, To, D]: (a [B, Tp, A]) -> [B].

    The observation tokens are computed once and closed over; dropout is on when a key is given
    and the config has attention dropout.
    """
    model = make_energy_model(config, action_dim)
    train = dropout_key is not None and config.attention_dropout > 0
    rngs = {"dropout": dropout_key} if train else None
    tokens = model.apply(params["model"], obs_normalized, method=model.encode, deterministic=not train, rngs=rngs)

    def energy_fn(actions):
        return model.apply(params["model"], tokens, actions, method=model.energy, deterministic=not train, rngs=rngs)

    return energy_fn


def update(state: TrainState, batch: dict) -> tuple[TrainState, Metrics]:
    """One AdamW step on {obs [B, To, obs_dim], actions [B, Tp, A]} raw windows through the unrolled descent, then EMA."""
    config = state.config
    rng, steps_key, a0_key, unroll_key, dropout_key = jax.random.split(state.rng, 5)
    obs = state.normalizers.obs.normalize(batch["obs"])
    expert = state.normalizers.action.normalize(batch["actions"])
    m = config.train_samples
    if m > 1:  # M starts per window, consecutive: window i owns rows i*M .. i*M + M-1
        obs, expert = jnp.repeat(obs, m, axis=0), jnp.repeat(expert, m, axis=0)
    num_steps = jax.random.randint(steps_key, (), config.train_steps_min, config.train_steps_max + 1)
    a0 = jax.random.normal(a0_key, expert.shape, expert.dtype)

    def loss_fn(params):
        energy_fn = energy_function(params, config, state.action_dim, obs, dropout_key=dropout_key)
        out = descent.unroll(energy_fn, a0, unroll_key, num_steps, config, jnp.exp(params["log_alpha"]))
        errors = losses.step_errors(out.chunks, expert)
        loss = losses.unroll_loss(errors, out.mask, config.loss_steps, m)
        contrastive = jnp.zeros(())
        if config.contrastive_weight > 0:
            contrastive = losses.contrastive_loss(energy_fn(expert), energy_fn(jax.lax.stop_gradient(out.final)))
            loss = loss + config.contrastive_weight * contrastive
        return loss, (jnp.mean(errors, axis=1), out, contrastive)

    (loss, (errors, out, contrastive)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = optimizer(config).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    decay = optim.ema_decay(state.step, config.ema_power, config.ema_max_decay)
    ema_params = optim.ema_update(state.ema_params, params, decay)
    last = num_steps - 1
    metrics = {
        "loss": loss,
        "contrastive": contrastive,
        "first_step_mse": errors[0],
        "last_step_mse": errors[last],
        "energy_first": jnp.mean(out.energies[0]),
        "energy_last": jnp.mean(out.energies[last]),
        "descent_steps": num_steps.astype(jnp.float32),
        "step_size": jnp.exp(params["log_alpha"]),
        "grad_norm": optax.tree.norm(grads["model"]),
        "learning_rate": learning_rate_schedule(config)(state.step),
        "ema_decay": decay,
    }
    new_state = state.replace(params=params, ema_params=ema_params, opt_state=opt_state, rng=rng, step=state.step + 1)
    return new_state, metrics


def metric_names() -> tuple[str, ...]:
    return (
        "loss",
        "contrastive",
        "first_step_mse",
        "last_step_mse",
        "energy_first",
        "energy_last",
        "descent_steps",
        "step_size",
        "grad_norm",
        "learning_rate",
        "ema_decay",
    )


# --------------------------------------------------------------------------------------------- inference


def plan(
    params,
    normalizers: ChunkNormalizers,
    config: EBTPolicyConfig,
    inference: InferenceConfig,
    action_dim: int,
    obs_history: jax.Array,
    key: jax.Array,
    start: jax.Array | None = None,
) -> descent.Descent:
    """Plans for raw observation histories [B, To, obs_dim]: chunks [B, Tp, A] in the model's space.

    Each of the B rows descends `num_samples` chunks and keeps the lowest final energy; they start
    from N(0, I), or the first of them from `start` [B, Tp, A] (a warm start). The Descent's
    energy [B] is the kept plan's energy; steps [B] the steps it used.
    """
    obs = normalizers.obs.normalize(obs_history)
    B, n = obs.shape[0], inference.num_samples
    alpha = jnp.exp(params["log_alpha"])
    a_key, descend_key = jax.random.split(key)
    a0 = jax.random.normal(a_key, (B, n, config.pred_horizon, action_dim))
    if start is not None:
        a0 = a0.at[:, 0].set(start)
    if n == 1:
        energy_fn = energy_function(params, config, action_dim, obs)
        return descent.descend(energy_fn, a0[:, 0], descend_key, config, inference, alpha)
    energy_fn = energy_function(params, config, action_dim, jnp.repeat(obs, n, axis=0))
    kept, _ = descent.best_of_n(lambda a: descent.descend(energy_fn, a, descend_key, config, inference, alpha), a0)
    return kept


def plan_while(
    params,
    normalizers: ChunkNormalizers,
    config: EBTPolicyConfig,
    inference: InferenceConfig,
    action_dim: int,
    obs_history: jax.Array,
    key: jax.Array,
    start: jax.Array | None = None,
):
    """Adaptive planning for one observation history [1, To, D] as a while_loop: (chunk, energy, steps).

    Starts from N(0, I), or from `start` [1, Tp, A] (a warm start).
    """
    obs = normalizers.obs.normalize(obs_history)
    alpha = jnp.exp(params["log_alpha"])
    a_key, descend_key = jax.random.split(key)
    a0 = jax.random.normal(a_key, (obs.shape[0], config.pred_horizon, action_dim)) if start is None else start
    energy_fn = energy_function(params, config, action_dim, obs)
    return descent.descend_while(energy_fn, a0, descend_key, config, inference, alpha)


def plan_work(steps, samples):
    """Forward-pass equivalents of a plan: each descent step is a forward and a backward pass
    (~3 forwards), the kept plan's energy one forward more, times the samples descended."""
    return samples * (3 * steps + 1)


def energy_evaluations(inference: InferenceConfig) -> dict:
    """Network work of a cold plan, counted structurally (`plan_work` at its static step count)."""
    steps = inference.descent_length()
    return {
        "grad_steps": steps,
        "samples": inference.num_samples,
        "forward_equivalents": plan_work(steps, inference.num_samples),
    }


def plan_energies(
    params,
    normalizers: ChunkNormalizers,
    config: EBTPolicyConfig,
    inference: InferenceConfig,
    action_dim: int,
    obs_histories,
    key: jax.Array,
    batch_size: int = 256,
) -> np.ndarray:
    """The cold plan's energy [N] for each raw observation history [N, To, D] (threshold calibration)."""
    obs = np.asarray(obs_histories, np.float32)
    run = jax.jit(lambda o, k: plan(params, normalizers, config, inference, action_dim, o, k).energy)
    out = []
    for i, start in enumerate(range(0, len(obs), batch_size)):
        chunk = obs[start : start + batch_size]
        pad = batch_size - len(chunk)  # one compiled shape
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)]) if pad else chunk
        out.append(np.asarray(run(jnp.asarray(padded), jax.random.fold_in(key, i)))[: len(chunk)])
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def calibrate_energy_threshold(energies, quantile: float = 0.9) -> float:
    """The plan energy at `quantile` of held-out demo windows: plans above it are unusual for the demos."""
    energies = np.asarray(energies, np.float64)
    if energies.size == 0 or not np.all(np.isfinite(energies)):
        raise ValueError("energy-threshold calibration needs finite plan energies on at least one held-out window")
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"calibration quantile must be in (0, 1), got {quantile}")
    return float(np.quantile(energies, quantile))
