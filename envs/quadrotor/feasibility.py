"""Which perturbed starts can be survived at all: trajectory optimisation through the simulator.

RAPTOR's starts (up to 90 degrees tilt, 1 m/s per axis, motors anywhere in their initial range)
combined with its termination bounds (2 m/s per axis, 35 rad/s, 20 arm lengths) include starts no
controller can survive: a strong quadrotor whose motors start fast and tilted, already moving
sideways, passes 2 m/s before its slow motors can spin down. Success rates over such starts are
capped below 100 %, and this module measures the cap.

For each start, with full knowledge of the quadrotor, the start and the disturbance, an open-loop
action sequence over the first `horizon` steps is optimised by Adam through the differentiable
RK4 simulator (a penalty on exceeding 97 % of each bound, from several random initialisations).
A start counts as survivable when some optimised sequence keeps every bound over the horizon.
Crashes from these starts happen early (within 0.1-0.2 s), so a short horizon suffices. The
result is an estimate, not a proof: the optimiser can miss a solution (so "not survivable" is
strong evidence, not certainty), and surviving the horizon does not guarantee surviving the
rest of the episode.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from envs.quadrotor import dynamics as dyn
from envs.quadrotor.env import QuadrotorEnv


def _rollout(env: QuadrotorEnv, state, logits: jax.Array):
    """Positions, velocities and angular velocities under actions tanh(logits) (hover task)."""

    def step(physics, logit):
        physics = {**physics, **env.advance(state.dynamics, physics, jnp.tanh(logit))}
        return physics, (physics["position"], physics["velocity"], physics["angular_velocity"])

    _, out = jax.lax.scan(step, state.physics, logits)
    return out


def _excess(env: QuadrotorEnv, state, logits: jax.Array, margin: float) -> tuple[jax.Array, jax.Array]:
    """(penalty to minimise, whether any termination bound is crossed)."""
    position, velocity, angular_velocity = _rollout(env, state, logits)
    pos_bound = env.position_threshold_arms * state.dynamics["arm_length"]
    over = lambda x, bound: jax.nn.relu(jnp.abs(x) - margin * bound)
    penalty = (
        100.0 * jnp.sum(jnp.square(over(velocity, env.velocity_threshold)))
        + jnp.sum(jnp.square(over(angular_velocity, env.angular_velocity_threshold)))
        + 100.0 * jnp.sum(jnp.square(over(position, pos_bound)))
        + 1e-3 * (jnp.sum(jnp.square(velocity)) + jnp.sum(jnp.square(position)))
    )
    crossed = (
        jnp.any(jnp.abs(velocity) > env.velocity_threshold)
        | jnp.any(jnp.abs(angular_velocity) > env.angular_velocity_threshold)
        | jnp.any(jnp.abs(position) > pos_bound)
    )
    return penalty, crossed


@functools.lru_cache(maxsize=8)
def _solver(env: QuadrotorEnv, horizon: int, iterations: int, learning_rate: float, margin: float):
    optimiser = optax.adam(learning_rate)

    def solve(state, key):
        hover = jnp.clip(2.0 * dyn.hover_motor_speed(state.dynamics) - 1.0, -0.99, 0.99)
        logits = jnp.arctanh(hover) + 0.3 * jax.random.normal(key, (horizon, 4))
        grad = jax.grad(lambda u: _excess(env, state, u, margin)[0])

        def body(carry, _):
            u, opt_state = carry
            updates, opt_state = optimiser.update(grad(u), opt_state)
            return (u + updates, opt_state), None

        (logits, _), _ = jax.lax.scan(body, (logits, optimiser.init(logits)), None, length=iterations)
        return ~_excess(env, state, logits, margin)[1]

    return jax.jit(jax.vmap(solve))


def survivable_starts(
    env: QuadrotorEnv,
    dynamics: dict,
    keys: jax.Array,
    *,
    horizon: int = 60,
    iterations: int = 2000,
    restarts: int = 6,
    learning_rate: float = 0.1,
    margin: float = 0.97,
    seed: int = 0,
) -> jax.Array:
    """Whether each start can be flown for `horizon` steps without crossing a termination bound.

    dynamics: quadrotor parameters with a leading quadrotor axis; keys: (quadrotor, episode) reset
    keys, the starts being `env.reset_with_parameters(keys[q, e], dynamics[q])`, the same as the
    RAPTOR evaluation's. Returns a bool array shaped like `keys` without its key dimension.
    """
    if not isinstance(env, QuadrotorEnv):
        raise TypeError(f"survivable_starts needs an unwrapped QuadrotorEnv, got {env!r}")
    num, episodes = keys.shape[0], keys.shape[1]
    if jax.tree.leaves(dynamics)[0].shape[0] != num:
        raise ValueError(f"{num} rows of keys but {jax.tree.leaves(dynamics)[0].shape[0]} quadrotors")
    starts = jax.vmap(lambda p, ks: jax.vmap(lambda k: env.reset_with_parameters(k, p))(ks))(dynamics, keys)
    flat = jax.tree.map(lambda x: x.reshape((num * episodes,) + x.shape[2:]), starts)
    solve = _solver(env, horizon, iterations, learning_rate, margin)
    found = jnp.zeros(num * episodes, bool)
    for r in range(restarts):
        found = found | solve(flat, jax.random.split(jax.random.PRNGKey(seed + r), num * episodes))
    return found.reshape(num, episodes)
