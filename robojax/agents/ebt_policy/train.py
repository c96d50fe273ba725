"""The EBT-Policy training loop: the shared chunk-policy loop (`robojax.imitation.train`) for this learner.

The same demonstrations, windows (To, Tp), normalisation and loop as the Diffusion Policy: windows
on device, `updates_per_call` scanned gradient steps (each an unrolled energy descent) per jitted
call, closed-loop MJX success evaluation every `eval_interval` steps with energy-descent
inference, Orbax checkpoints with exact resume, and the final policy (EMA parameters and
normalisers) in `policy/`. Dataset actions must normalise into [-1, 1] (where descent runs).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable

import jax
import numpy as np

from robojax.agents.ebt_policy import learner, receding_horizon
from robojax.agents.ebt_policy.config import EBTPolicyConfig, InferenceConfig, TrainConfig
from robojax.data.episodes import EpisodeDataset
from robojax.data.windows import make_windows
from robojax.envs.core import Env
from robojax.imitation import train as loop
from robojax.imitation.train import (  # noqa: F401 - part of this interface
    LoadedPolicy,
    LoopState,
    TrainResult,
    evaluate_success,
    measure_latency,
)

POLICY_FORMAT = "robojax.ebt_policy/1"
RUN_FORMAT = "robojax.ebt_policy.loop/1"

LEARNER = loop.ChunkLearner(
    name="EBT-Policy",
    experiment="experiments.train_ebt_policy",
    policy_format=POLICY_FORMAT,
    run_format=RUN_FORMAT,
    train_config=TrainConfig,
    policy_config=EBTPolicyConfig,
    inference_config=InferenceConfig,
    init=learner.init,
    update=learner.update,
    fit_normalizers=learner.fit_normalizers,
    make_policy=receding_horizon.make_policy,
    check_windows=learner.check_model_actions,
    describe=lambda config: {"objective": "ebt", "gradient": config.gradient},
    plan_trace=receding_horizon.plan_trace,
    summarize_plans=receding_horizon.summarize_plans,
)


def prepare_data(dataset: EpisodeDataset, config: EBTPolicyConfig):
    return loop.prepare_data(dataset, config, LEARNER)


save_policy = functools.partial(loop.save_policy, LEARNER)
load_policy = functools.partial(loop.load_policy, LEARNER)
evaluate_saved_policy = functools.partial(loop.evaluate_saved_policy, LEARNER)


def train(config: TrainConfig, env_factory: Callable[[str, int, int], Env] | None = None) -> TrainResult:
    """Run (or resume) EBT-Policy training on the dataset in `config.dataset` (see robojax.imitation.train)."""
    return loop.train(LEARNER, config, env_factory)


def calibrate(
    checkpoint: str,
    dataset_path: str,
    inference: InferenceConfig,
    *,
    quantile: float = 0.9,
    max_windows: int = 2048,
    seed: int = 0,
    loaded: LoadedPolicy | None = None,
) -> dict:
    """The energy threshold of adaptive compute: the `quantile` of cold-plan energies on the
    windows of a held-out episode dataset (demos the policy did not train on).

    Returns {threshold, quantile, windows, dataset, energy_mean, energy_std}.
    """
    loaded = loaded or load_policy(checkpoint)
    dataset = loop.load_dataset(dataset_path, 0, LEARNER.name)
    if dataset.observation_spec.shape != (loaded.obs_dim,) or dataset.action_spec.shape != (loaded.action_dim,):
        raise ValueError(
            f"{dataset_path} holds observations {dataset.observation_spec.shape} and actions"
            f" {dataset.action_spec.shape}, the policy takes ({loaded.obs_dim},) and ({loaded.action_dim},):"
            " calibrate on held-out demos of the policy's own task"
        )
    obs = make_windows(dataset, loaded.config.obs_horizon, loaded.config.pred_horizon)["obs"]
    if len(obs) > max_windows:
        obs = obs[np.sort(np.random.default_rng(seed).choice(len(obs), max_windows, replace=False))]
    cold = dataclasses.replace(inference, escalate=False, warm_start=False)
    energies = learner.plan_energies(
        loaded.params, loaded.normalizers, loaded.config, cold, loaded.action_dim, obs, jax.random.key(seed)
    )
    return {
        "threshold": learner.calibrate_energy_threshold(energies, quantile),
        "quantile": float(quantile),
        "windows": int(len(obs)),
        "dataset": os.path.abspath(dataset_path),
        "energy_mean": float(np.mean(energies)),
        "energy_std": float(np.std(energies)),
    }
