"""A demonstration-trained chunk policy -> policy artifact (shared by Diffusion Policy and EBT-Policy).

The exported step is the learner's single-env receding-horizon step (obs [obs_dim] -> action
[action_dim]) with the shared `robojax.policy.ChunkCarry` (observation history, current chunk in
the model's space, index, has_chunk, and the learner's plan_info), so one artifact call executes
one action and replans every `action_steps` calls. Parameters (EMA), normalisers and action
bounds are constants of the exported module; the sidecar records the normalisation and the
learner's `action_chunking` description.

Where parameters come from (`load_source`): a saved policy directory (`RUN/policy/`, written by
`robojax.imitation.train.save_policy`) or a run directory holding one.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from robojax.config_utils import to_dict
from robojax.data.normalizer import ChunkNormalizers
from robojax.envs.core import ArraySpec
from robojax.imitation import train as loop
from robojax.policy import Policy, spec_action_bounds


@dataclasses.dataclass
class ChunkSource:
    """Parameters, normalisers and everything the artifact's sidecar needs."""

    params: Any
    normalizers: ChunkNormalizers
    config: Any
    observation_spec: ArraySpec
    action_spec: ArraySpec
    env: str | None = None
    control_dt: float | None = None
    inference: Any = None  # the run's own inference settings, if recorded
    path: str | None = None  # the saved policy directory the parameters were read from
    train_steps: int | None = None
    run_metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def source_from_train_state(
    state: Any,
    observation_spec: ArraySpec,
    action_spec: ArraySpec,
    *,
    env: str | None = None,
    control_dt: float | None = None,
    use_ema: bool = True,
) -> ChunkSource:
    """A ChunkSource from an in-memory TrainState (tests, notebooks); EMA parameters by default."""
    if observation_spec.shape != (state.obs_dim,) or action_spec.shape != (state.action_dim,):
        raise ValueError(
            f"the specs {observation_spec.shape} / {action_spec.shape} do not match the learner's obs_dim"
            f" {state.obs_dim} / action_dim {state.action_dim}"
        )
    return ChunkSource(
        params=state.ema_params if use_ema else state.params,
        normalizers=state.normalizers,
        config=state.config,
        observation_spec=observation_spec,
        action_spec=action_spec,
        env=env,
        control_dt=control_dt,
        train_steps=int(state.step),
    )


def load_source(learner: loop.ChunkLearner, path: str | os.PathLike, *, step: int | None = None) -> ChunkSource:
    """Read a saved chunk policy from its policy/ directory or a run directory holding one."""
    path = os.path.abspath(os.fspath(path))
    if step is not None:
        raise ValueError(
            f"{learner.name} exports read the final saved policy (RUN/policy/, EMA parameters); checkpoint"
            " steps are not supported: drop --step, or finish the run so that it writes policy/"
        )
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no {learner.name} run or policy directory at {path}")
    if not os.path.isfile(os.path.join(path, "policy.json")) and not os.path.isfile(
        os.path.join(path, "policy", "policy.json")
    ):
        raise FileNotFoundError(
            f"{path} holds no saved {learner.name} (no policy.json, no policy/policy.json); a run writes"
            " policy/ when training finishes"
        )
    loaded = loop.load_policy(learner, path)
    meta = loaded.metadata
    return ChunkSource(
        params=loaded.params,
        normalizers=loaded.normalizers,
        config=loaded.config,
        observation_spec=loaded.observation_spec,
        action_spec=loaded.action_spec,
        env=meta.get("env"),
        control_dt=meta.get("control_dt"),
        inference=loaded.saved_inference(),
        path=loaded.path,
        train_steps=meta.get("train_steps"),
        run_metadata=meta,
    )


def normalization_record(source: ChunkSource, **action_extra) -> dict:
    """The sidecar's description of the observation and action normalisation."""
    arrays = source.normalizers.to_arrays()
    return {
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
            **action_extra,
            "formula": "model space [-1, 1] <- min/max of the dataset; discrete dims sign-binarised when executed",
        },
    }


def make_policy(
    learner: loop.ChunkLearner, source: ChunkSource, inference: Any, *, name: str, **action_extra
) -> Policy:
    """The single-env receding-horizon policy of `source`, with its normalisers recorded for the sidecar."""
    policy = learner.make_policy(
        jax.tree.map(jnp.asarray, source.params),
        source.normalizers,
        source.config,
        inference,
        source.observation_spec.shape[0],
        source.action_spec.shape[0],
        **spec_action_bounds(source.action_spec),
        name=name,
    )
    return dataclasses.replace(policy, normalization=normalization_record(source, **action_extra))


def export_chunk_policy(
    kind: str,
    policy: Policy,
    source: ChunkSource,
    out_dir: str | os.PathLike,
    *,
    inference: Any,
    control_dt: float | None = None,
    platforms=("cpu",),
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> str:
    """Write the artifact of `policy` (built from `source` under `inference`; see robojax.export.export_policy).

    control_dt: default the dataset's control period recorded with the policy.
    """
    from robojax.export import export_source

    control_dt = control_dt if control_dt is not None else source.control_dt
    if control_dt is None:
        raise ValueError("the policy's dataset records no control period; pass control_dt (--control_dt) in seconds")
    meta = {
        "learner": kind,
        "env": source.env,
        "train_steps": source.train_steps,
        "inference_config": to_dict(inference),
        "policy_config": to_dict(source.config),
        **dict(metadata or {}),
    }
    return export_source(
        policy, source, out_dir, control_dt=control_dt, metadata=meta, platforms=platforms, overwrite=overwrite
    )
