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
`train.save_policy`) or a run directory holding one.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from robojax.agents.diffusion_policy import learner
from robojax.agents.diffusion_policy import train as dp_train
from robojax.agents.diffusion_policy.config import DiffusionPolicyConfig, InferenceConfig
from robojax.agents.diffusion_policy.receding_horizon import receding_horizon_policy
from robojax.config_utils import from_dict, to_dict
from robojax.envs.core import ArraySpec
from robojax.policy import Policy


@dataclasses.dataclass
class DPSource:
    """Denoiser parameters, normalisers and everything the artifact's sidecar needs."""

    params: Any
    normalizers: learner.Normalizers
    config: DiffusionPolicyConfig
    observation_spec: ArraySpec
    action_spec: ArraySpec
    env: str | None = None
    control_dt: float | None = None
    inference: InferenceConfig | None = None  # the run's own inference settings, if recorded
    path: str | None = None  # the saved policy directory the parameters were read from
    train_steps: int | None = None
    run_metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def source_from_train_state(
    state: learner.TrainState,
    observation_spec: ArraySpec,
    action_spec: ArraySpec,
    *,
    env: str | None = None,
    control_dt: float | None = None,
    use_ema: bool = True,
) -> DPSource:
    """A DPSource from an in-memory TrainState (tests, notebooks); EMA parameters by default."""
    if observation_spec.shape != (state.obs_dim,) or action_spec.shape != (state.action_dim,):
        raise ValueError(
            f"the specs {observation_spec.shape} / {action_spec.shape} do not match the learner's obs_dim"
            f" {state.obs_dim} / action_dim {state.action_dim}"
        )
    return DPSource(
        params=state.ema_params if use_ema else state.params,
        normalizers=state.normalizers,
        config=state.config,
        observation_spec=observation_spec,
        action_spec=action_spec,
        env=env,
        control_dt=control_dt,
        train_steps=int(state.step),
    )


def _saved_inference(metadata: Mapping) -> InferenceConfig | None:
    saved = (metadata.get("config") or {}).get("inference")
    if not isinstance(saved, Mapping):
        return None
    return from_dict(InferenceConfig, saved)


def load_dp_source(path: str | os.PathLike, *, step: int | None = None) -> DPSource:
    """Read a Diffusion Policy from its saved policy/ directory or a run directory holding one."""
    path = os.path.abspath(os.fspath(path))
    if step is not None:
        raise ValueError(
            "Diffusion Policy exports read the final saved policy (RUN/policy/, EMA parameters); checkpoint"
            " steps are not supported: drop --step, or finish the run so that it writes policy/"
        )
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no Diffusion Policy run or policy directory at {path}")
    if not os.path.isfile(os.path.join(path, "policy.json")) and not os.path.isfile(
        os.path.join(path, "policy", "policy.json")
    ):
        raise FileNotFoundError(
            f"{path} holds no saved Diffusion Policy (no policy.json, no policy/policy.json); a run writes"
            " policy/ when training finishes"
        )
    loaded = dp_train.load_policy(path)
    policy_dir = path if os.path.isfile(os.path.join(path, "policy.json")) else os.path.join(path, "policy")
    meta = loaded.metadata
    return DPSource(
        params=loaded.params,
        normalizers=loaded.normalizers,
        config=loaded.config,
        observation_spec=loaded.observation_spec,
        action_spec=loaded.action_spec,
        env=meta.get("env"),
        control_dt=meta.get("control_dt"),
        inference=_saved_inference(meta),
        path=policy_dir,
        train_steps=meta.get("train_steps"),
        run_metadata=meta,
    )


def make_policy(source: DPSource, inference: InferenceConfig) -> Policy:
    """The single-env receding-horizon Diffusion Policy of `source` as a Policy, with its normalisers
    recorded for the sidecar (see `receding_horizon.make_policy`)."""
    mode = inference.inference if source.config.objective == "diffusion" else "mse"
    policy = receding_horizon_policy(
        jax.tree.map(jnp.asarray, source.params),
        source.normalizers,
        source.config,
        inference,
        source.observation_spec,
        source.action_spec,
        name=f"diffusion_policy_{source.env or 'policy'}_{mode}",
    )
    arrays = source.normalizers.to_arrays()
    normalization = {
        "observation": {
            "offset": arrays["obs_offset"],
            "scale": arrays["obs_scale"],
            "method": source.config.obs_normalization,
            "formula": "(obs - offset) / scale",
        },
        "action": {
            "low": arrays["action_low"],
            "high": arrays["action_high"],
            "discrete_dims": list(source.normalizers.discrete_dims),
            "discrete_action_scale": source.config.discrete_action_scale,
            "formula": "model space [-1, 1] <- min/max of the dataset; discrete dims sign-binarised when executed",
        },
    }
    return dataclasses.replace(policy, normalization=normalization)


def export_diffusion_policy(
    source: DPSource,
    out_dir: str | os.PathLike,
    *,
    inference: InferenceConfig | None = None,
    control_dt: float | None = None,
    platforms=("cpu",),
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> str:
    """Write the policy artifact of a Diffusion Policy (see robojax.export.export_policy).

    inference: default the run's own recorded settings, else `InferenceConfig()`.
    control_dt: default the dataset's control period recorded with the policy.
    """
    from robojax.export import export_source

    inference = inference or source.inference or InferenceConfig()
    control_dt = control_dt if control_dt is not None else source.control_dt
    if control_dt is None:
        raise ValueError("the policy's dataset records no control period; pass control_dt (--control_dt) in seconds")
    meta = {
        "learner": "diffusion_policy",
        "env": source.env,
        "train_steps": source.train_steps,
        "inference_config": to_dict(inference),
        "policy_config": to_dict(source.config),
        **dict(metadata or {}),
    }
    return export_source(
        make_policy(source, inference),
        source,
        out_dir,
        control_dt=control_dt,
        metadata=meta,
        platforms=platforms,
        overwrite=overwrite,
    )
