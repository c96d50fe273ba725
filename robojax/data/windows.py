"""Training windows for action-chunking policies.

`make_windows` cuts every episode of an `EpisodeDataset` into one sample per step t:

    obs     = observations[t-To+1 .. t]     (To steps of history, oldest first)
    actions = actions[t .. t+Tp-1]          (the chunk to predict, starting with the action taken at t)

At the episode edges the indices are clamped into [0, T-1], i.e. padded by repeating the edge
element, as in Chi et al.'s `SequenceSampler`: history before the first step repeats
observations[0]; a chunk running past the end repeats the last action. So the first window of an
episode has obs = [o0, ..., o0, o0] and the last has actions = [a_{T-1}, ..., a_{T-1}].
(Chi et al.'s sampler aligns a horizon that includes the observed steps and drops windows with
more than Ta-1 padded actions; here the chunk starts at the current step and every step of
every episode yields a window, so the end-of-episode "hold still" behaviour is also learned.)

The action normaliser fitted alongside (`MinMaxNormalizer`) lives in `robojax.data.normalizer`.
"""

from __future__ import annotations

import numpy as np

from robojax.data.episodes import EpisodeDataset

__all__ = ["make_windows"]


def make_windows(dataset: EpisodeDataset, obs_horizon: int = 2, pred_horizon: int = 16) -> dict[str, np.ndarray]:
    """One (obs history, action chunk) sample per step of every episode; edge padding as documented above.

    Returns numpy arrays: obs [N, To, *obs_shape], actions [N, Tp, *act_shape], episode [N] (int32
    index into dataset.episodes), t [N] (int32 step within that episode). N = total steps.
    """
    if obs_horizon < 1 or pred_horizon < 1:
        raise ValueError(f"obs_horizon and pred_horizon must be >= 1; got {obs_horizon}, {pred_horizon}")
    if not dataset.episodes:
        raise ValueError(f"dataset {dataset.path} has no episodes; record some before training")
    obs_out, act_out, ep_out, t_out = [], [], [], []
    hist = np.arange(-obs_horizon + 1, 1)
    ahead = np.arange(pred_horizon)
    for i, episode in enumerate(dataset.episodes):
        n = len(episode)
        t = np.arange(n)
        obs_idx = np.clip(t[:, None] + hist[None], 0, n - 1)
        act_idx = np.clip(t[:, None] + ahead[None], 0, n - 1)
        obs_out.append(np.asarray(episode.observations, np.float32)[obs_idx])
        act_out.append(np.asarray(episode.actions, np.float32)[act_idx])
        ep_out.append(np.full(n, i, np.int32))
        t_out.append(t.astype(np.int32))
    return {
        "obs": np.concatenate(obs_out),
        "actions": np.concatenate(act_out),
        "episode": np.concatenate(ep_out),
        "t": np.concatenate(t_out),
    }
