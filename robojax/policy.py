"""The one policy type every learner hands to evaluation, export and deployment.

A `Policy` is two pure, jittable functions with the parameters closed over,

    init_carry() -> carry                       an episode start: () for a stateless policy, a GRU
                                                state, the observation history and current action
                                                chunk of a receding-horizon policy
    step(carry, obs, key) -> (action, carry)    one executed action; key is a PRNG key (unused by
                                                deterministic policies)

plus descriptive fields that export writes to the artifact's sidecar and evaluation reports.
`step` takes ONE observation ([obs_dim]) unless `batch_size` is set. `batch_policy(policy, n)`
gives the [n, ...] version: the learner's own batched form when it supplies one (`batched`), else
a `jax.vmap`. Diffusion Policy needs its own: vmapping its per-env "replan now?" `lax.cond` turns
it into a select, which runs the full denoiser on every step of every env; its batched form
replans all envs on one shared clock instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

Carry = Any


@dataclasses.dataclass(frozen=True)
class Policy:
    """A policy as (init_carry, step) with the parameters closed over; see the module docstring.

    name: a short identifier (the artifact's `name`).
    stochastic: whether `step` draws from its key (sampling policies, diffusion).
    normalization: the statistics `step` applies, for people and tools (the step applies them
      itself), e.g. {"observation": {"mean": [...], "std": [...], "clip": 10.0}}.
    action_chunking: {"chunk_length": H, "executed_steps": k, ...} for policies that plan chunks
      (one action per call either way; the carry indexes into the chunk). None: one action per plan.
    evals_per_action: network evaluations per executed action in steady state, where the policy
      reports it (SAC 1; Diffusion Policy its denoiser calls per chunk / executed steps).
    batched: `(n) -> Policy` with `batch_size=n` whose step takes obs/carry with a leading [n] axis
      and one key for the batch; None: `batch_policy` vmaps `step`.
    batch_size: None for a policy of one observation; n for the batched form.
    extras: anything learner-specific worth keeping beside the policy (e.g. DP's step lists).
    """

    init_carry: Callable[[], Carry]
    step: Callable[[Carry, jax.Array, jax.Array], tuple[jax.Array, Carry]]
    name: str = ""
    stochastic: bool = False
    normalization: Mapping[str, Any] | None = None
    action_chunking: Mapping[str, Any] | None = None
    evals_per_action: float | None = None
    batched: Callable[[int], Policy] | None = None
    batch_size: int | None = None
    extras: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def executed_steps(self) -> int:
        """Actions executed per plan: `action_chunking["executed_steps"]`, 1 when not chunked."""
        return int((self.action_chunking or {}).get("executed_steps", 1))


def stateless(act: Callable[[jax.Array, jax.Array], jax.Array], **fields) -> Policy:
    """A Policy with carry `()` from `act(obs, key) -> action`."""

    def step(carry, obs, key):
        return act(obs, key), carry

    return Policy(init_carry=lambda: (), step=step, **fields)


def batch_policy(policy: Policy, n: int) -> Policy:
    """`policy` for a batch of n observations: its own `batched(n)` when set, else a vmap.

    The vmapped step splits the batch's key into one key per env; its carry is `init_carry()`
    broadcast to a leading [n] axis. A policy already batched for n is returned as is.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"batch_policy needs n >= 1, got {n}")
    if policy.batch_size is not None:
        if policy.batch_size != n:
            raise ValueError(
                f"policy {policy.name or ''!r} is already batched for {policy.batch_size} envs, not {n};"
                " build it for one observation and let batch_policy batch it"
            )
        return policy
    if policy.batched is not None:
        out = policy.batched(n)
        if out.batch_size != n:
            raise ValueError(
                f"policy {policy.name!r}: batched({n}) returned a policy with batch_size={out.batch_size};"
                f" it must set batch_size={n}"
            )
        return out

    single_step, single_init = policy.step, policy.init_carry

    def init_carry():
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + jnp.shape(x)), single_init())

    def step(carry, obs, key):
        return jax.vmap(single_step)(carry, obs, jax.random.split(key, n))

    return dataclasses.replace(policy, init_carry=init_carry, step=step, batched=None, batch_size=n)


# --------------------------------------------------------------------------------------------- receding horizon


@struct.dataclass
class ChunkCarry:
    """Receding-horizon state between control steps (one env, or a batch with one shared replan clock)."""

    obs_history: jax.Array  # [B, To, obs_dim] raw observations, oldest first
    chunk: jax.Array  # [B, Tp, A] the current plan in the model's action space
    index: jax.Array  # () int32: the chunk position of the next action to execute
    has_chunk: jax.Array  # () bool: False until the first plan (an episode start)
    plan_info: Any = ()  # what the planner reports about the current plan (EBT-Policy: energy, steps)


def receding_horizon(
    plan: Callable[[jax.Array, ChunkCarry, jax.Array, jax.Array], tuple[jax.Array, Any]],
    to_action: Callable[[jax.Array], jax.Array],
    *,
    obs_dim: int,
    action_dim: int,
    obs_horizon: int,
    pred_horizon: int,
    action_steps: int,
    batch_size: int | None,
    plan_info: Any = (),
) -> tuple[Callable[[], ChunkCarry], Callable]:
    """(init_carry, step) of a chunking policy that executes one action per call and replans every
    `action_steps` calls, for the learners that plan action chunks (Diffusion Policy, EBT-Policy).

    plan(obs_history [B, To, D], carry, key, fresh) -> (chunk [B, Tp, A], info): a new plan in the
      model's space; `carry` is the previous one (for warm starts), `fresh` a traced bool that is
      True at an episode start; info has the structure of `plan_info`.
    to_action(x [B, A]) -> [B, A]: the chunk entry to an env action (unnormalise, binarise, clip).
    batch_size None: obs [obs_dim] and action [action_dim] (the carry keeps a batch axis of 1);
      n: obs [n, obs_dim], every env replanning on the same clock, so the planner runs only on
      replanning steps (a vmap of the single-env step would make its `lax.cond` a select and plan
      on every step).
    At an episode start the history is the first observation repeated (make_windows' padding).
    """
    B = 1 if batch_size is None else int(batch_size)
    To, Tp = int(obs_horizon), int(pred_horizon)

    def init_carry() -> ChunkCarry:
        return ChunkCarry(
            obs_history=jnp.zeros((B, To, obs_dim), jnp.float32),
            chunk=jnp.zeros((B, Tp, action_dim), jnp.float32),
            index=jnp.zeros((), jnp.int32),
            has_chunk=jnp.zeros((), bool),
            plan_info=plan_info,
        )

    def step(carry: ChunkCarry, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, ChunkCarry]:
        obs = jnp.asarray(obs, jnp.float32)
        if batch_size is None:
            obs = obs[None]
        fresh = ~carry.has_chunk
        history = jnp.where(
            fresh,
            jnp.repeat(obs[:, None], To, axis=1),
            jnp.concatenate([carry.obs_history[:, 1:], obs[:, None]], axis=1),
        )
        need_plan = fresh | (carry.index >= action_steps)

        def replan(_):
            chunk, info = plan(history, carry, key, fresh)
            return chunk, info, jnp.zeros((), jnp.int32)

        def keep(_):
            return carry.chunk, carry.plan_info, carry.index

        chunk, info, index = jax.lax.cond(need_plan, replan, keep, None)
        x = jax.lax.dynamic_index_in_dim(chunk, index, axis=1, keepdims=False)  # [B, A]
        action = to_action(x)
        new_carry = ChunkCarry(history, chunk, index + 1, jnp.ones((), bool), info)
        return (action[0] if batch_size is None else action), new_carry

    return init_carry, step


def shift_chunk(chunk: jax.Array, num_executed: int) -> jax.Array:
    """Drop the first `num_executed` actions along the time axis (-2) and repeat the last action to refill."""
    horizon = chunk.shape[-2]
    if not 0 <= num_executed <= horizon:
        raise ValueError(f"cannot shift a chunk of {horizon} actions by {num_executed}")
    if num_executed == 0:
        return chunk
    last = chunk[..., -1:, :]
    pad = jnp.repeat(last, num_executed, axis=-2)
    return jnp.concatenate([chunk[..., num_executed:, :], pad], axis=-2)


def spec_action_bounds(action_spec) -> dict:
    """{action_low, action_high, action_dtype} of an env's action spec, as the chunking policies' builders take them."""
    return {
        "action_low": np.broadcast_to(action_spec.low, action_spec.shape),
        "action_high": np.broadcast_to(action_spec.high, action_spec.shape),
        "action_dtype": action_spec.dtype,
    }
