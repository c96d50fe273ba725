"""PPO -> policy artifact: `learner.policy` of one seed, from a TrainState, a saved policy or a checkpoint.

The PPO policy is stateless (carry `()`); the observation normaliser's statistics are constants of
the exported step and recorded in the sidecar. The deterministic policy is the Gaussian's mean
mapped onto the action bounds (clip or tanh, `PPOConfig.action_mode`), exactly
`learner.deterministic_action`; `deterministic=False` exports the sampling policy, whose noise
comes from the artifact's seeded key.

A run trains `num_seeds` seeds at once, and both its policy/ and its checkpoints hold every seed
(a leading seed axis on every leaf): `seed_index` picks one (0 = `PPOConfig.seed`).

Where parameters come from (`load_ppo_source`):
  RUN/policy/            the final policy `train` saves (policy.json + params)
  RUN/                   its policy/, or with `step=` (or when policy/ is absent) a checkpoint
  RUN/checkpoints/       the latest checkpoint (or `step`)
  RUN/checkpoints/STEP/  that checkpoint
control_dt defaults to the run's recorded one: the task's dt x action_repeat.
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
from robojax.agents.ppo import learner
from robojax.agents.ppo.config import PPOConfig
from robojax.config_utils import from_dict, to_dict
from robojax.data.normalizer import RunningMeanStd
from robojax.envs.core import ArraySpec
from robojax.policy import Policy


@dataclasses.dataclass
class PPOSource:
    """One seed's policy parameters and everything the artifact's sidecar needs."""

    policy_params: Any
    obs_normalizer: RunningMeanStd
    config: PPOConfig
    observation_spec: ArraySpec
    action_spec: ArraySpec
    env: str | None = None
    control_dt: float | None = None  # seconds per policy action (task dt x action_repeat)
    action_repeat: int | None = None
    seed: int | None = None  # the seed this policy was trained with
    seed_index: int = 0  # its position among the run's seeds
    path: str | None = None  # the file tree the parameters were read from (hashed into the sidecar)
    hash_include: tuple[str, ...] | None = None  # top-level entries of `path` that were read
    step: int | None = None
    run_metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def make_policy(source: PPOSource, *, deterministic: bool = True) -> Policy:
    """The PPO policy of `source` (carry `()`), normaliser and parameters baked in (`learner.policy`)."""
    stats = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), source.obs_normalizer)
    return learner.policy(
        source.config,
        source.action_spec,
        jax.tree.map(jnp.asarray, source.policy_params),
        stats,
        deterministic,
        name=f"ppo_{source.env or 'policy'}_{'deterministic' if deterministic else 'stochastic'}",
        action_dtype=source.action_spec.dtype,
    )


def _pick_seed(tree: Any, seed_index: int, num_seeds: int, where: str) -> Any:
    if isinstance(seed_index, bool) or not isinstance(seed_index, int) or not 0 <= seed_index < num_seeds:
        raise ValueError(
            f"{where} holds {num_seeds} seed(s); seed_index must be in [0, {num_seeds}), got {seed_index!r}"
        )
    return jax.tree.map(lambda x: np.asarray(x)[seed_index], tree)


def source_from_train_state(
    state: learner.TrainState,
    config: PPOConfig,
    observation_spec: ArraySpec,
    action_spec: ArraySpec,
    *,
    env: str | None = None,
    control_dt: float | None = None,
    seed_index: int | None = None,
) -> PPOSource:
    """A PPOSource from an in-memory TrainState (tests, notebooks); `seed_index` for a vmapped one (`train`'s)."""
    policy_params, stats = state.params["policy"], state.obs_normalizer
    if seed_index is not None:
        num_seeds = int(np.shape(stats.count)[0]) if np.ndim(stats.count) else 1
        policy_params, stats = _pick_seed((policy_params, stats), seed_index, num_seeds, "the state")
    return PPOSource(
        policy_params=policy_params,
        obs_normalizer=stats,
        config=config,
        observation_spec=observation_spec,
        action_spec=action_spec,
        env=env,
        control_dt=control_dt,
        seed=None if seed_index is None else config.seed + seed_index,
        seed_index=seed_index or 0,
    )


def _ppo_config(metadata: Mapping, path: str) -> PPOConfig:
    ppo = (metadata.get("config") or {}).get("ppo")
    if not isinstance(ppo, Mapping) or not str(metadata.get("format", "")).startswith("robojax.ppo"):
        raise ValueError(
            f"{path} is not a PPO run (format {metadata.get('format')!r}); train it with experiments.train_ppo"
        )
    return from_dict(PPOConfig, ppo)


def _source(policy_params, stats, metadata: Mapping, path: str, include, step, seed_index: int) -> PPOSource:
    config = _ppo_config(metadata, path)
    stats = {k: np.asarray(stats[k], np.float32) for k in ("mean", "var", "count")}
    num_seeds = int(stats["count"].shape[0]) if stats["count"].ndim else 1
    policy_params, stats = _pick_seed((policy_params, stats), seed_index, num_seeds, path)
    try:
        obs_spec = ArraySpec.from_dict(metadata["observation_spec"])
        act_spec = ArraySpec.from_dict(metadata["action_spec"])
    except KeyError as e:
        raise ValueError(f"the run metadata of {path} lacks {e}; cannot describe the policy's spaces") from e
    run_config = metadata.get("config") or {}
    return PPOSource(
        policy_params=policy_params,
        obs_normalizer=RunningMeanStd(**stats),
        config=config,
        observation_spec=obs_spec,
        action_spec=act_spec,
        env=metadata.get("env"),
        control_dt=metadata.get("control_dt"),
        action_repeat=run_config.get("action_repeat"),
        seed=config.seed + seed_index,
        seed_index=seed_index,
        path=path,
        hash_include=include,
        step=step,
        run_metadata=metadata,
    )


def load_ppo_source(path: str | os.PathLike, *, step: int | None = None, seed_index: int = 0) -> PPOSource:
    """Read one seed's PPO policy from a run directory, its policy/, its checkpoints/ or one checkpoint step."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no PPO run, policy or checkpoint directory at {path}")
    if os.path.isfile(os.path.join(path, "policy.json")):
        if step is not None:
            raise ValueError(f"{path} is a saved final policy; pass the run or checkpoints directory to choose a step")
        tree, metadata = ckpt.load_policy(path)
        if "policy_params" not in tree or "obs_normalizer" not in tree:
            raise ValueError(f"{path} holds no PPO policy parameters (no policy_params / obs_normalizer)")
        return _source(tree["policy_params"], tree["obs_normalizer"], metadata, path, None, None, seed_index)
    if step is None and os.path.isfile(os.path.join(path, "policy", "policy.json")):
        return load_ppo_source(os.path.join(path, "policy"), seed_index=seed_index)
    if os.path.isdir(os.path.join(path, "checkpoints")):
        return load_ppo_source(os.path.join(path, "checkpoints"), step=step, seed_index=seed_index)
    parent, name = os.path.dirname(path), os.path.basename(path)
    if name.isdigit() and os.path.isdir(os.path.join(path, "state")):  # one step directory
        if step is not None and step != int(name):
            raise ValueError(f"{path} is checkpoint step {name}, not {step}")
        path, step = parent, int(name)
    with ckpt.Checkpointer(path, create=False) as checkpointer:
        step = checkpointer._resolve(step)
        metadata = checkpointer.read_metadata(step)
        step_dir = checkpointer.step_path(step)
    _ppo_config(metadata, step_dir)  # refuse another learner's checkpoint before reading it
    tree = ckpt.restore_numpy(path, step)
    try:
        policy_params, stats = tree["params"]["policy"], tree["obs_normalizer"]
    except (KeyError, TypeError):
        raise ValueError(f"{step_dir} holds no PPO train state (params.policy, obs_normalizer)") from None
    return _source(policy_params, stats, metadata, step_dir, ("state", "metadata"), step, seed_index)


def export_ppo(
    source: PPOSource,
    out_dir: str | os.PathLike,
    *,
    control_dt: float | None = None,
    deterministic: bool = True,
    platforms=("cpu",),
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> str:
    """Write the policy artifact of one PPO seed (see robojax.export.export_policy).

    control_dt: seconds per action; default the run's recorded one (task dt x action_repeat).
    """
    from robojax.export import export_source

    control_dt = control_dt if control_dt is not None else source.control_dt
    if control_dt is None:
        raise ValueError(
            "the PPO run records no control period (its env has no dt); pass control_dt (--control_dt) in seconds"
        )
    meta = {
        "learner": "ppo",
        "env": source.env,
        "checkpoint_step": source.step,
        "seed": source.seed,
        "seed_index": source.seed_index,
        "action_repeat": source.action_repeat,
        "deterministic": deterministic,
        "ppo_config": to_dict(source.config),
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
