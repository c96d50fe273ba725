"""EBT-Policy -> policy artifact: the energy-descent receding-horizon policy, exported.

The exported step is `receding_horizon.make_policy`'s single-env step (obs [obs_dim] -> action
[action_dim]) with the shared `ChunkCarry`, whose plan_info holds the current plan's energy, the
descent steps it took, the work it cost and whether it escalated:

    obs_history [1, To, obs_dim], chunk [1, Tp, A], index (), has_chunk (),
    plan_info = {energy [1], steps [1], work [1], escalated [1]}

so one artifact call executes one action and plans every `action_steps` calls by K steps of
energy descent (or the adaptive rule as a while_loop, best-of-N, warm start, escalation above the
energy threshold, as the inference settings say). Parameters (EMA), normalisers and action bounds
are constants of the module; the sidecar's `action_chunking` records the descent settings and the
forward-pass equivalents per plan. Initial chunks are drawn from the artifact's seeded key, so the
artifact is `stochastic`; `robojax.deploy.load(dir, seed=...)` fixes the stream.
"""

from __future__ import annotations

import os

from robojax.agents.ebt_policy import train as ebt_train
from robojax.agents.ebt_policy.config import InferenceConfig
from robojax.imitation import export as chunk_export
from robojax.imitation.export import ChunkSource, source_from_train_state  # noqa: F401 - part of this interface
from robojax.policy import Policy


def load_ebt_source(path: str | os.PathLike, *, step: int | None = None) -> ChunkSource:
    """Read an EBT-Policy from its saved policy/ directory or a run directory holding one."""
    return chunk_export.load_source(ebt_train.LEARNER, path, step=step)


def make_policy(source: ChunkSource, inference: InferenceConfig) -> Policy:
    """The single-env energy-descent policy of `source`, with its normalisers recorded for the sidecar."""
    return chunk_export.make_policy(ebt_train.LEARNER, source, inference, name=f"ebt_policy_{source.env or 'policy'}")


def export_ebt_policy(
    source: ChunkSource, out_dir: str | os.PathLike, *, inference: InferenceConfig | None = None, **kwargs
) -> str:
    """Write the policy artifact of an EBT-Policy (`robojax.imitation.export.export_chunk_policy`: control_dt,
    platforms, metadata, overwrite).

    inference: default the run's own recorded settings, else `InferenceConfig()`.
    """
    inference = inference or source.inference or InferenceConfig()
    return chunk_export.export_chunk_policy(
        "ebt_policy", make_policy(source, inference), source, out_dir, inference=inference, **kwargs
    )
