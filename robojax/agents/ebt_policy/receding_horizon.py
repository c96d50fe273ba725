"""EBT-Policy's receding-horizon inference as a `robojax.policy.Policy` (on `robojax.policy.receding_horizon`).

Every `action_steps` (Ta) calls the policy plans a chunk by energy descent (`learner.plan`: K
steps or adaptive, best-of-N) and executes it one action per call. Its carry is the shared
`ChunkCarry` whose `plan_info` holds the current plan's energy and the descent steps it took, so
the energy (the policy's uncertainty) is available at every control step:

    obs_history [B, To, obs_dim], chunk [B, Tp, A], index (), has_chunk (),
    plan_info = {"energy": [B], "steps": [B] int32, "work": [B] forward equivalents spent,
                 "escalated": [B] bool}

Warm start (`warm_start`): a plan after the first starts from the previous chunk shifted by the
executed actions (`robojax.policy.shift_chunk`), descended `warm_steps` steps (or by the adaptive
rule). Adaptive compute (`escalate`): a plan whose energy exceeds `energy_threshold` is followed
by a cold best-of-`escalate_samples` plan of `escalate_steps` steps, and the lower-energy of the
two is kept; `work` counts what was spent, so the mean compute per action is measurable.

At batch 1 with adaptive descent the plan is a `lax.while_loop` that stops computing once the
gradient norm falls to the tolerance; the batched form (`batched(n)`) runs the masked scan.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robojax.agents.ebt_policy import learner
from robojax.agents.ebt_policy.config import EBTPolicyConfig, InferenceConfig
from robojax.data.normalizer import ChunkNormalizers, binarize_discrete
from robojax.policy import Policy, receding_horizon, shift_chunk


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
        "warm_start": inference.warm_start,
        "warm_steps": inference.warm().inference_steps,
        "escalate": inference.escalate,
        "energy_threshold": inference.energy_threshold,
        "escalate_steps": inference.escalate_steps,
        "escalate_samples": inference.escalate_samples,
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

    warm_inference, escalated = inference.warm(), inference.escalated()

    def form(batch_size):
        B = 1 if batch_size is None else int(batch_size)
        single_env = batch_size is None

        def descend(settings, history, key, start):
            """(chunk, energy, steps, work) of one plan under `settings`, cold or from `start`."""
            if single_env and settings.adaptive and settings.num_samples == 1:
                chunk, energy, steps = learner.plan_while(
                    params, normalizers, config, settings, action_dim, history, key, start
                )
            else:
                out = learner.plan(params, normalizers, config, settings, action_dim, history, key, start)
                chunk, energy, steps = out.chunk, out.energy, out.steps
            steps = steps.astype(jnp.int32)
            work = learner.plan_work(steps, settings.num_samples).astype(jnp.float32)
            return jnp.clip(chunk, -1.0, 1.0), energy, steps, work

        def plan(history, carry, key, fresh):
            cold_key, warm_key, escalate_key = jax.random.split(key, 3)
            if inference.warm_start:  # all envs share the clock, so `fresh` is one flag for the batch
                out = jax.lax.cond(
                    fresh,
                    lambda: descend(inference, history, cold_key, None),
                    lambda: descend(warm_inference, history, warm_key, shift_chunk(carry.chunk, n_exec)),
                )
            else:
                out = descend(inference, history, cold_key, None)
            escalate = jnp.zeros((B,), bool)
            if inference.escalate:
                uncertain = out[1] > inference.energy_threshold

                def spend_more(first):
                    more = descend(escalated, history, escalate_key, None)
                    better = more[1] < first[1]
                    pick = [jnp.where(better.reshape((B,) + (1,) * (a.ndim - 1)), a, b) for a, b in zip(more, first)]
                    return pick[0], pick[1], jnp.where(better, more[2], first[2]), first[3] + more[3]

                if single_env:  # batch 1: the extra plan is computed only when the energy is high
                    out = jax.lax.cond(uncertain[0], spend_more, lambda first: first, out)
                else:  # batched: computed for every env, kept (and counted) where the energy is high
                    more = spend_more(out)
                    out = tuple(
                        jnp.where(uncertain.reshape((B,) + (1,) * (a.ndim - 1)), a, b) for a, b in zip(more, out)
                    )
                escalate = uncertain
            chunk, energy, steps, work = out
            return chunk, {"energy": energy, "steps": steps, "work": work, "escalated": escalate}

        def to_action(x):
            action = binarize_discrete(normalizers.action.unnormalize(x), discrete)
            return jnp.clip(action, low, high).astype(action_dtype)

        plan_info = {
            "energy": jnp.zeros((B,), jnp.float32),
            "steps": jnp.zeros((B,), jnp.int32),
            "work": jnp.zeros((B,), jnp.float32),
            "escalated": jnp.zeros((B,), bool),
        }
        return receding_horizon(
            plan,
            to_action,
            obs_dim=int(obs_dim),
            action_dim=int(action_dim),
            obs_horizon=config.obs_horizon,
            pred_horizon=config.pred_horizon,
            action_steps=n_exec,
            batch_size=batch_size,
            plan_info=plan_info,
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


def policy_from_state(
    state: learner.TrainState, inference: InferenceConfig, *, use_ema: bool = True, **kwargs
) -> Policy:
    """`make_policy` with a TrainState's (EMA) parameters and normalisers."""
    params = state.ema_params if use_ema else state.params
    return make_policy(params, state.normalizers, state.config, inference, state.obs_dim, state.action_dim, **kwargs)


def plan_trace(carry) -> dict:
    """What the evaluator records of the policy's carry each step (`robojax.evaluation` policy_trace)."""
    info = carry.plan_info
    replanned = jnp.broadcast_to(carry.index == 1, info["energy"].shape)  # index 1: this step planned
    return {**info, "replanned": replanned}


def summarize_plans(traced: dict) -> dict:
    """Compute and energy over evaluation episodes from `plan_trace` records ({policy_trace, valid} [T, n]).

    mean_work_per_action: forward-pass equivalents per executed action; mean_steps_per_plan;
    escalation_rate (plans escalated); per_episode_max_energy / per_episode_mean_energy [n] over
    each episode's plans (the uncertainty scores).
    """
    trace, valid = traced["policy_trace"], np.asarray(traced["valid"], bool)
    planned = valid & np.asarray(trace["replanned"], bool)
    energy = np.asarray(trace["energy"], np.float64)
    plans = max(int(planned.sum()), 1)
    count = np.maximum(planned.sum(axis=0), 1)
    return {
        "mean_work_per_action": float((np.asarray(trace["work"]) * planned).sum() / max(int(valid.sum()), 1)),
        "mean_steps_per_plan": float((np.asarray(trace["steps"]) * planned).sum() / plans),
        "escalation_rate": float((np.asarray(trace["escalated"], bool) & planned).sum() / plans),
        "mean_plan_energy": float((energy * planned).sum() / plans),
        "per_episode_max_energy": np.where(planned, energy, -np.inf).max(axis=0),
        "per_episode_mean_energy": (energy * planned).sum(axis=0) / count,
    }
