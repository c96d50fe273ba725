"""SAC networks: tanh-squashed Gaussian actor, critic ensemble, learned temperature."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from robojax.agents.sac.config import SACConfig
from robojax.nets import MLP, ensemblize


class Actor(nn.Module):
    """Gaussian policy head: obs -> (mean, log_std) of the pre-tanh action distribution."""

    action_dim: int
    hidden_dims: tuple[int, ...]
    activation: str = "relu"
    use_layer_norm: bool = True
    log_std_min: float = -10.0
    log_std_max: float = 2.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = MLP(self.hidden_dims, activation=self.activation, use_layer_norm=self.use_layer_norm)(obs)
        mean = nn.Dense(self.action_dim, kernel_init=nn.initializers.xavier_uniform())(x)
        raw_log_std = nn.Dense(self.action_dim, kernel_init=nn.initializers.xavier_uniform())(x)
        # Squash into [log_std_min, log_std_max] smoothly rather than clipping, so the gradient
        # never vanishes at the bounds.
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (jnp.tanh(raw_log_std) + 1.0)
        return mean, log_std


class Critic(nn.Module):
    """One soft Q-function Q(s, a)."""

    hidden_dims: tuple[int, ...]
    activation: str = "relu"
    use_layer_norm: bool = True

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, action], axis=-1)
        q = MLP(self.hidden_dims, output_dim=1, activation=self.activation, use_layer_norm=self.use_layer_norm)(x)
        return q[..., 0]


class Temperature(nn.Module):
    """The entropy temperature alpha, parameterised as exp(log alpha) so it stays positive."""

    init_temperature: float = 1.0

    @nn.compact
    def __call__(self) -> jax.Array:
        log_alpha = self.param("log_temperature", lambda _: jnp.log(jnp.asarray(self.init_temperature, jnp.float32)))
        return jnp.exp(log_alpha)


@dataclasses.dataclass(frozen=True)
class SACNetworks:
    """The modules of a SAC learner; critics return Q-values of shape (members, batch).

    `critic_subset` is the same critic with M members: it evaluates a gathered REDQ subset of the
    target ensemble, so the target costs M forward passes rather than N.
    """

    actor: Actor
    critic: nn.Module
    critic_subset: nn.Module
    temperature: Temperature


def make_networks(config: SACConfig, action_dim: int) -> SACNetworks:
    """Build the actor, the critic ensemble (N independent critics via nn.vmap) and the temperature."""
    actor = Actor(
        action_dim=action_dim,
        hidden_dims=tuple(config.actor_hidden_dims),
        activation=config.activation,
        use_layer_norm=config.use_layer_norm,
        log_std_min=config.log_std_min,
        log_std_max=config.log_std_max,
    )
    critic_kwargs = dict(
        hidden_dims=tuple(config.critic_hidden_dims),
        activation=config.activation,
        use_layer_norm=config.use_layer_norm,
    )
    critic_ensemble = ensemblize(Critic, config.critic_ensemble_size)(**critic_kwargs)
    critic_subset = ensemblize(Critic, config.critic_subset_size)(**critic_kwargs)
    return SACNetworks(actor, critic_ensemble, critic_subset, Temperature(config.init_temperature))


def sample_tanh_gaussian(mean: jax.Array, log_std: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Reparameterised a = tanh(u), u ~ N(mean, std); returns (a, log pi(a|s)) summed over action dims.

    The change of variables (Haarnoja et al. 2018, appendix C, eq. 21) subtracts
    sum log(1 - tanh(u)^2), computed stably as 2 (log 2 - u - softplus(-2u)).
    """
    std = jnp.exp(log_std)
    noise = jax.random.normal(key, mean.shape, mean.dtype)
    pre_tanh = mean + std * noise
    gaussian_log_prob = -0.5 * jnp.square(noise) - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    log_det_jacobian = 2.0 * (jnp.log(2.0) - pre_tanh - jax.nn.softplus(-2.0 * pre_tanh))
    log_prob = jnp.sum(gaussian_log_prob - log_det_jacobian, axis=-1)
    return jnp.tanh(pre_tanh), log_prob


def deterministic_action(mean: jax.Array) -> jax.Array:
    """The policy's mode-like action tanh(mean), used for evaluation and deployment."""
    return jnp.tanh(mean)
