"""Tiny synthetic episode datasets for the Diffusion Policy tests (written with robojax.data.episodes)."""

from __future__ import annotations

import numpy as np

from robojax.data.episodes import EpisodeWriter
from robojax.envs.core import ArraySpec

POINT_STEP = 0.1  # x' = x + POINT_STEP * a
POINT_GAIN = 5.0  # expert: a = clip(gain * (goal - x), -1, 1)
POINT_LENGTH = 20


def point_expert(x, goal):
    return np.clip(POINT_GAIN * (goal - x), -1.0, 1.0)


def write_point_dataset(path: str, num_episodes: int = 30, seed: int = 0, env: str | None = None) -> str:
    """A 1-D point that must move to a goal: obs [x, goal], action [velocity] in [-1, 1]."""
    rng = np.random.default_rng(seed)
    obs_spec = ArraySpec((2,), np.float32, name="observation")
    act_spec = ArraySpec((1,), np.float32, -1.0, 1.0, name="action")
    with EpisodeWriter(path, obs_spec, act_spec, env=env, control_dt=0.1) as writer:
        for _ in range(num_episodes):
            x, goal = rng.uniform(-1, 1, size=2)
            obs, acts = [], []
            for _ in range(POINT_LENGTH):
                a = point_expert(x, goal)
                obs.append([x, goal])
                acts.append([a])
                x = x + POINT_STEP * a
            writer.add_episode(
                np.asarray(obs, np.float32), np.asarray(acts, np.float32), success=bool(abs(x - goal) < 0.05)
            )
    return path


def write_random_dataset(
    path: str,
    obs_dim: int,
    action_dim: int,
    *,
    env: str,
    num_episodes: int = 3,
    length: int = 12,
    discrete_dims=(),
    seed: int = 0,
) -> str:
    """Random observations and actions with an env's shapes (for end-to-end plumbing tests)."""
    rng = np.random.default_rng(seed)
    obs_spec = ArraySpec((obs_dim,), np.float32, name="observation")
    act_spec = ArraySpec((action_dim,), np.float32, -1.0, 1.0, name="action")
    with EpisodeWriter(path, obs_spec, act_spec, env=env, control_dt=0.02, discrete_action_dims=discrete_dims) as w:
        for _ in range(num_episodes):
            acts = rng.uniform(-1, 1, (length, action_dim)).astype(np.float32)
            for d in discrete_dims:
                acts[:, d] = np.sign(acts[:, d])
            w.add_episode(rng.normal(size=(length, obs_dim)).astype(np.float32), acts)
    return path
