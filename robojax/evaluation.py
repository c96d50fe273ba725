"""Closed-loop evaluation of any `robojax.policy.Policy`: episodes in vectorised envs, one jitted scan.

    evaluate_fn = make_episode_evaluator(env, build_policy, episode_length=T)
    out = evaluate_fn(params, key)    # per-episode arrays [n]: return, success, length, ...

`env` is a batched env (n = env.batch_size). Every env runs one episode from `env.reset(key)`;
the scan runs T steps and masks everything after an episode's end, so an env without autoreset
is the natural fit; an autoresetting env gives the same numbers (its resets are masked out too)
at the cost of the resets. `build_policy(params) -> Policy` is called inside the jitted function,
so one compiled program serves every evaluation of a training run: parameters change, shapes do
not. The policy is batched with `batch_policy` (its own shared-clock form for chunked policies).

Success is the task's `info["success"]` flag, as `EpisodeStatistics` reports it in
`episode_success`: at an episode's last step ("success"), and at any of its steps
("success_any_step"). An episode still running at step T counts as truncated there, and its
success is the flag at that step.

Host helpers: `evaluate` runs ceil(episodes / num_envs) batches and aggregates, `evaluate_host`
gives the same per-episode arrays on a host env (gymnasium, a robot), `measure_latency` times the
batch-1 policy step driving an unbatched env.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robojax.envs.core import Env, HostEnv
from robojax.policy import Policy, batch_policy

PER_EPISODE = ("return", "success", "success_any_step", "length", "terminated", "truncated")


def episode_length_of(env: Env) -> int:
    """The env's episode length: its TimeLimit's `max_steps`, else its `episode_length` attribute."""
    length = getattr(env, "max_steps", None) or getattr(env, "episode_length", None)
    if length is None:
        raise ValueError(
            f"{env!r} has neither a TimeLimit nor an episode_length; pass episode_length= to evaluate finite episodes"
        )
    return int(length)


def _success(state) -> jax.Array:
    flag = state.info.get("success")
    if flag is None:  # tasks without a success notion: report False rather than fail
        return jnp.zeros(state.reward.shape, bool)
    return jnp.asarray(flag, bool)


def make_episode_evaluator(
    env: Env,
    build_policy: Callable[[Any], Policy],
    *,
    episode_length: int,
    trace: Callable[[Any, jax.Array, Any], Any] | None = None,
    policy_trace: Callable[[Any], Any] | None = None,
) -> Callable[[Any, jax.Array], dict]:
    """Jitted `fn(params, key) -> dict` of per-episode arrays [n], one episode per env of `env`.

    Keys: return (sum of rewards up to and including the last step), success (flag at the last
    step), success_any_step, length (steps taken), terminated / truncated (how it ended; truncated
    also when still running at step `episode_length`). Steps after an episode's end are masked.
    key: the env resets from `key` itself; the policy's keys come from `fold_in(key, 1)`.
    trace: optional `(state, action, next_state) -> pytree of [n, ...]` recorded every step; adds
      "trace" (leaves [T, n, ...]) and "valid" ([T, n] bool: the step belonged to its episode).
    policy_trace: optional `(policy carry after the step) -> pytree of [n, ...]` recorded every step
      (e.g. a plan's energy); adds "policy_trace" (leaves [T, n, ...]) and "valid".
    """
    n = env.batch_size
    if n is None:
        raise ValueError(
            f"make_episode_evaluator needs a batched env (VmapWrapper / envs.make(..., num_envs=n)); got {env!r}"
        )
    episode_length = int(episode_length)
    if episode_length < 1:
        raise ValueError(f"episode_length must be >= 1, got {episode_length}")

    def run(params, key):
        policy = batch_policy(build_policy(params), n)
        state = env.reset(key)
        policy_keys = jax.random.split(jax.random.fold_in(key, 1), episode_length)

        def body(carry, step_key):
            state, policy_carry, acc = carry
            action, policy_carry = policy.step(policy_carry, state.obs, step_key)
            nxt = env.step(state, action)
            valid = acc["running"]
            success = _success(nxt)
            acc = {
                "return": acc["return"] + jnp.where(valid, nxt.reward.astype(jnp.float32), 0.0),
                "length": acc["length"] + valid.astype(jnp.int32),
                "success": jnp.where(valid, success, acc["success"]),
                "success_any_step": acc["success_any_step"] | (valid & success),
                "terminated": jnp.where(valid, nxt.terminated, acc["terminated"]),
                "truncated": jnp.where(valid, nxt.truncated, acc["truncated"]),
                "running": valid & ~nxt.done,
            }
            out = (
                None if trace is None else trace(state, action, nxt),
                None if policy_trace is None else policy_trace(policy_carry),
                valid,
            )
            return (nxt, policy_carry, acc), out

        false = jnp.zeros(n, bool)
        acc = {
            "return": jnp.zeros(n, jnp.float32),
            "length": jnp.zeros(n, jnp.int32),
            "success": false,
            "success_any_step": false,
            "terminated": false,
            "truncated": false,
            "running": jnp.ones(n, bool),
        }
        (_, _, acc), traced = jax.lax.scan(body, (state, policy.init_carry(), acc), policy_keys)
        result = {k: acc[k] for k in PER_EPISODE}
        result["truncated"] = acc["truncated"] | acc["running"]  # cut by the evaluation horizon
        if trace is not None:
            result["trace"] = traced[0]
        if policy_trace is not None:
            result["policy_trace"] = traced[1]
        if trace is not None or policy_trace is not None:
            result["valid"] = traced[2]
        return result

    return jax.jit(run)


def evaluate(
    policy_or_build: Policy | Callable[[Any], Policy],
    env_factory: Callable[[int], Env],
    *,
    episodes: int,
    num_envs: int,
    seed: int = 0,
    params: Any = None,
    episode_length: int | None = None,
    trace: Callable[[Any, jax.Array, Any], Any] | None = None,
    policy_trace: Callable[[Any], Any] | None = None,
) -> dict:
    """Mean return, success, success_any_step and length over `episodes` episodes, `num_envs` at a time.

    policy_or_build: a Policy, or `build(params) -> Policy` (then pass `params`).
    env_factory: `(num_envs) -> batched Env`, so perturbed envs (domain randomisation, wrappers) fit.
    episode_length: default the env's (`episode_length_of`).
    Batch i resets from `fold_in(PRNGKey(seed), i)`. "per_episode" keeps the arrays of every episode.
    trace / policy_trace: as `make_episode_evaluator`; "traced" then holds their arrays over all
    episodes ({"trace", "policy_trace", "valid"}, leaves [T, episodes, ...]).
    """
    if episodes < 1 or num_envs < 1:
        raise ValueError(f"evaluate needs episodes >= 1 and num_envs >= 1, got {episodes} and {num_envs}")
    if isinstance(policy_or_build, Policy):
        if params is not None:
            raise ValueError("params are for a build function; a ready Policy has its parameters closed over")
        policy = policy_or_build
        build = lambda _: policy
    else:
        build = policy_or_build
    num_envs = min(num_envs, episodes)
    env = env_factory(num_envs)
    if env.batch_size != num_envs:
        raise ValueError(f"env_factory({num_envs}) returned an env of batch size {env.batch_size}, not {num_envs}")
    length = episode_length or episode_length_of(env)
    run = make_episode_evaluator(env, build, episode_length=length, trace=trace, policy_trace=policy_trace)
    root = jax.random.PRNGKey(seed)
    start = time.perf_counter()
    batches = [jax.device_get(run(params, jax.random.fold_in(root, i))) for i in range(-(-episodes // num_envs))]
    per_episode = {k: np.concatenate([np.asarray(b[k]) for b in batches])[:episodes] for k in PER_EPISODE}
    traced = {}
    for name in ("trace", "policy_trace", "valid"):
        if name in batches[0]:
            traced[name] = jax.tree.map(
                lambda *xs: np.concatenate([np.asarray(x) for x in xs], axis=1)[:, :episodes],
                *[b[name] for b in batches],
            )
    out = {
        "episodes": episodes,
        "return": float(per_episode["return"].mean()),
        "return_std": float(per_episode["return"].std()),
        "success": float(per_episode["success"].mean()),
        "success_any_step": float(per_episode["success_any_step"].mean()),
        "length": float(per_episode["length"].mean()),
        "per_episode": per_episode,
        "wall_s": time.perf_counter() - start,
    }
    if traced:
        out["traced"] = traced
    return out


@functools.lru_cache(maxsize=32)
def _host_step(build_policy: Callable[[Any], Policy]) -> Callable:
    """One jitted policy step per build function: every host evaluation of a run reuses its compile."""

    def step(params, carry, obs, key, t):
        return build_policy(params).step(carry, obs, jax.random.fold_in(key, t))

    return jax.jit(step)


def evaluate_host(
    build_policy: Callable[[Any], Policy],
    params: Any,
    env: HostEnv,
    *,
    episodes: int,
    max_steps: int,
    seed: int | Sequence[int] = 0,
) -> dict:
    """`make_episode_evaluator`'s per-episode arrays on a host env (gymnasium, a robot), episode by episode.

    A host env cannot run inside a jitted scan, so this loop steps it from Python with the jitted
    batch-1 `build_policy(params).step` (one compile per build function, parameters as arguments).
    Episode i resets from an int drawn from `np.random.default_rng(seed)`; the policy's keys come
    from the same generator. An episode still running after `max_steps` counts as truncated.
    """
    if episodes < 1 or max_steps < 1:
        raise ValueError(f"evaluate_host needs episodes >= 1 and max_steps >= 1, got {episodes} and {max_steps}")
    step = _host_step(build_policy)
    rng = np.random.default_rng(seed)
    out = {k: [] for k in PER_EPISODE}
    for _ in range(episodes):
        state = env.reset(int(rng.integers(2**31)))
        key = jax.random.PRNGKey(int(rng.integers(2**31)))
        carry = build_policy(params).init_carry()
        total, length, success, any_success, terminated, truncated = 0.0, 0, False, False, False, False
        for t in range(max_steps):
            action, carry = step(params, carry, np.asarray(state.obs, np.float32), key, t)
            state = env.step(state, np.asarray(action))
            total += float(state.reward)
            length += 1
            success = bool(state.info.get("success", False))
            any_success |= success
            terminated, truncated = bool(state.terminated), bool(state.truncated)
            if terminated or truncated:
                break
        else:
            truncated = not terminated  # cut by the evaluation horizon
        for k, v in zip(PER_EPISODE, (total, success, any_success, length, terminated, truncated)):
            out[k].append(v)
    dtypes = {"return": np.float32, "length": np.int32}
    return {k: np.asarray(v, dtypes.get(k, bool)) for k, v in out.items()}


def measure_latency(policy: Policy, env: Env, *, num_actions: int = 200, seed: int = 0) -> dict:
    """Wall-clock of the jitted batch-1 `policy.step` per executed action on this machine's device.

    The policy drives the unbatched `env` (reset, with a fresh carry, when an episode ends).
    Compilation and a warm-up through two plans are excluded. For chunked policies
    (`action_chunking` set, or `executed_steps` k > 1) the calls that plan (the k-th calls since a
    reset; the first one is the cold plan, reported as first_chunk_ms) are also reported as
    per-chunk latency, and the "nfe_*" entries of `action_chunking` are copied through.
    """
    if env.batch_size is not None:
        raise ValueError(f"measure_latency times batch-1 steps: pass an unbatched env (envs.make(name)), got {env!r}")
    if num_actions < 1:
        raise ValueError(f"num_actions must be >= 1, got {num_actions}")
    k = policy.executed_steps
    step = jax.jit(policy.step)
    env_step, env_reset = jax.jit(env.step), jax.jit(env.reset)
    key = jax.random.PRNGKey(seed)
    state = env_reset(key)
    carry = policy.init_carry()
    for i in range(2 * k + 1):  # compile, and run through a cold and a warm plan, untimed
        action, carry = step(carry, state.obs, jax.random.fold_in(key, 10_000 + i))
        jax.block_until_ready(action)
    carry = policy.init_carry()
    keys = list(jax.random.split(jax.random.fold_in(key, 1), num_actions))
    times, replans, cold = [], [], []
    since_reset = 0
    for i in range(num_actions):
        t0 = time.perf_counter()
        action, carry = step(carry, state.obs, keys[i])
        jax.block_until_ready(action)
        dt = time.perf_counter() - t0
        times.append(dt)
        if since_reset == 0:
            cold.append(dt)
        elif since_reset % k == 0:
            replans.append(dt)
        since_reset += 1
        state = env_step(state, action)
        if bool(state.done):
            state = env_reset(jax.random.fold_in(key, 1000 + i))
            carry = policy.init_carry()
            since_reset = 0
    ms = np.asarray(times) * 1e3
    out = {
        "actions": num_actions,
        "per_action_ms_mean": float(ms.mean()),
        "per_action_ms_p50": float(np.percentile(ms, 50)),
        "per_action_ms_p99": float(np.percentile(ms, 99)),
        "evals_per_action": policy.evals_per_action,
        "action_steps": k,
        "device": str(jax.devices()[0]),
    }
    if k > 1 or policy.action_chunking is not None:  # a chunked policy replanning every call still plans
        chunk_ms = np.asarray(replans or cold) * 1e3
        out.update(
            {
                "per_chunk_ms_p50": float(np.percentile(chunk_ms, 50)),
                "per_chunk_ms_p99": float(np.percentile(chunk_ms, 99)),
                "first_chunk_ms": float(np.mean(cold) * 1e3) if cold else None,
                "replans": len(replans),
            }
        )
        out.update({name: value for name, value in (policy.action_chunking or {}).items() if name.startswith("nfe_")})
    return out
