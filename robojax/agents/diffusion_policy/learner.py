"""Diffusion Policy learner (Chi et al. 2023) with RTI warm-started inference (Duan et al. 2025).

Training (`update`, Chi et al. Sec. II-B, Eq. 5), per minibatch of windows (O_t, A_t^0):
  normalise O_t (fitted per dim on the dataset) and A_t^0 (min/max to [-1, 1]; gripper dims left
  at +-1, or divided by `discrete_action_scale` for RTI-DP-scale);
  k ~ U{0..K-1}, eps ~ N(0, I), A^k = sqrt(abar_k) A^0 + sqrt(1 - abar_k) eps;
  minimise || eps - eps_theta(O_t, A^k, k) ||^2 with AdamW (cosine schedule, linear warm-up);
  EMA of the weights for evaluation (Chi et al.'s EMAModel: decay 1 - (1 + step)^-power).
The MSE baseline (`objective="mse"`) uses the same backbone at fixed input (A = 0, k = 0) and
regresses A^0 directly: one network call per chunk, and it averages the modes of the data.

Inference (the receding-horizon policy, RTI warm start included) lives in `receding_horizon.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from robojax import optim
from robojax.agents.diffusion_policy import losses, rti
from robojax.agents.diffusion_policy.config import DiffusionPolicyConfig
from robojax.agents.diffusion_policy.networks import global_condition, make_denoiser
from robojax.data.normalizer import ChunkNormalizers
from robojax.diffusion.schedules import NoiseSchedule, make_schedule, q_sample, training_target

Metrics = dict[str, jax.Array]


# --------------------------------------------------------------------------------------------- normalisation


# The shared chunk normalisers (robojax.data); the name stays for Diffusion Policy's callers.
Normalizers = ChunkNormalizers


def fit_normalizers(
    observations, actions, config: DiffusionPolicyConfig, discrete_dims: Sequence[int] = ()
) -> Normalizers:
    """Fit both normalisers on a dataset's raw observations [N, obs_dim] and actions [N, A]."""
    return ChunkNormalizers.fit(observations, actions, config.obs_normalization, discrete_dims)


def actions_to_model(actions: jax.Array, normalizers: Normalizers, config: DiffusionPolicyConfig) -> jax.Array:
    """Raw actions -> the model's space: min/max to [-1, 1], discrete dims divided by discrete_action_scale."""
    x = normalizers.action.normalize(actions)
    return rti.scale_discrete(x, normalizers.discrete_dims, config.discrete_action_scale)


def actions_from_model(x: jax.Array, normalizers: Normalizers, config: DiffusionPolicyConfig) -> jax.Array:
    """Inverse of `actions_to_model`."""
    x = rti.unscale_discrete(x, normalizers.discrete_dims, config.discrete_action_scale)
    return normalizers.action.unnormalize(x)


# --------------------------------------------------------------------------------------------- training


@struct.dataclass
class TrainState:
    """Everything the learner carries between updates; one pytree, saved whole by Orbax."""

    params: Any
    ema_params: Any
    opt_state: Any
    rng: jax.Array
    step: jax.Array
    normalizers: Normalizers
    config: DiffusionPolicyConfig = struct.field(pytree_node=False)
    obs_dim: int = struct.field(pytree_node=False)
    action_dim: int = struct.field(pytree_node=False)


def schedule_of(config: DiffusionPolicyConfig) -> NoiseSchedule:
    return make_schedule(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type=config.prediction_type,
        clip_sample=config.clip_sample,
    )


def learning_rate_schedule(config: DiffusionPolicyConfig) -> optax.Schedule:
    """Linear warm-up to the peak rate, then cosine decay to 0 at total_grad_steps (Chi et al. App. D)."""
    return optim.warmup_cosine_schedule(config.learning_rate, config.warmup_steps, config.total_grad_steps)


def optimizer(config: DiffusionPolicyConfig) -> optax.GradientTransformation:
    return optim.adamw(
        learning_rate_schedule(config),
        b1=config.adam_b1,
        b2=config.adam_b2,
        weight_decay=config.weight_decay,
        clip_norm=config.grad_clip_norm,
    )


def init(
    key: jax.Array, obs_dim: int, action_dim: int, config: DiffusionPolicyConfig, normalizers: Normalizers
) -> TrainState:
    """Fresh denoiser parameters, EMA equal to them, zeroed AdamW state."""
    param_key, rng = jax.random.split(key)
    denoiser = make_denoiser(config)
    sample = jnp.zeros((1, config.pred_horizon, action_dim), jnp.float32)
    cond = jnp.zeros((1, config.obs_horizon * obs_dim), jnp.float32)
    params = denoiser.init(param_key, sample, jnp.zeros((1,), jnp.int32), cond)
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


def update(state: TrainState, batch: dict) -> tuple[TrainState, Metrics]:
    """One AdamW step on a minibatch {obs [B, To, obs_dim], actions [B, Tp, A]} of raw windows, then EMA."""
    config = state.config
    denoiser = make_denoiser(config)
    schedule = schedule_of(config)
    rng, t_key, noise_key = jax.random.split(state.rng, 3)
    cond = global_condition(state.normalizers.obs.normalize(batch["obs"]))
    x0 = actions_to_model(batch["actions"], state.normalizers, config)
    batch_size = x0.shape[0]

    if config.objective == "diffusion":
        # Chi et al. Eq. 5: k ~ U{0..K-1}, A^k = q(A^0, k, eps), regress eps (or A^0).
        t = jax.random.randint(t_key, (batch_size,), 0, config.num_train_timesteps)
        noise = jax.random.normal(noise_key, x0.shape, x0.dtype)
        x_t = q_sample(schedule, x0, t, noise)
        target = training_target(schedule, x0, noise, t)

        def loss_fn(params):
            return losses.denoising_loss(denoiser.apply(params, x_t, t, cond), target)
    else:
        zeros, t0 = jnp.zeros_like(x0), jnp.zeros((batch_size,), jnp.int32)

        def loss_fn(params):
            return losses.chunk_regression_loss(denoiser.apply(params, zeros, t0, cond), x0)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = optimizer(config).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    decay = losses.ema_decay(state.step, config.ema_power, config.ema_max_decay)
    ema_params = losses.ema_update(state.ema_params, params, decay)
    metrics = {
        "loss": loss,
        "grad_norm": optax.tree.norm(grads),
        "learning_rate": learning_rate_schedule(config)(state.step),
        "ema_decay": decay,
    }
    new_state = state.replace(params=params, ema_params=ema_params, opt_state=opt_state, rng=rng, step=state.step + 1)
    return new_state, metrics


def metric_names() -> tuple[str, ...]:
    return ("loss", "grad_norm", "learning_rate", "ema_decay")
