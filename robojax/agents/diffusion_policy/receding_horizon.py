"""Diffusion Policy's receding-horizon inference, as a `robojax.policy.Policy` (on `robojax.policy.receding_horizon`).

The policy executes one action per call and replans every `action_steps` (Ta) calls: by full
DDPM, DDIM with k steps, or RTI (the first chunk cold, later ones warm-started from the shifted
previous chunk at step K', see `rti.py`). Its carry (`PolicyCarry`: the shared `ChunkCarry` with
no plan_info) holds

    obs_history [B, To, obs_dim]  raw observations, oldest first (B = 1 for the single-env policy)
    chunk       [B, Tp, A]        the current plan in the model's (normalised) action space
    index       ()  int32         position in the chunk of the next action to execute
    has_chunk   ()  bool          False at an episode start

The single-env policy is what export writes; its `batched(n)` replans n envs on one shared clock,
so a batch runs the denoiser only on replanning steps (a vmap of the single-env step would run it
on every step, its `lax.cond` becoming a select). Training's evaluator, saved-policy evaluation and
export all build the policy here. Everything is traceable: parameters and normalisers may be jit
arguments, so one compiled evaluator serves a whole training run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robojax.agents.diffusion_policy import rti
from robojax.agents.diffusion_policy.config import DiffusionPolicyConfig, InferenceConfig
from robojax.agents.diffusion_policy.learner import Normalizers, TrainState, actions_from_model, schedule_of
from robojax.agents.diffusion_policy.networks import global_condition, make_denoiser
from robojax.diffusion import samplers
from robojax.envs.core import ArraySpec
from robojax.policy import ChunkCarry, Policy, receding_horizon, spec_action_bounds

# The carry is the shared receding-horizon one (robojax.policy.ChunkCarry, plan_info empty).
PolicyCarry = ChunkCarry


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
    return tuple(cold[0]), cold[1], tuple(warm[0]), warm[1]


def warm_starts(config: DiffusionPolicyConfig, inference: InferenceConfig) -> bool:
    """Whether later chunks start from the shifted previous one (RTI on a diffusion policy)."""
    return inference.inference == "rti" and config.objective == "diffusion"


def function_evaluations(config: DiffusionPolicyConfig, inference: InferenceConfig) -> dict:
    """Denoiser calls counted structurally (lengths of the step lists): first chunk, later chunks, per action."""
    cold_steps, _, warm_steps, _ = inference_timesteps(config, inference)
    n_exec = inference.resolved_action_steps(config)
    per_chunk = len(warm_steps) if config.objective == "diffusion" else 1
    return {
        "first_chunk": len(cold_steps),
        "per_chunk": per_chunk,
        "per_action": per_chunk / n_exec,
        "action_steps": n_exec,
    }


def action_chunking(config: DiffusionPolicyConfig, inference: InferenceConfig) -> dict:
    """The sidecar's description of the chunked policy: horizons, inference mode, step lists, NFE."""
    cold_steps, cold_method, warm_steps, warm_method = inference_timesteps(config, inference)
    nfe = function_evaluations(config, inference)
    return {
        "chunk_length": config.pred_horizon,  # Tp
        "executed_steps": nfe["action_steps"],  # Ta: actions executed per plan
        "obs_horizon": config.obs_horizon,  # To
        "objective": config.objective,
        "inference": inference.inference if config.objective == "diffusion" else "direct",
        "cold_method": cold_method,
        "cold_timesteps": list(cold_steps),
        "warm_start": warm_starts(config, inference),
        "warm_method": warm_method,
        "warm_timesteps": list(warm_steps),
        "nfe_first_chunk": nfe["first_chunk"],
        "nfe_per_chunk": nfe["per_chunk"],
        "nfe_per_action": nfe["per_action"],
    }


def _receding_horizon(
    params,
    normalizers: Normalizers,
    config: DiffusionPolicyConfig,
    inference: InferenceConfig,
    obs_dim: int,
    action_dim: int,
    low,
    high,
    dtype,
    batch_size: int | None,
):
    """(init_carry, step, plan) for one env (batch_size None: obs [obs_dim]) or B envs on one clock."""
    denoiser = make_denoiser(config)
    schedule = schedule_of(config)
    To, Tp, A = config.obs_horizon, config.pred_horizon, action_dim
    n_exec = inference.resolved_action_steps(config)
    discrete = normalizers.discrete_dims
    handling = inference.resolved_discrete(config)
    cold_steps, cold_method, warm_steps, warm_method = inference_timesteps(config, inference)
    warm_start = warm_starts(config, inference)
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

    def plan_for_carry(history, carry, key, fresh):
        if warm_start:
            new = jax.lax.cond(
                fresh, lambda: plan(history, carry.chunk, key, False), lambda: plan(history, carry.chunk, key, True)
            )
        else:
            new = plan(history, carry.chunk, key, False)
        return new, ()

    def to_action(x):
        action = actions_from_model(x, normalizers, config)
        action = rti.binarize_discrete(action, discrete)
        return jnp.clip(action, low, high).astype(dtype)

    init_carry, step = receding_horizon(
        plan_for_carry,
        to_action,
        obs_dim=obs_dim,
        action_dim=A,
        obs_horizon=To,
        pred_horizon=Tp,
        action_steps=n_exec,
        batch_size=batch_size,
    )
    return init_carry, step, plan


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
    action_dtype: Any = np.float32,
    name: str = "",
) -> Policy:
    """The single-env receding-horizon policy (pass the EMA parameters for evaluation).

    `step` takes obs [obs_dim] and returns action [action_dim]; `batch_policy(policy, n)` gives the
    shared-clock batch. extras: "nfe" (`function_evaluations`), "cold_timesteps", "warm_timesteps",
    and "plan" (`plan(obs_history, previous_chunk, key, warm) -> chunk`, the form's own planner).
    """
    inference.check_against(config)
    low = jnp.asarray(action_low, jnp.float32)
    high = jnp.asarray(action_high, jnp.float32)
    cold_steps, _, warm_steps, _ = inference_timesteps(config, inference)
    nfe = function_evaluations(config, inference)

    def form(batch_size):
        return _receding_horizon(
            params, normalizers, config, inference, int(obs_dim), int(action_dim), low, high, action_dtype, batch_size
        )

    init_carry, step, plan = form(None)
    single = Policy(
        init_carry=init_carry,
        step=step,
        name=name,
        stochastic=config.objective == "diffusion",
        action_chunking=action_chunking(config, inference),
        evals_per_action=nfe["per_action"],
        extras={"nfe": nfe, "cold_timesteps": cold_steps, "warm_timesteps": warm_steps, "plan": plan},
    )

    def batched(n: int) -> Policy:
        init_carry, step, plan = form(int(n))
        return dataclasses.replace(
            single,
            init_carry=init_carry,
            step=step,
            batched=None,
            batch_size=int(n),
            extras={**single.extras, "plan": plan},
        )

    return dataclasses.replace(single, batched=batched)


def receding_horizon_policy(
    params: Any,
    normalizers: Normalizers,
    config: DiffusionPolicyConfig,
    inference: InferenceConfig,
    observation_spec: ArraySpec,
    action_spec: ArraySpec,
    *,
    name: str = "",
) -> Policy:
    """`make_policy` for an env's specs: actions clipped to the action spec's bounds, in its dtype."""
    return make_policy(
        params,
        normalizers,
        config,
        inference,
        observation_spec.shape[0],
        action_spec.shape[0],
        **spec_action_bounds(action_spec),
        name=name,
    )


def policy_from_state(state: TrainState, inference: InferenceConfig, *, use_ema: bool = True, **kwargs) -> Policy:
    """`make_policy` with a TrainState's (EMA) parameters and normalisers."""
    params = state.ema_params if use_ema else state.params
    return make_policy(params, state.normalizers, state.config, inference, state.obs_dim, state.action_dim, **kwargs)
