"""DDPM and DDIM reverse steps and a `lax.scan` sampler over a static timestep list.

DDPM: Ho et al. 2020. DDIM: Song et al. 2021 (eta = 0). Matches diffusers' FlaxDDPMScheduler (variance_type
"fixed_small") and FlaxDDIMScheduler (set_alpha_to_one=True, steps_offset=0, "leading" spacing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from robojax.diffusion.schedules import NoiseSchedule, predict_epsilon, predict_x0

SAMPLING_METHODS = ("ddpm", "ddim")


def ddpm_timesteps(schedule: NoiseSchedule) -> tuple[int, ...]:
    """Every training step, T-1 .. 0 (full DDPM ancestral sampling)."""
    return tuple(range(schedule.num_train_timesteps - 1, -1, -1))


def ddim_timesteps(schedule: NoiseSchedule, num_inference_steps: int) -> tuple[int, ...]:
    """k decreasing steps with diffusers' "leading" spacing: (k-1, ..., 1, 0) * (T // k)."""
    T = schedule.num_train_timesteps
    if not isinstance(num_inference_steps, (int, np.integer)) or not 1 <= num_inference_steps <= T:
        raise ValueError(f"num_inference_steps must be an int in [1, {T}], got {num_inference_steps!r}")
    ratio = T // int(num_inference_steps)
    return tuple(int(i) * ratio for i in range(int(num_inference_steps) - 1, -1, -1))


def _alpha_bar(schedule: NoiseSchedule, t: jax.Array) -> jax.Array:
    """alpha_bar_t, with alpha_bar_{-1} = 1 (the clean sample; diffusers' set_alpha_to_one)."""
    t = jnp.asarray(t, jnp.int32)
    return jnp.where(t >= 0, schedule.alphas_cumprod[jnp.maximum(t, 0)], jnp.ones((), schedule.alphas_cumprod.dtype))


def _clip(schedule: NoiseSchedule, x0: jax.Array) -> jax.Array:
    if schedule.clip_sample:
        return jnp.clip(x0, -schedule.clip_sample_range, schedule.clip_sample_range)
    return x0


def ddpm_posterior(
    schedule: NoiseSchedule, x0: jax.Array, x_t: jax.Array, t: jax.Array, t_prev: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Mean and variance of q(x_{t_prev} | x_t, x0) (DDPM Eqs. 6-7); t_prev defaults to t-1, and -1 means x0.

    For t_prev < t-1 the one-step beta_t is replaced by 1 - alpha_bar_t / alpha_bar_{t_prev} (the same Gaussian
    posterior between two non-adjacent steps; diffusers' DDPMScheduler with custom timesteps does the same).
    """
    t = jnp.asarray(t, jnp.int32)
    t_prev = t - 1 if t_prev is None else jnp.asarray(t_prev, jnp.int32)
    abar_t = _alpha_bar(schedule, t)
    abar_prev = _alpha_bar(schedule, t_prev)
    # Adjacent steps use the stored beta_t exactly (bit-for-bit with diffusers), others the effective beta.
    beta_t = jnp.where(t_prev == t - 1, schedule.betas[t], 1.0 - abar_t / abar_prev)
    alpha_t = 1.0 - beta_t
    # DDPM Eq. 7: mu~ = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t
    x0_coef = jnp.sqrt(abar_prev) * beta_t / (1.0 - abar_t)
    x_t_coef = jnp.sqrt(alpha_t) * (1.0 - abar_prev) / (1.0 - abar_t)
    mean = x0_coef * x0 + x_t_coef * x_t
    # DDPM Eq. 7: beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t ("fixed_small"), floored as diffusers does.
    variance = jnp.maximum((1.0 - abar_prev) / (1.0 - abar_t) * beta_t, 1e-20)
    return mean, variance


def ddpm_step(
    schedule: NoiseSchedule,
    model_output: jax.Array,
    t: jax.Array,
    x_t: jax.Array,
    key: jax.Array,
    t_prev: jax.Array | None = None,
) -> jax.Array:
    """One ancestral step x_t -> x_{t_prev} (t_prev = t-1 by default): posterior mean + sqrt(beta~) z, no noise into x0.

    The model's x0 estimate (DDPM Eq. 15) is clipped to +-clip_sample_range when clip_sample is set.
    """
    t = jnp.asarray(t, jnp.int32)
    t_prev = t - 1 if t_prev is None else jnp.asarray(t_prev, jnp.int32)
    x0_hat = _clip(schedule, predict_x0(schedule, model_output, x_t, t))
    mean, variance = ddpm_posterior(schedule, x0_hat, x_t, t, t_prev)
    noise = jax.random.normal(key, x_t.shape, x_t.dtype)
    # DDPM Algorithm 2, line 4: z = 0 on the final step.
    return mean + jnp.where(t_prev >= 0, jnp.sqrt(variance), 0.0) * noise


def ddim_step(
    schedule: NoiseSchedule, model_output: jax.Array, t: jax.Array, t_prev: jax.Array, x_t: jax.Array
) -> jax.Array:
    """Deterministic DDIM step x_t -> x_{t_prev} (DDIM Eq. 12, sigma = 0); t_prev = -1 returns the x0 estimate."""
    t = jnp.asarray(t, jnp.int32)
    abar_prev = _alpha_bar(schedule, t_prev)
    eps = predict_epsilon(schedule, model_output, x_t, t)  # from the unclipped x0, as diffusers does
    x0_hat = _clip(schedule, predict_x0(schedule, model_output, x_t, t))
    # DDIM Eq. 12: x_{t-1} = sqrt(abar_{t-1}) x0_hat + sqrt(1 - abar_{t-1}) eps_theta
    return jnp.sqrt(abar_prev) * x0_hat + jnp.sqrt(1.0 - abar_prev) * eps


def validate_timesteps(schedule: NoiseSchedule, timesteps: Sequence[int]) -> tuple[int, ...]:
    """Check a step list is a non-empty, strictly decreasing tuple of Python ints in [0, T)."""
    try:
        steps = tuple(int(t) for t in timesteps)
    except TypeError:  # also a traced array (ConcretizationTypeError is a TypeError)
        raise ValueError(
            f"timesteps must be a static sequence of Python ints, got {timesteps!r}; under jit close over the "
            "tuple or mark it static"
        ) from None
    T = schedule.num_train_timesteps
    if not steps:
        raise ValueError("timesteps is empty; pass e.g. ddim_timesteps(schedule, 10) or (2, 1, 0)")
    if any(not 0 <= t < T for t in steps):
        raise ValueError(f"timesteps {steps} must lie in [0, {T - 1}] (num_train_timesteps={T})")
    if any(a <= b for a, b in zip(steps, steps[1:])):
        raise ValueError(f"timesteps {steps} must be strictly decreasing")
    return steps


def sample(
    denoise_fn: Callable[[jax.Array, jax.Array], jax.Array],
    schedule: NoiseSchedule,
    x_start: jax.Array,
    key: jax.Array | None,
    *,
    timesteps: Sequence[int],
    method: str = "ddim",
) -> jax.Array:
    """Denoise x_start through the static step list and return x0.

    x_start is taken as x_{timesteps[0]} as given: pure noise for a cold start from T-1, or a warm-start guess
    at an intermediate K' (RTI-DP feeds the shifted previous chunk without re-noising). Step i goes from
    timesteps[i] to timesteps[i+1]; the last step goes to the clean sample. denoise_fn(x_t, t) gets t as a
    scalar int32 array. key is only used by "ddpm" (None is allowed for "ddim").
    """
    if method not in SAMPLING_METHODS:
        raise ValueError(f"unknown sampling method {method!r}; choose from {SAMPLING_METHODS}")
    steps = validate_timesteps(schedule, timesteps)
    ts = jnp.asarray(steps, jnp.int32)
    t_prevs = jnp.asarray(steps[1:] + (-1,), jnp.int32)
    if method == "ddpm":
        if key is None:
            raise ValueError("method='ddpm' adds noise and needs a PRNG key")
        keys = jax.random.split(key, len(steps))
    else:
        keys = jnp.zeros((len(steps),), jnp.uint32)  # unused placeholder so both methods share one scan

    def body(x_t, inputs):
        t, t_prev, step_key = inputs
        model_output = denoise_fn(x_t, t)
        if method == "ddpm":
            x_prev = ddpm_step(schedule, model_output, t, x_t, step_key, t_prev)
        else:
            x_prev = ddim_step(schedule, model_output, t, t_prev, x_t)
        return x_prev.astype(x_t.dtype), None

    x0, _ = jax.lax.scan(body, x_start, (ts, t_prevs, keys))
    return x0
