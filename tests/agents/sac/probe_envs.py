"""Tiny pure-JAX envs that compile in a second and have known answers."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from robojax.envs import ArraySpec, AutoResetWrapper, Env, EnvState, EpisodeStatistics, VmapWrapper


def _state(obs, rng, physics=None):
    return EnvState(
        physics=obs if physics is None else physics,
        obs=obs,
        reward=jnp.zeros((), jnp.float32),
        terminated=jnp.zeros((), bool),
        truncated=jnp.zeros((), bool),
        info={"success": jnp.zeros((), bool)},
        rng=rng,
    )


class BootstrapProbe(Env):
    """One-step episodes from two states, reward 1, actions ignored.

    obs [1, 0] ends by termination: Q = 1. obs [0, 1] ends by truncation with itself as the final
    observation, so the process continues: Q = 1 / (1 - discount). Treating truncation as
    termination gives 1; bootstrapping from the post-reset observation instead of the final one
    gives 1 + discount * (1 + Q) / 2 at its fixed point; ignoring termination inflates the first.
    """

    episode_length = 1

    @property
    def observation_spec(self):
        return ArraySpec((2,), np.float32)

    @property
    def action_spec(self):
        return ArraySpec((1,), np.float32, -1.0, 1.0)

    def reset(self, key):
        kind_key, rng = jax.random.split(key)
        kind = jax.random.bernoulli(kind_key).astype(jnp.int32)
        return _state(jax.nn.one_hot(kind, 2, dtype=jnp.float32), rng)

    def step(self, state, action):
        return state.replace(
            reward=jnp.ones((), jnp.float32),
            terminated=state.obs[0] > 0.5,
            truncated=state.obs[1] > 0.5,
        )


class ReachOrigin(Env):
    """Drive a point on a line to the origin: x' = clip(x + 0.2 a, -1, 1), reward 1 - |x'|.

    25-step episodes from x ~ U(-1, 1). A good policy returns about 23.5; doing nothing about 12.5.
    """

    episode_length = 25

    def __init__(self, obs_dim: int = 1):
        self.obs_dim = obs_dim  # extra zero dims give a same-dynamics env with another obs shape

    @property
    def observation_spec(self):
        return ArraySpec((self.obs_dim,), np.float32)

    @property
    def action_spec(self):
        return ArraySpec((1,), np.float32, -1.0, 1.0)

    def _obs(self, x):
        return jnp.zeros(self.obs_dim, jnp.float32).at[0].set(x)

    def reset(self, key):
        x_key, rng = jax.random.split(key)
        x = jax.random.uniform(x_key, (), minval=-1.0, maxval=1.0)
        state = _state(self._obs(x), rng, physics=x)
        return state.replace(episode={"t": jnp.zeros((), jnp.int32)})

    def step(self, state, action):
        x = jnp.clip(state.physics + 0.2 * action[0], -1.0, 1.0)
        t = state.episode["t"] + 1
        return state.replace(
            physics=x,
            obs=self._obs(x),
            reward=(1.0 - jnp.abs(x)).astype(jnp.float32),
            truncated=t >= self.episode_length,
            episode={"t": t},
            info={"success": jnp.abs(x) < 0.05},
        )


PROBES = {
    "bootstrap_probe": BootstrapProbe,
    "reach_origin": ReachOrigin,
    "reach_origin_3d_obs": lambda: ReachOrigin(obs_dim=3),
}


@functools.cache
def make_probe(name: str, num_envs: int) -> Env:
    """The batched, autoresetting stack `envs.make` builds, around a probe env (one object per
    name and size, so that runs in one test module share compiled functions)."""
    if name not in PROBES:
        raise ValueError(f"unknown probe env {name!r}; probes: {sorted(PROBES)}")
    return AutoResetWrapper(VmapWrapper(EpisodeStatistics(PROBES[name]()), num_envs))
