"""EBT-Policy's receding-horizon inference as a `robojax.policy.Policy` (on `robojax.policy.receding_horizon`).

Every `action_steps` (Ta) calls the policy plans a chunk by energy descent (`learner.plan`: K
steps or adaptive, best-of-N) and executes it one action per call. Its carry is the shared
`ChunkCarry` whose `plan_info` holds the current plan's energy and the descent steps it took, so
the energy (the policy's uncertainty) is available at every control step:

    obs_history [B, To, obs_dim], chunk [B, Tp, A], index (), has_chunk (),
    plan_info = {"energy": [B], "steps": [B] int32}

At batch 1 with adaptive descent the plan is a `lax.while_loop` that stops computing once the
gradient norm falls to the tolerance; the batched form (`batched(n)`) runs the masked scan.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from robojax.agents.ebt_policy import learner
from robojax.agents.ebt_policy.config import EBTPolicyConfig, InferenceConfig
from robojax.data.normalizer import ChunkNormalizers, binarize_discrete
from robojax.envs.core import ArraySpec
from robojax.policy import Policy, receding_horizon, spec_action_bounds


def action_chunking(config: EBTPolicyConfig, inference: InferenceConfig) -> dict:
    """The sidecar's description of the chunked policy: horizons and the energy-descent settings."""
    work = learner.energy_evaluations(inference)
    return {
        "chunk_length": config.pred_horizon,
        "executed_steps": inference.resolved_action_steps(config),
        "obs_horizon": config.obs_horizon,
        "inference": "ebt",
        "descent_steps": inference.inference_steps,
        "adaptive": inference.adaptive,
        "grad_tol": inference.grad_tol,
        "max_steps": inference.max_steps,
        "num_samples": inference.num_samples,
        "forward_equivalents_per_plan": work["forward_equivalents"],
    }


def make_policy(
    params: Any,
    normalizers: ChunkNormalizers,
    config: EBTPolicyConfig,
    inference: InferenceConfig,
    obs_dim: int,
    action_dim: int,
    *,
    action_low: Any = -1.0,
    action_high: Any = 1.0,
    action_dtype: Any = np.float32,
    name: str = "",
) -> Policy:
    """The single-env energy-descent policy (pass the EMA parameters for evaluation); `batched(n)` for n envs."""
    inference.check_against(config)
    low, high = jnp.asarray(action_low, jnp.float32), jnp.asarray(action_high, jnp.float32)
    n_exec = inference.resolved_action_steps(config)
    discrete = normalizers.discrete_dims
    work = learner.energy_evaluations(inference)

    def form(batch_size):
        B = 1 if batch_size is None else int(batch_size)
        use_while = batch_size is None and inference.adaptive and inference.num_samples == 1

        def plan(history, carry, key, fresh):
            if use_while:
                chunk, energy, steps = learner.plan_while(
                    params, normalizers, config, inference, action_dim, history, key
                )
            else:
                out = learner.plan(params, normalizers, config, inference, action_dim, history, key)
                chunk, energy, steps = out.chunk, out.energy, out.steps
            return jnp.clip(chunk, -1.0, 1.0), {"energy": energy, "steps": steps.astype(jnp.int32)}

        def to_action(x):
            action = binarize_discrete(normalizers.action.unnormalize(x), discrete)
            return jnp.clip(action, low, high).astype(action_dtype)

        return receding_horizon(
            plan,
            to_action,
            obs_dim=int(obs_dim),
            action_dim=int(action_dim),
            obs_horizon=config.obs_horizon,
            pred_horizon=config.pred_horizon,
            action_steps=n_exec,
            batch_size=batch_size,
            plan_info={"energy": jnp.zeros((B,), jnp.float32), "steps": jnp.zeros((B,), jnp.int32)},
        )

    init_carry, step = form(None)
    single = Policy(
        init_carry=init_carry,
        step=step,
        name=name,
        stochastic=True,  # initial chunks are drawn from N(0, I)
        action_chunking=action_chunking(config, inference),
        evals_per_action=work["forward_equivalents"] / n_exec,
        extras={"energy_evaluations": work},
    )

    def batched(n: int) -> Policy:
        init_carry, step = form(int(n))
        return dataclasses.replace(single, init_carry=init_carry, step=step, batched=None, batch_size=int(n))

    return dataclasses.replace(single, batched=batched)


def receding_horizon_policy(
    params: Any,
    normalizers: ChunkNormalizers,
    config: EBTPolicyConfig,
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


def policy_from_state(
    state: learner.TrainState, inference: InferenceConfig, *, use_ema: bool = True, **kwargs
) -> Policy:
    """`make_policy` with a TrainState's (EMA) parameters and normalisers."""
    params = state.ema_params if use_ema else state.params
    return make_policy(params, state.normalizers, state.config, inference, state.obs_dim, state.action_dim, **kwargs)
