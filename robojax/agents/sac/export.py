"""SAC -> policy artifact: a robojax.policy.Policy from a TrainState, a saved policy or a checkpoint.

SAC's actor is stateless (carry `()`); the observation normaliser's statistics are folded into the
exported step as constants, and recorded in the sidecar. The deterministic policy is tanh(mean),
exactly `learner.act_deterministic`; `deterministic=False` exports the exploration policy
a = tanh(mean + std * noise), whose noise comes from the artifact's seeded key.

Where parameters come from (`load_sac_source`):
  RUN/policy/            the final policy `train`/`host_loop` save (policy.json + params)
  RUN/                   its policy/, or with `step=` (or when policy/ is absent) a checkpoint
  RUN/checkpoints/       the latest checkpoint (or `step`)
  RUN/checkpoints/STEP/  that checkpoint
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robojax import checkpoint as ckpt
from robojax.agents.sac import learner
from robojax.agents.sac.config import SACConfig
from robojax.config_utils import from_dict, to_dict
from robojax.data import normalizer
from robojax.data.normalizer import RunningMeanStd
from robojax.envs.core import ArraySpec
from robojax.policy import Policy


@dataclasses.dataclass
class SACSource:
    """Actor parameters and everything the artifact's sidecar needs, read from disk or a TrainState."""

    actor_params: Any
    obs_normalizer: RunningMeanStd
    config: SACConfig
    observation_spec: ArraySpec
    action_spec: ArraySpec
    env: str | None = None
    path: str | None = None  # the file tree the parameters were read from (hashed into the sidecar)
    hash_include: tuple[str, ...] | None = None  # top-level entries of `path` that were read
    step: int | None = None
    run_metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def normalization_record(stats: RunningMeanStd) -> dict | None:
    """The sidecar's description of the observation statistics; None while they are traced (inside a jit)."""
    return normalizer.running_stats_record(stats)


def make_policy(source: SACSource, *, deterministic: bool = True) -> Policy:
    """The SAC actor as a Policy (carry `()`), normaliser and parameters baked in (`learner.policy`)."""
    config = source.config
    stats = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), source.obs_normalizer)
    return learner.policy(
        (jax.tree.map(jnp.asarray, source.actor_params), stats),
        deterministic,
        config=config,
        action_dim=source.action_spec.shape[0],
        name=f"sac_{source.env or 'policy'}_{'deterministic' if deterministic else 'stochastic'}",
        normalization=normalization_record(source.obs_normalizer) if config.normalize_observations else None,
        action_dtype=source.action_spec.dtype,
    )


def source_from_train_state(
    state: learner.TrainState, observation_spec: ArraySpec, action_spec: ArraySpec, env: str | None = None
) -> SACSource:
    """A SACSource from an in-memory TrainState (tests, notebooks)."""
    return SACSource(
        actor_params=state.actor_params,
        obs_normalizer=state.obs_normalizer,
        config=state.config,
        observation_spec=observation_spec,
        action_spec=action_spec,
        env=env,
    )


def _sac_config(metadata: Mapping) -> SACConfig:
    config = dict(metadata.get("config", {}))
    sac = config.get("sac")
    if not isinstance(sac, Mapping):
        raise ValueError("the run metadata has no config.sac section; is this a SAC run (experiments.train_sac)?")
    return from_dict(SACConfig, sac)


def _find_actor(tree: Any) -> Mapping | None:
    """The sub-dict holding `actor_params` and `obs_normalizer` in a restored numpy tree."""
    if isinstance(tree, Mapping):
        if "actor_params" in tree and "obs_normalizer" in tree:
            return tree
        for value in tree.values():
            found = _find_actor(value)
            if found is not None:
                return found
    return None


def _source(tree: Any, metadata: Mapping, path: str, include, step) -> SACSource:
    found = _find_actor(tree)
    if found is None:
        raise ValueError(f"{path} holds no SAC actor parameters (no actor_params / obs_normalizer)")
    stats = found["obs_normalizer"]
    stats = RunningMeanStd(**{k: np.asarray(stats[k], np.float32) for k in ("mean", "var", "count")})
    try:
        obs_spec = ArraySpec.from_dict(metadata["observation_spec"])
        act_spec = ArraySpec.from_dict(metadata["action_spec"])
    except KeyError as e:
        raise ValueError(f"the run metadata of {path} lacks {e}; cannot describe the policy's spaces") from e
    return SACSource(
        actor_params=found["actor_params"],
        obs_normalizer=stats,
        config=_sac_config(metadata),
        observation_spec=obs_spec,
        action_spec=act_spec,
        env=metadata.get("env"),
        path=path,
        hash_include=include,
        step=step,
        run_metadata=metadata,
    )


def load_sac_source(path: str | os.PathLike, *, step: int | None = None) -> SACSource:
    """Read a SAC actor from a run directory, its policy/ directory, its checkpoints/ or one checkpoint step."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no SAC run, policy or checkpoint directory at {path}")
    if os.path.isfile(os.path.join(path, "policy.json")):
        if step is not None:
            raise ValueError(f"{path} is a saved final policy; pass the run or checkpoints directory to choose a step")
        tree, metadata = ckpt.load_policy(path)
        return _source(tree, metadata, path, None, None)
    if step is None and os.path.isfile(os.path.join(path, "policy", "policy.json")):
        return load_sac_source(os.path.join(path, "policy"))
    if os.path.isdir(os.path.join(path, "checkpoints")):
        return load_sac_source(os.path.join(path, "checkpoints"), step=step)
    parent, name = os.path.dirname(path), os.path.basename(path)
    if name.isdigit() and os.path.isdir(os.path.join(path, "state")):  # one step directory
        if step is not None and step != int(name):
            raise ValueError(f"{path} is checkpoint step {name}, not {step}")
        path, step = parent, int(name)
    with ckpt.Checkpointer(path, create=False) as checkpointer:
        step = checkpointer._resolve(step)
        metadata = checkpointer.read_metadata(step)
        step_dir = checkpointer.step_path(step)
    tree = ckpt.restore_numpy(path, step)
    return _source(tree, metadata, step_dir, ("state", "metadata"), step)


def export_sac(
    source: SACSource,
    out_dir: str | os.PathLike,
    *,
    control_dt: float,
    deterministic: bool = True,
    platforms=("cpu",),
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> str:
    """Write the policy artifact of a SAC actor (see robojax.export.export_policy)."""
    from robojax.export import export_source

    meta = {
        "learner": "sac",
        "env": source.env,
        "checkpoint_step": source.step,
        "deterministic": deterministic,
        "sac_config": to_dict(source.config),
        **dict(metadata or {}),
    }
    return export_source(
        make_policy(source, deterministic=deterministic),
        source,
        out_dir,
        control_dt=control_dt,
        metadata=meta,
        platforms=platforms,
        overwrite=overwrite,
    )
