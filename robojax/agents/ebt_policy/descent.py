"""Energy descent on action chunks: the training unroll and the inference rules (pure functions).

Both descend a ~ N(0, I) in the model's action space along -grad_a E with a Nesterov look-ahead:

    a   <- a / rms(a)                 (per sample, when rms_normalize)
    a   <- a + sigma_i * noise        (Langevin, training only unless asked; sigma cosine-annealed)
    g   =  grad_a E(o, a + mu v)      (the look-ahead point)
    eta =  alpha * U(1/s, s) * clip(exp(E), 1/M, M) / temperature    (U only in training)
    v   <- mu v - eta g ;   a <- a + v

`energy_fn(actions [B, Tp, A]) -> [B]` closes over the observation tokens and the parameters, so
`jax.grad` of a loss over the unroll differentiates through every `grad_a E` (second order).

Training (`unroll`): a static-length `lax.scan` of `train_steps_max` iterations with a mask, the
number of executed steps N drawn per batch in [train_steps_min, train_steps_max], so shapes stay
static. Gradient modes: full (through everything), stop_between (the chunk and velocity enter
each step as constants: EBT's S1), last_step (every step before the last executed one is a
constant, so only the last step is differentiated: EBT's truncation). With the loss on the last
step only, stop_between and last_step give the same gradient; with the loss on every step,
stop_between keeps each step's own term and last_step only the last one's.

Inference: `descend` runs a fixed K steps, or, when adaptive, takes a step while the sample's
||grad_a E|| > tol (the first step always), up to K_max: a masked fixed-length scan that works
under vmap and reports the steps each sample used. `descend_while` is the same rule as a
`lax.while_loop` for batch 1 (it stops computing once converged). `best_of_n` descends N initial
chunks per observation in parallel and keeps the lowest final energy (EBT's self-verification).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from robojax.agents.ebt_policy.config import EBTPolicyConfig, InferenceConfig

EnergyFn = Callable[[jax.Array], jax.Array]


def rms_normalize(a: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Each sample's chunk [B, Tp, A] divided by its own root-mean-square (not the batch's)."""
    rms = jnp.sqrt(jnp.mean(jnp.square(a), axis=(-2, -1), keepdims=True) + eps)
    return a / rms


def energy_and_grad(energy_fn: EnergyFn, a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """E(a) [B] and grad_a E [B, Tp, A] per sample (samples are independent, so one VJP of ones)."""
    energy, vjp = jax.vjp(energy_fn, a)
    (grad,) = vjp(jnp.ones_like(energy))
    return energy, grad


def step_size(energy: jax.Array, alpha, temperature: float, factor_max: float, scale=1.0) -> jax.Array:
    """eta = alpha * scale * clip(exp(E), 1/M, M) / temperature, per sample [B]."""
    factor = jnp.clip(jnp.exp(energy), 1.0 / factor_max, factor_max)
    return alpha * scale * factor / temperature


def langevin_schedule(num_steps: jax.Array, length: int, start: float, end: float) -> jax.Array:
    """[length] noise std, cosine-annealed from start (step 0) to end (step num_steps - 1); constant past it."""
    k = jnp.arange(length, dtype=jnp.float32)
    denom = jnp.maximum(jnp.asarray(num_steps, jnp.float32) - 1.0, 1.0)
    frac = jnp.clip(k / denom, 0.0, 1.0)
    return end + (start - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))


def _broadcast(x: jax.Array, like: jax.Array) -> jax.Array:
    return x.reshape(x.shape + (1,) * (like.ndim - x.ndim))


class Unroll(NamedTuple):
    chunks: jax.Array  # [L, B, Tp, A] the chunk after each iteration (held after the last executed one)
    energies: jax.Array  # [L, B] E at each iteration's look-ahead point
    mask: jax.Array  # [L] bool: executed iterations
    final: jax.Array  # [B, Tp, A] the chunk after the last executed step


def unroll(
    energy_fn: EnergyFn,
    a0: jax.Array,
    key: jax.Array,
    num_steps: jax.Array,
    config: EBTPolicyConfig,
    alpha: jax.Array | float,
) -> Unroll:
    """The training descent from a0 for `num_steps` (traced, <= train_steps_max) steps; see the module docstring."""
    length = config.train_steps_max
    batch = a0.shape[0]
    scale_key, noise_key = jax.random.split(key)
    s = config.step_size_scale
    scale = jax.random.uniform(scale_key, (batch,), minval=1.0 / s, maxval=s) if s > 1.0 else jnp.ones((batch,))
    sigmas = langevin_schedule(num_steps, length, config.langevin_noise_start, config.langevin_noise_end)
    noise_keys = jax.random.split(noise_key, length)
    mu = config.momentum

    def body(carry, inputs):
        a_prev, v_prev = carry
        k, sigma, k_noise = inputs
        a, v = a_prev, v_prev
        if config.gradient == "stop_between":
            a, v = jax.lax.stop_gradient(a), jax.lax.stop_gradient(v)
        if config.rms_normalize:
            a = rms_normalize(a)
        a = a + sigma * jax.random.normal(k_noise, a.shape, a.dtype)
        energy, grad = energy_and_grad(energy_fn, a + mu * v)
        eta = step_size(energy, alpha, config.temperature, config.energy_factor_max, scale)
        v_new = mu * v - _broadcast(eta, grad) * grad
        a_new = a + v_new
        if config.gradient == "last_step":  # every step but the last is a constant (EBT's truncate_mcmc)
            not_last = k < num_steps - 1
            a_new = jnp.where(not_last, jax.lax.stop_gradient(a_new), a_new)
            v_new = jnp.where(not_last, jax.lax.stop_gradient(v_new), v_new)
        active = k < num_steps
        a_out = jnp.where(active, a_new, a_prev)
        v_out = jnp.where(active, v_new, v_prev)
        return (a_out, v_out), (a_out, energy)

    ks = jnp.arange(length)
    (final, _), (chunks, energies) = jax.lax.scan(body, (a0, jnp.zeros_like(a0)), (ks, sigmas, noise_keys))
    return Unroll(chunks=chunks, energies=energies, mask=ks < num_steps, final=final)


class Descent(NamedTuple):
    chunk: jax.Array  # [B, Tp, A] the plan
    energy: jax.Array  # [B] E at the plan (one forward pass after the last step)
    steps: jax.Array  # [B] int32 descent steps taken
    energies: jax.Array  # [K, B] E at each iteration's look-ahead point (the last held once a sample stopped)
    grad_norms: jax.Array  # [K, B] ||grad_a E|| at each iteration's look-ahead point


def _inference_step(energy_fn, a, v, key, k, config: EBTPolicyConfig, inference: InferenceConfig, alpha):
    """One inference iteration: (a', v', energy, grad_norm) before deciding whether it is taken."""
    if config.rms_normalize:
        a = rms_normalize(a)
    if inference.langevin_noise > 0.0:
        a = a + inference.langevin_noise * jax.random.normal(jax.random.fold_in(key, k), a.shape, a.dtype)
    mu = config.momentum
    energy, grad = energy_and_grad(energy_fn, a + mu * v)
    grad_norm = jnp.sqrt(jnp.sum(jnp.square(grad), axis=(-2, -1)))
    eta = step_size(energy, alpha, config.temperature, config.energy_factor_max)
    v_new = mu * v - _broadcast(eta, grad) * grad
    return a + v_new, v_new, energy, grad_norm


def descend(
    energy_fn: EnergyFn,
    a0: jax.Array,
    key: jax.Array,
    config: EBTPolicyConfig,
    inference: InferenceConfig,
    alpha: jax.Array | float,
) -> Descent:
    """Inference descent from a0 [B, Tp, A]: fixed K steps, or adaptive (masked scan up to K_max)."""
    length = inference.descent_length()
    batch = a0.shape[0]

    def body(carry, k):
        a, v, active = carry
        a_new, v_new, energy, grad_norm = _inference_step(energy_fn, a, v, key, k, config, inference, alpha)
        if inference.adaptive:
            take = active & ((k == 0) | (grad_norm > inference.grad_tol))
        else:
            take = jnp.ones_like(active)
        a = jnp.where(_broadcast(take, a), a_new, a)
        v = jnp.where(_broadcast(take, v), v_new, v)
        return (a, v, take), (take, energy, grad_norm)

    init = (a0, jnp.zeros_like(a0), jnp.ones((batch,), bool))
    (chunk, _, _), (taken, energies, grad_norms) = jax.lax.scan(body, init, jnp.arange(length))
    steps = jnp.sum(taken.astype(jnp.int32), axis=0)
    return Descent(chunk, energy_fn(chunk), steps, energies, grad_norms)


def descend_while(
    energy_fn: EnergyFn,
    a0: jax.Array,
    key: jax.Array,
    config: EBTPolicyConfig,
    inference: InferenceConfig,
    alpha: jax.Array | float,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The adaptive rule as a `lax.while_loop` (batch 1: it stops computing once converged).

    Returns (chunk [1, Tp, A], energy [1], steps [1]); equal to `descend` with adaptive=True.
    """
    if a0.shape[0] != 1:
        raise ValueError(f"descend_while runs one sample (batch 1), got a batch of {a0.shape[0]}; use descend")
    length = inference.descent_length()

    def cond(carry):
        k, _, _, done = carry
        return (k < length) & ~done

    def body(carry):
        k, a, v, _ = carry
        a_new, v_new, _, grad_norm = _inference_step(energy_fn, a, v, key, k, config, inference, alpha)
        take = (k == 0) | (grad_norm[0] > inference.grad_tol)
        a = jnp.where(take, a_new, a)
        v = jnp.where(take, v_new, v)
        return k + take.astype(jnp.int32), a, v, ~take

    k, chunk, _, _ = jax.lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), a0, jnp.zeros_like(a0), False))
    return chunk, energy_fn(chunk), k[None]


def best_of_n(descend_fn: Callable[[jax.Array], Descent], a0: jax.Array) -> tuple[Descent, jax.Array]:
    """a0 [B, N, Tp, A]: descend all B*N chunks at once, keep each row's lowest final energy.

    `descend_fn(a [B*N, Tp, A]) -> Descent` (its energy_fn repeats each observation N times).
    Returns (the kept Descent [B, ...], the index of the kept sample [B]).
    """
    B, N = a0.shape[:2]
    out = descend_fn(a0.reshape((B * N,) + a0.shape[2:]))
    energy = out.energy.reshape(B, N)
    best = jnp.argmin(energy, axis=1)

    def pick(x, axis):
        x = jnp.moveaxis(x, axis, 0).reshape((B, N) + x.shape[:axis] + x.shape[axis + 1 :])
        return jnp.take_along_axis(x, _broadcast(best[:, None], x), axis=1)[:, 0]

    kept = Descent(
        chunk=pick(out.chunk, 0),
        energy=pick(out.energy, 0),
        steps=pick(out.steps, 0),
        energies=pick(out.energies, 1).T,  # [K, B*N] -> [K, B]
        grad_norms=pick(out.grad_norms, 1).T,
    )
    return kept, best
