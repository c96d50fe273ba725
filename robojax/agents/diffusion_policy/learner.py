"""Diffusion Policy learner (Chi et al. 2023) with RTI warm-started inference (Duan et al. 2025).

Training (`update`, Chi et al. Sec. II-B, Eq. 5), per minibatch of windows (O_t, A_t^0):
  normalise O_t (fitted per dim on the dataset) and A_t^0 (min/max to [-1, 1]; gripper dims left
  at +-1, or divided by `discrete_action_scale` for RTI-DP-scale);
  k ~ U{0..K-1}, eps ~ N(0, I), A^k = sqrt(abar_k) A^0 + sqrt(1 - abar_k) eps;
  minimise || eps - eps_theta(O_t, A^k, k) ||^2 with AdamW (cosine schedule, linear warm-up);
  EMA of the weights for evaluation (Chi et al.'s EMAModel: decay 1 - (1 + step)^-power).
The MSE baseline (`objective="mse"`) uses the same backbone at fixed input (A = 0, k = 0) and
regresses A^0 directly: one network call per chunk, and it averages the modes of the data.

Inference (`make_policy`): a receding-horizon policy with a carry (obs history, current chunk in
model space, index in the chunk, has_chunk) that executes one action per call and replans every
`action_steps` calls: by full DDPM, DDIM with k steps, or RTI (the first chunk cold, later ones
warm-started from the shifted previous chunk at step K', see `rti.py`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from robojax.agents.diffusion_policy import losses, rti
from robojax.agents.diffusion_policy.config import DiffusionPolicyConfig, InferenceConfig
from robojax.agents.diffusion_policy.networks import global_condition, make_denoiser
from robojax.data.windows import MinMaxNormalizer
from robojax.diffusion import samplers
from robojax.diffusion.schedules import NoiseSchedule, make_schedule, q_sample, training_target

Metrics = dict[str, jax.Array]


# --------------------------------------------------------------------------------------------- normalisation


@struct.dataclass
class ObsNormalizer:
    """(obs - offset) / scale per dim, fitted on the dataset (min/max to [-1, 1], or mean/std)."""

    offset: jax.Array
    scale: jax.Array

    @classmethod
    def fit(cls, observations, method: str = "min_max", eps: float = 1e-4) -> "ObsNormalizer":
        obs = np.asarray(observations, np.float32)
        obs = obs.reshape(-1, obs.shape[-1])
        if not np.all(np.isfinite(obs)):
            raise ValueError("observations contain NaN/inf; clean the dataset before fitting the normaliser")
        if method == "min_max":
            low, high = obs.min(0), obs.max(0)
            offset, scale = (high + low) / 2.0, (high - low) / 2.0
        elif method == "mean_std":
            offset, scale = obs.mean(0), obs.std(0)
        elif method == "none":
            offset, scale = np.zeros(obs.shape[-1]), np.ones(obs.shape[-1])
        else:
            raise ValueError(f"unknown observation normalisation {method!r}")
        # Constant dims (e.g. a fixed goal height) are only centred: no division by ~0.
        scale = np.where(scale > eps, scale, 1.0)
        return cls(jnp.asarray(offset, jnp.float32), jnp.asarray(scale, jnp.float32))

    def normalize(self, obs: jax.Array) -> jax.Array:
        return (obs - self.offset) / self.scale


@struct.dataclass
class Normalizers:
    """Observation and action normalisers; the action one is robojax.data's MinMaxNormalizer."""

    obs: ObsNormalizer
    action: MinMaxNormalizer

    @property
    def discrete_dims(self) -> tuple[int, ...]:
        return tuple(self.action.discrete_dims)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for a saved policy (discrete dims go in its metadata)."""
        return {
            "obs_offset": np.asarray(self.obs.offset), "obs_scale": np.asarray(self.obs.scale),
            "action_low": np.asarray(self.action.low), "action_high": np.asarray(self.action.high),
        }

    @classmethod
    def from_arrays(cls, arrays: dict, discrete_dims: Sequence[int]) -> "Normalizers":
        action = MinMaxNormalizer(
            jnp.asarray(arrays["action_low"], jnp.float32), jnp.asarray(arrays["action_high"], jnp.float32),
            tuple(int(d) for d in discrete_dims),
        )
        obs = ObsNormalizer(jnp.asarray(arrays["obs_offset"], jnp.float32), jnp.asarray(arrays["obs_scale"], jnp.float32))
        return cls(obs, action)


def fit_normalizers(
    observations, actions, config: DiffusionPolicyConfig, discrete_dims: Sequence[int] = ()
) -> Normalizers:
    """Fit both normalisers on a dataset's raw observations [N, obs_dim] and actions [N, A]."""
    action = MinMaxNormalizer.fit(actions, discrete_dims=tuple(discrete_dims))
    action = action.replace(low=jnp.asarray(action.low), high=jnp.asarray(action.high))
    return Normalizers(ObsNormalizer.fit(observations, config.obs_normalization), action)


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
    warmup = min(config.warmup_steps, max(config.total_grad_steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, warmup_steps=warmup, decay_steps=max(config.total_grad_steps, warmup + 1), end_value=0.0
    )


def optimizer(config: DiffusionPolicyConfig) -> optax.GradientTransformation:
    adamw = optax.adamw(
        learning_rate_schedule(config), b1=config.adam_b1, b2=config.adam_b2, eps=1e-8, weight_decay=config.weight_decay
    )
    if config.grad_clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), adamw)
    return adamw


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


# --------------------------------------------------------------------------------------------- inference


@struct.dataclass
class PolicyCarry:
    """Receding-horizon state between control steps (one env, or a batch with a shared replan clock)."""

    obs_history: jax.Array  # [(B,) To, obs_dim] raw observations, oldest first
    chunk: jax.Array  # [(B,) Tp, A] the current plan in the model's space
    index: jax.Array  # () int32: the chunk position of the next action to execute
    has_chunk: jax.Array  # () bool: False until the first plan (an episode start)


@dataclasses.dataclass(frozen=True)
class Policy:
    """`step(carry, obs, key) -> (action, carry)` executing one action per call; params are closed over.

    `init_carry()` is an episode start. `nfe` counts denoiser calls structurally (length of the step
    lists): first chunk, each later chunk, and per executed action in steady state.
    """

    init_carry: Callable[[], PolicyCarry]
    step: Callable[[PolicyCarry, jax.Array, jax.Array], tuple[jax.Array, PolicyCarry]]
    plan: Callable[..., jax.Array]
    nfe: dict
    cold_timesteps: tuple[int, ...]
    warm_timesteps: tuple[int, ...]
    action_steps: int


def inference_timesteps(
    config: DiffusionPolicyConfig, inference: InferenceConfig
) -> tuple[tuple[int, ...], str, tuple[int, ...], str]:
    """(cold step list, cold method, warm step list, warm method); warm equals cold except for RTI."""
    schedule = schedule_of(config)
    if config.objective == "mse":
        return (0,), "direct", (0,), "direct"
    if inference.inference == "ddpm":
        cold = (samplers.ddpm_timesteps(schedule), "ddpm")
    elif inference.inference == "ddim":
        cold = (samplers.ddim_timesteps(schedule, inference.ddim_steps), "ddim")
    elif inference.rti_first == "ddpm":
        cold = (samplers.ddpm_timesteps(schedule), "ddpm")
    else:
        cold = (samplers.ddim_timesteps(schedule, inference.ddim_steps), "ddim")
    if inference.inference == "rti":
        warm = (rti.warm_start_timesteps(inference.rti_start_step, inference.rti_steps), inference.rti_method)
    else:
        warm = cold
    return cold[0], cold[1], warm[0], warm[1]


def make_policy(
    params: Any,
    normalizers: Normalizers,
    config: DiffusionPolicyConfig,
    inference: InferenceConfig,
    obs_dim: int,
    action_dim: int,
    *,
    action_low: Any = -1.0,
    action_high: Any = 1.0,
    batch_size: int | None = None,
) -> Policy:
    """The deployable receding-horizon policy (pass the EMA parameters for evaluation).

    batch_size None: `step` takes obs [obs_dim] and returns action [action_dim] (the C5 export shape);
    an int: obs [B, obs_dim] -> actions [B, action_dim], all envs replanning on the same clock.
    """
    inference.check_against(config)
    denoiser = make_denoiser(config)
    schedule = schedule_of(config)
    To, Tp, A = config.obs_horizon, config.pred_horizon, action_dim
    n_exec = inference.resolved_action_steps(config)
    discrete = normalizers.discrete_dims
    handling = inference.resolved_discrete(config)
    cold_steps, cold_method, warm_steps, warm_method = inference_timesteps(config, inference)
    warm_start = inference.inference == "rti" and config.objective == "diffusion"
    low = jnp.asarray(action_low, jnp.float32)
    high = jnp.asarray(action_high, jnp.float32)
    B = 1 if batch_size is None else int(batch_size)

    def denoise_through(cond, x_start, key, steps, method):
        if method == "direct":  # the MSE baseline: one call at fixed input
            out = denoiser.apply(params, jnp.zeros_like(x_start), jnp.zeros((), jnp.int32), cond)
            return jnp.clip(out, -1.0, 1.0)
        return samplers.sample(
            lambda x, t: denoiser.apply(params, x, t, cond), schedule, x_start, key, timesteps=steps, method=method
        )

    def plan(obs_history, previous_chunk, key, warm: bool):
        """A new chunk [B, Tp, A] in model space; `warm` picks the RTI warm start (static)."""
        cond = global_condition(normalizers.obs.normalize(obs_history))
        noise_key, sample_key = jax.random.split(key)
        if warm:
            guess = rti.warm_start_guess(previous_chunk, n_exec, discrete, handling, inference.rti_clip_factor)
            return denoise_through(cond, guess, sample_key, warm_steps, warm_method)
        x_T = jax.random.normal(noise_key, (B, Tp, A), jnp.float32)
        return denoise_through(cond, x_T, sample_key, cold_steps, cold_method)

    def init_carry() -> PolicyCarry:
        return PolicyCarry(
            obs_history=jnp.zeros((B, To, obs_dim), jnp.float32),
            chunk=jnp.zeros((B, Tp, A), jnp.float32),
            index=jnp.zeros((), jnp.int32),
            has_chunk=jnp.zeros((), bool),
        )

    def step(carry: PolicyCarry, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, PolicyCarry]:
        single = batch_size is None
        history, chunk = carry.obs_history, carry.chunk
        obs = jnp.asarray(obs, jnp.float32)
        if single:  # the carry keeps a batch axis of 1
            obs = obs[None]
        fresh = ~carry.has_chunk
        # Episode start: the history is the first observation repeated (make_windows' padding).
        history = jnp.where(
            fresh, jnp.repeat(obs[:, None], To, axis=1), jnp.concatenate([history[:, 1:], obs[:, None]], axis=1)
        )
        need_plan = fresh | (carry.index >= n_exec)

        def replan(_):
            if warm_start:
                new = jax.lax.cond(
                    fresh, lambda: plan(history, chunk, key, False), lambda: plan(history, chunk, key, True)
                )
            else:
                new = plan(history, chunk, key, False)
            return new, jnp.zeros((), jnp.int32)

        chunk, index = jax.lax.cond(need_plan, replan, lambda _: (chunk, carry.index), None)
        x = jax.lax.dynamic_index_in_dim(chunk, index, axis=1, keepdims=False)  # [B, A]
        action = actions_from_model(x, normalizers, config)
        action = rti.binarize_discrete(action, discrete)
        action = jnp.clip(action, low, high)
        new_carry = PolicyCarry(history, chunk, index + 1, jnp.ones((), bool))
        return (action[0] if single else action), new_carry

    per_chunk = len(warm_steps) if config.objective == "diffusion" else 1
    nfe = {
        "first_chunk": len(cold_steps),
        "per_chunk": per_chunk,
        "per_action": per_chunk / n_exec,
        "action_steps": n_exec,
    }
    return Policy(init_carry, step, plan, nfe, tuple(cold_steps), tuple(warm_steps), n_exec)


def policy_from_state(
    state: TrainState, inference: InferenceConfig, *, use_ema: bool = True, **kwargs
) -> Policy:
    """`make_policy` with a TrainState's (EMA) parameters and normalisers."""
    params = state.ema_params if use_ema else state.params
    return make_policy(params, state.normalizers, state.config, inference, state.obs_dim, state.action_dim, **kwargs)
