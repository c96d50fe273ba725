"""PPO networks: a Gaussian policy and a value function, orthogonally initialised MLPs.

Initialisation follows the PPO implementation details (Huang et al. 2022, "The 37 implementation
details of PPO", items 2 and 5): orthogonal hidden layers with gain sqrt(2), zero biases, the
policy mean's output layer with gain 0.01 (actions start near 0, whatever the observation) and the
value's output layer with gain 1.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from robojax.agents.ppo.config import PPOConfig
from robojax.envs.core import ArraySpec
from robojax.nets import MLP

_HIDDEN_INIT = nn.initializers.orthogonal(math.sqrt(2.0))


class GaussianPolicy(nn.Module):
    """obs -> (mean, log_std) of the Gaussian over the pre-action u; log_std clipped to its bounds."""

    action_dim: int
    hidden_dims: tuple[int, ...]
    activation: str = "tanh"
    log_std_mode: str = "state_independent"
    init_log_std: float = 0.0
    min_log_std: float = -5.0
    max_log_std: float = 2.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = MLP(self.hidden_dims, activation=self.activation, kernel_init=_HIDDEN_INIT)(obs)
        mean = nn.Dense(self.action_dim, kernel_init=nn.initializers.orthogonal(0.01), name="mean")(x)
        if self.log_std_mode == "network":
            log_std = nn.Dense(
                self.action_dim,
                kernel_init=nn.initializers.orthogonal(0.01),
                bias_init=nn.initializers.constant(self.init_log_std),
                name="log_std",
            )(x)
        else:
            log_std = self.param("log_std", nn.initializers.constant(self.init_log_std), (self.action_dim,))
            log_std = jnp.broadcast_to(log_std, mean.shape)
        # A hard clip: World4RL's sigma <= 1 is a constraint, not a soft preference.
        return mean, jnp.clip(log_std, self.min_log_std, self.max_log_std)


class ValueNetwork(nn.Module):
    """obs -> V(obs), shape (batch,)."""

    hidden_dims: tuple[int, ...]
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = MLP(self.hidden_dims, activation=self.activation, kernel_init=_HIDDEN_INIT)(obs)
        return nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0), name="value")(x)[..., 0]


@dataclasses.dataclass(frozen=True)
class PPONetworks:
    """The policy and value modules plus the map from pre-actions u to the env's action bounds."""

    policy: GaussianPolicy
    value: ValueNetwork
    action_mode: str
    action_low: np.ndarray
    action_high: np.ndarray

    def to_env_action(self, u: jax.Array) -> jax.Array:
        """Pre-action u -> env action in [low, high] (clip or tanh-squash, then rescale)."""
        unit = jnp.tanh(u) if self.action_mode == "tanh" else jnp.clip(u, -1.0, 1.0)
        return self.action_low + 0.5 * (unit + 1.0) * (self.action_high - self.action_low)

    def to_pre_action(self, action: jax.Array) -> jax.Array:
        """Env action -> the pre-action u the policy should put its mean on (for behaviour cloning).

        tanh mode inverts the squash on actions pulled inside (-1, 1) by 1e-3, since demos at the bounds
        would need u = +-inf.
        """
        unit = 2.0 * (action - self.action_low) / (self.action_high - self.action_low) - 1.0
        if self.action_mode == "tanh":
            return jnp.arctanh(jnp.clip(unit, -1.0 + 1e-3, 1.0 - 1e-3))
        return jnp.clip(unit, -1.0, 1.0)


def check_action_spec(action_spec: ArraySpec) -> None:
    """PPO maps its actions onto finite bounds of a flat action vector; refuse anything else."""
    if len(action_spec.shape) != 1:
        raise ValueError(f"PPO needs a flat action vector, got action shape {action_spec.shape}")
    if not action_spec.is_bounded or np.any(action_spec.low >= action_spec.high):
        raise ValueError(
            f"PPO needs finite action bounds with low < high, got low={action_spec.low}, high={action_spec.high};"
            " give the env's action spec its actuator limits (robojax tasks use [-1, 1])"
        )


def make_networks(config: PPOConfig, action_spec: ArraySpec) -> PPONetworks:
    """Build the policy and value modules for an env's action spec."""
    check_action_spec(action_spec)
    policy = GaussianPolicy(
        action_dim=action_spec.shape[0],
        hidden_dims=tuple(config.policy_hidden_dims),
        activation=config.activation,
        log_std_mode=config.log_std_mode,
        init_log_std=config.init_log_std,
        min_log_std=config.min_log_std,
        max_log_std=config.max_log_std,
    )
    value = ValueNetwork(hidden_dims=tuple(config.value_hidden_dims), activation=config.activation)
    return PPONetworks(
        policy,
        value,
        config.action_mode,
        np.asarray(action_spec.low, np.float32),
        np.asarray(action_spec.high, np.float32),
    )
