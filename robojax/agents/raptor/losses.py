"""RAPTOR's distillation loss: masked MSE of the student's actions against the teachers', by BPTT.

Pure functions on tiny inputs: `obs` (batch, time, 22), `label` (batch, time, 4) the deterministic
teacher actions a*_t, `valid` (batch, time) the steps flown before any crash.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from robojax.agents.raptor.networks import StudentFunctions


def sequence_actions(student: StudentFunctions, params: Any, obs: jax.Array) -> jax.Array:
    """The student's actions over a batch of episodes (batch, time, obs) from its initial carry.

    One `lax.scan` through the GRU over whole episodes: differentiating it is BPTT.
    """
    actions, _ = student.sequence(params, jnp.swapaxes(obs, 0, 1))
    return jnp.swapaxes(actions, 0, 1)


def imitation_loss(
    student: StudentFunctions, params: Any, obs: jax.Array, label: jax.Array, valid: jax.Array
) -> jax.Array:
    """Masked MSE between the student's and the teacher's actions over whole episodes:
    sum_t valid_t ||pi(o_1..t) - a*_t||^2 / (sum_t valid_t * action size)."""
    actions = sequence_actions(student, params, obs)
    mask = valid.astype(jnp.float32)[..., None]
    return jnp.sum(mask * jnp.square(actions - label)) / jnp.maximum(jnp.sum(mask) * label.shape[-1], 1.0)
