"""RAPTOR's student (the "foundation policy"): Dense(22->16, ReLU) -> GRU(16) -> Dense(16->4).

Exactly 2084 parameters, as in the paper (note section 3.5):

    input layer   22*16 + 16                         =  368
    GRU           16*16*3*2 + 16*3*2 + 16            = 1648
    output layer  16*4 + 4                           =   68

The GRU that gives 1648 is RLtools' (the PyTorch / cuDNN parameterisation): separate input and
recurrent kernels W_i, W_h (16 x 48 each, gates [r, z, n]), separate biases b_i and b_h for every
gate (2 x 48), plus a stored initial hidden state h0 (16; zeros at init, as in the paper).
Flax's `GRUCell` has no recurrent biases for r and z and no h0 (1600 parameters), so the cell is
written out here:

    r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h

The output layer is linear (the paper's Gaussian mean); we squash it with tanh, as the paper's
Python port does, so actions are motor commands in [-1, 1].

Functions (all pure, jittable; `carry` is the hidden state, shape (..., 16)):
    init_student(key) -> params
    initial_carry(batch_shape, params=None) -> carry   (h0 from params, else zeros)
    student_step(params, carry, obs) -> (action, carry)
    student_sequence(params, obs_seq, carry=None) -> (actions, carry)   (time-major, for BPTT)
and the non-recurrent ablation with the same signatures (`init_feedforward_student`,
`feedforward_student_step`, ...; 2082 parameters, the carry passes through unchanged).
`student_policy(fns, params)` is either student as a `robojax.policy.Policy`;
`numpy_student_step` is a dependency-free numpy reference of one step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from robojax.policy import Policy

OBS_SIZE = 22
HIDDEN_SIZE = 16
ACTION_SIZE = 4
PAPER_PARAMETER_COUNT = 2084
# Non-recurrent ablation: Dense(22->38, ReLU) -> Dense(38->28, ReLU) -> Dense(28->4): 2082
# parameters, the closest two-hidden-layer MLP to 2084 (none hits it exactly).
FEEDFORWARD_HIDDEN = (38, 28)


class RLtoolsGRUCell(nn.Module):
    """GRU cell with input and recurrent biases for every gate (RLtools / PyTorch form)."""

    features: int = HIDDEN_SIZE

    @nn.compact
    def __call__(self, h: jax.Array, x: jax.Array) -> jax.Array:
        f = self.features
        w_i = self.param("input_kernel", nn.initializers.lecun_normal(), (x.shape[-1], 3 * f))
        w_h = self.param("recurrent_kernel", nn.initializers.orthogonal(), (f, 3 * f))
        b_i = self.param("input_bias", nn.initializers.zeros, (3 * f,))
        b_h = self.param("recurrent_bias", nn.initializers.zeros, (3 * f,))
        gi = x @ w_i + b_i
        gh = h @ w_h + b_h
        r = jax.nn.sigmoid(gi[..., :f] + gh[..., :f])
        z = jax.nn.sigmoid(gi[..., f : 2 * f] + gh[..., f : 2 * f])
        n = jnp.tanh(gi[..., 2 * f :] + r * gh[..., 2 * f :])
        return (1.0 - z) * n + z * h


class RaptorStudent(nn.Module):
    """One control step of the recurrent student: (hidden, obs) -> (action, hidden)."""

    hidden: int = HIDDEN_SIZE
    action_size: int = ACTION_SIZE

    @nn.compact
    def __call__(self, h: jax.Array, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        # Stored initial hidden state (part of the 2084); `initial_carry` reads it.
        self.param("initial_hidden_state", nn.initializers.zeros, (self.hidden,))
        x = nn.relu(nn.Dense(self.hidden, name="input_layer")(obs))
        h = RLtoolsGRUCell(self.hidden, name="gru")(h, x)
        action = jnp.tanh(nn.Dense(self.action_size, name="output_layer")(h))
        return action, h


class FeedforwardStudent(nn.Module):
    """Non-recurrent ablation of about the same size: an MLP from the current observation only."""

    hidden: tuple[int, ...] = FEEDFORWARD_HIDDEN
    action_size: int = ACTION_SIZE

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = obs
        for i, width in enumerate(self.hidden):
            x = nn.relu(nn.Dense(width, name=f"hidden_{i}")(x))
        return jnp.tanh(nn.Dense(self.action_size, name="output_layer")(x))


_STUDENT = RaptorStudent()
_FEEDFORWARD = FeedforwardStudent()


def count_parameters(params: Any) -> int:
    return int(sum(np.size(x) for x in jax.tree.leaves(params)))


# ---- recurrent student -------------------------------------------------------------------------


def init_student(key: jax.Array) -> dict:
    """Parameters of the 2084-parameter recurrent student."""
    return _STUDENT.init(key, jnp.zeros((HIDDEN_SIZE,)), jnp.zeros((OBS_SIZE,)))


def initial_carry(batch_shape: tuple[int, ...] | int = (), params: dict | None = None) -> jax.Array:
    """Hidden state at the start of an episode: the stored h0 when `params` are given, else zeros."""
    batch_shape = (batch_shape,) if isinstance(batch_shape, int) else tuple(batch_shape)
    if params is None:
        return jnp.zeros(batch_shape + (HIDDEN_SIZE,), jnp.float32)
    h0 = params["params"]["initial_hidden_state"]
    return jnp.broadcast_to(h0, batch_shape + h0.shape)


def student_step(params: dict, carry: jax.Array, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One 100 Hz control step: (action in [-1, 1]^4, next hidden state). Any leading batch shape."""
    return _STUDENT.apply(params, carry, obs)


def student_sequence(params: dict, obs_seq: jax.Array, carry: jax.Array | None = None):
    """Run the student over a time-major sequence (T, ..., 22) -> (actions (T, ..., 4), carry)."""
    if carry is None:
        carry = initial_carry(obs_seq.shape[1:-1], params)

    def step(h, o):
        a, h = student_step(params, h, o)
        return h, a

    carry, actions = jax.lax.scan(step, carry, obs_seq)
    return actions, carry


# ---- non-recurrent ablation --------------------------------------------------------------------


def init_feedforward_student(key: jax.Array) -> dict:
    return _FEEDFORWARD.init(key, jnp.zeros((OBS_SIZE,)))


def feedforward_initial_carry(batch_shape: tuple[int, ...] | int = (), params: dict | None = None) -> jax.Array:
    """A dummy carry (same shape as the recurrent one) so both students share one rollout code."""
    return initial_carry(batch_shape, None)


def feedforward_student_step(params: dict, carry: jax.Array, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Same signature as `student_step`; the carry passes through unchanged."""
    return _FEEDFORWARD.apply(params, obs), carry


def feedforward_student_sequence(params: dict, obs_seq: jax.Array, carry: jax.Array | None = None):
    carry = feedforward_initial_carry(obs_seq.shape[1:-1]) if carry is None else carry
    return _FEEDFORWARD.apply(params, obs_seq), carry


class StudentFunctions(NamedTuple):
    """The four functions a distillation or evaluation loop needs, for either student, and its kind."""

    init: Callable[[jax.Array], dict]
    initial_carry: Callable[..., jax.Array]
    step: Callable[[dict, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
    sequence: Callable[..., tuple[jax.Array, jax.Array]]
    kind: str = "gru"  # "gru" or "feedforward"


def student_functions(kind: str = "gru") -> StudentFunctions:
    """`"gru"`: the paper's recurrent student; `"feedforward"`: the non-recurrent ablation."""
    if kind == "gru":
        return StudentFunctions(init_student, initial_carry, student_step, student_sequence, "gru")
    if kind == "feedforward":
        return StudentFunctions(
            init_feedforward_student,
            feedforward_initial_carry,
            feedforward_student_step,
            feedforward_student_sequence,
            "feedforward",
        )
    raise ValueError(f"unknown student kind {kind!r}; use 'gru' or 'feedforward'")


def student_fns(recurrent: bool = True) -> StudentFunctions:
    """The GRU student (2084 parameters), or the non-recurrent ablation of about the same size."""
    return student_functions("gru" if recurrent else "feedforward")


def student_policy(student: StudentFunctions, params: Any) -> Policy:
    """One student as a `robojax.policy.Policy` for one quadrotor (obs [22] -> motor commands [4]).

    The carry is the GRU hidden state [16], from the stored h0; the feedforward ablation carries
    nothing (()). Deterministic: the key is unused. `params` may be traced (built inside a jit).
    """
    params = jax.tree.map(jnp.asarray, params)
    if student.kind == "gru":

        def init_carry():
            return student.initial_carry((), params)

        def step(carry, obs, key):
            del key  # deterministic
            action, carry = student.step(params, carry, obs.astype(jnp.float32))
            return action.astype(jnp.float32), carry
    else:

        def init_carry():
            return ()

        def step(carry, obs, key):
            del key
            action, _ = student.step(params, initial_carry(()), obs.astype(jnp.float32))
            return action.astype(jnp.float32), carry

    return Policy(
        init_carry=init_carry,
        step=step,
        stochastic=False,
        action_chunking={"chunk_length": 1, "executed_steps": 1},
        evals_per_action=1,
        name=f"raptor_{'student' if student.kind == 'gru' else 'feedforward'}",
    )


# ---- numpy reference ---------------------------------------------------------------------------


def numpy_parameters(params: dict) -> dict[str, np.ndarray]:
    """Flat float32 numpy arrays of the recurrent student's weights (for numpy and C inference)."""
    p = params["params"]
    f = lambda x: np.asarray(x, np.float32)
    return {
        "input_kernel": f(p["input_layer"]["kernel"]),  # (22, 16)
        "input_bias": f(p["input_layer"]["bias"]),  # (16,)
        "gru_input_kernel": f(p["gru"]["input_kernel"]),  # (16, 48) gates [r, z, n]
        "gru_recurrent_kernel": f(p["gru"]["recurrent_kernel"]),  # (16, 48)
        "gru_input_bias": f(p["gru"]["input_bias"]),  # (48,)
        "gru_recurrent_bias": f(p["gru"]["recurrent_bias"]),  # (48,)
        "initial_hidden_state": f(p["initial_hidden_state"]),  # (16,)
        "output_kernel": f(p["output_layer"]["kernel"]),  # (16, 4)
        "output_bias": f(p["output_layer"]["bias"]),  # (4,)
    }


def numpy_student_step(w: dict[str, np.ndarray], h: np.ndarray, obs: np.ndarray):
    """One student step in plain numpy (`w` from `numpy_parameters`): (action, next hidden)."""
    f = HIDDEN_SIZE
    x = np.maximum(obs @ w["input_kernel"] + w["input_bias"], 0.0)
    gi = x @ w["gru_input_kernel"] + w["gru_input_bias"]
    gh = h @ w["gru_recurrent_kernel"] + w["gru_recurrent_bias"]
    r = 1.0 / (1.0 + np.exp(-(gi[..., :f] + gh[..., :f])))
    z = 1.0 / (1.0 + np.exp(-(gi[..., f : 2 * f] + gh[..., f : 2 * f])))
    n = np.tanh(gi[..., 2 * f :] + r * gh[..., 2 * f :])
    h = (1.0 - z) * n + z * h
    return np.tanh(h @ w["output_kernel"] + w["output_bias"]), h
