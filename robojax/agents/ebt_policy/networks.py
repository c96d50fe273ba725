"""The EBT-Policy energy model: observation frames and an action chunk in, one scalar energy out.

    observation tokens  Dense(obs_dim -> width) + learned position embedding, `obs_layers` causal
                        blocks (frame j sees frames <= j)
    action tokens       MLP(action_dim -> width) + fixed sin-cos position embedding per chunk step
    action blocks       `action_layers` x (self-attention over action tokens, no mask;
                        cross-attention to observation tokens, action t sees frame j only if
                        time(j) <= time(t); MLP)
    head                RMSNorm + MLP -> [Tp, action_dim]; the energy is its mean (the authors'
                        choice: one scalar per sample, no descent-step embedding)

Times: observation frame j (0..To-1) is at time j - To + 1, action t (0..Tp-1) at time t (our
windows start the chunk at the current step, `robojax.data.windows`), so with our alignment every
action sees every observed frame; the authors' chunk starts at the first observed frame, where
the mask cuts. The mask is computed from times either way (`action_time_offset`).

Shapes: obs [B, To, obs_dim] normalised, actions [B, Tp, A] in the model's space -> energy [B].
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from robojax.agents.ebt_policy.config import EBTPolicyConfig
from robojax.nets.mlp import MLP
from robojax.nets.transformer import RMSNorm, TransformerBlock, causal_mask, sincos_position_embedding, time_causal_mask


class EnergyModel(nn.Module):
    """E(o_{t-To+1..t}, a_{t..t+Tp-1}) -> [B] scalar energies (see the module docstring).

    `encode(obs)` gives the observation tokens once per plan; `energy(tokens, actions)` is the part
    every descent step re-evaluates; `__call__(obs, actions)` is both.
    """

    action_dim: int
    obs_horizon: int = 2
    width: int = 64
    obs_layers: int = 2
    action_layers: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0
    qk_norm: bool = True
    dropout_rate: float = 0.0
    action_time_offset: int = 0  # time of action token 0 minus the time of the newest frame

    def setup(self):
        block = dict(
            num_heads=self.num_heads, mlp_ratio=self.mlp_ratio, qk_norm=self.qk_norm, dropout_rate=self.dropout_rate
        )
        self.obs_position = self.param(
            "obs_position", nn.initializers.normal(0.02), (self.obs_horizon, self.width), jnp.float32
        )
        self.obs_embed = nn.Dense(self.width)
        self.obs_blocks = [TransformerBlock(**block) for _ in range(self.obs_layers)]
        self.obs_norm = RMSNorm()
        self.action_embed = MLP((self.width,), output_dim=self.width, activation="gelu")
        self.action_blocks = [TransformerBlock(**block, cross_attention=True) for _ in range(self.action_layers)]
        self.head_norm = RMSNorm()
        self.head = MLP((self.width,), output_dim=self.action_dim, activation="gelu")

    def encode(self, obs: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """[B, To, obs_dim] normalised frames -> [B, To, width] observation tokens (causal over frames)."""
        if obs.ndim != 3 or obs.shape[1] != self.obs_horizon:
            raise ValueError(f"EnergyModel.encode wants obs [B, To={self.obs_horizon}, obs_dim], got {obs.shape}")
        To = obs.shape[1]
        o = self.obs_embed(obs) + self.obs_position
        frame_mask = causal_mask(To)
        for blk in self.obs_blocks:
            o = blk(o, self_mask=frame_mask, deterministic=deterministic)
        return self.obs_norm(o)

    def energy(self, tokens: jax.Array, actions: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """Observation tokens [B, To, width] and chunks [B, Tp, A] -> energies [B]."""
        if actions.ndim != 3 or actions.shape[-1] != self.action_dim:
            raise ValueError(f"EnergyModel built for actions [B, Tp, {self.action_dim}], got {actions.shape}")
        To, Tp = tokens.shape[1], actions.shape[1]
        a = self.action_embed(actions) + jnp.asarray(sincos_position_embedding(Tp, self.width))
        cross = time_causal_mask(np.arange(Tp) + self.action_time_offset, np.arange(To) - (To - 1))
        for blk in self.action_blocks:
            a = blk(a, tokens, cross_mask=cross, deterministic=deterministic)
        per_step = self.head(self.head_norm(a))
        return jnp.mean(per_step, axis=(-2, -1))

    def __call__(self, obs: jax.Array, actions: jax.Array, *, deterministic: bool = True) -> jax.Array:
        return self.energy(self.encode(obs, deterministic=deterministic), actions, deterministic=deterministic)


def make_energy_model(config: EBTPolicyConfig, action_dim: int) -> EnergyModel:
    return EnergyModel(
        action_dim=int(action_dim),
        obs_horizon=config.obs_horizon,
        width=config.width,
        obs_layers=config.obs_layers,
        action_layers=config.action_layers,
        num_heads=config.num_heads,
        mlp_ratio=config.mlp_ratio,
        qk_norm=config.qk_norm,
        dropout_rate=config.attention_dropout,
    )
