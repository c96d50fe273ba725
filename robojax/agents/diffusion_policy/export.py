"""Diffusion Policy -> policy artifact: the receding-horizon policy of `receding_horizon.make_policy`, exported.

The exported step is exactly that policy's single-env step (obs [obs_dim] -> action [action_dim]);
its carry is `receding_horizon.PolicyCarry`:

    obs_history [1, To, obs_dim]  raw observations, oldest first
    chunk       [1, Tp, A]        the current plan in the model's (normalised) action space
    index       ()  int32         position in the chunk of the next action to execute
    has_chunk   ()  bool          False at an episode start (the controller's `reset()`)

so one artifact call executes one action and replans every `action_steps` (Ta) calls, cold with
DDPM / DDIM, or RTI-warm-started from the shifted previous chunk, which the carry holds between
calls. Denoiser parameters (EMA), observation and action normalisers and the action bounds are
constants of the exported module. The sidecar's `action_chunking` records Tp, Ta, To, the inference
mode, the step lists and the number of denoiser calls (NFE) per chunk and per action.

Sampling draws noise from the artifact's seeded key (cold starts; RTI's DDPM posterior steps), so
the artifact is `stochastic`; `robojax.deploy.load(dir, seed=...)` fixes the stream.

Where parameters come from (`load_dp_source`): a saved policy directory (`RUN/policy/`, written by
`train.save_policy`) or a run directory holding one. The shared parts live in
`robojax.imitation.export`.
"""

from __future__ import annotations

import os

from robojax.agents.diffusion_policy import train as dp_train
from robojax.agents.diffusion_policy.config import InferenceConfig
from robojax.agents.diffusion_policy.receding_horizon import receding_horizon_policy  # noqa: F401 - re-exported
from robojax.imitation import export as chunk_export
from robojax.imitation.export import ChunkSource, source_from_train_state  # noqa: F401 - part of this interface
from robojax.policy import Policy

DPSource = ChunkSource


def load_dp_source(path: str | os.PathLike, *, step: int | None = None) -> DPSource:
    """Read a Diffusion Policy from its saved policy/ directory or a run directory holding one."""
    return chunk_export.load_source(dp_train.LEARNER, path, step=step)


def make_policy(source: DPSource, inference: InferenceConfig) -> Policy:
    """The single-env receding-horizon Diffusion Policy of `source` as a Policy, with its normalisers
    recorded for the sidecar (see `receding_horizon.make_policy`)."""
    mode = inference.inference if source.config.objective == "diffusion" else "mse"
    return chunk_export.make_policy(
        dp_train.LEARNER,
        source,
        inference,
        name=f"diffusion_policy_{source.env or 'policy'}_{mode}",
        discrete_action_scale=source.config.discrete_action_scale,
    )


def export_diffusion_policy(
    source: DPSource, out_dir: str | os.PathLike, *, inference: InferenceConfig | None = None, **kwargs
) -> str:
    """Write the policy artifact of a Diffusion Policy (`robojax.imitation.export.export_chunk_policy`: control_dt,
    platforms, metadata, overwrite).

    inference: default the run's own recorded settings, else `InferenceConfig()`.
    """
    inference = inference or source.inference or InferenceConfig()
    return chunk_export.export_chunk_policy(
        "diffusion_policy", make_policy(source, inference), source, out_dir, inference=inference, **kwargs
    )
