"""The Diffusion Policy training loop: the shared chunk-policy loop (`robojax.imitation.train`) for this learner.

Windows on device, `updates_per_call` scanned gradient steps per jitted call, closed-loop MJX
success evaluation every `eval_interval` steps, Orbax checkpoints with exact resume, and the final
policy (EMA parameters and normalisers) in `policy/`. The functions here are that loop's, bound to
`LEARNER`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from robojax import logging as rlog  # noqa: F401 - the loop's sinks (tests read rlog.read_jsonl through here)
from robojax.agents.diffusion_policy import learner, receding_horizon
from robojax.agents.diffusion_policy.config import DiffusionPolicyConfig, InferenceConfig, TrainConfig
from robojax.data.episodes import EpisodeDataset
from robojax.envs.core import Env
from robojax.imitation import train as loop
from robojax.imitation.train import (  # noqa: F401 - part of this module's interface
    RESUMABLE_CHANGES,
    LoadedPolicy,
    LoopState,
    TrainResult,
    evaluate_success,
    make_eval_env,
    measure_latency,
)

POLICY_FORMAT = "robojax.diffusion_policy/1"
RUN_FORMAT = "robojax.diffusion_policy.loop/1"

LEARNER = loop.ChunkLearner(
    name="Diffusion Policy",
    experiment="experiments.train_diffusion_policy",
    policy_format=POLICY_FORMAT,
    run_format=RUN_FORMAT,
    train_config=TrainConfig,
    policy_config=DiffusionPolicyConfig,
    inference_config=InferenceConfig,
    init=learner.init,
    update=learner.update,
    fit_normalizers=learner.fit_normalizers,
    make_policy=receding_horizon.make_policy,
    describe=lambda config: {"objective": config.objective},
)


def load_dataset(path: str, max_episodes: int = 0) -> EpisodeDataset:
    return loop.load_dataset(path, max_episodes, LEARNER.name)


def prepare_data(dataset: EpisodeDataset, config: DiffusionPolicyConfig):
    return loop.prepare_data(dataset, config, LEARNER)


def init_loop_state(key, dataset: EpisodeDataset, config: DiffusionPolicyConfig, normalizers) -> LoopState:
    return loop.init_loop_state(key, dataset, config, normalizers, LEARNER)


def make_train_call(config: DiffusionPolicyConfig, num_updates: int) -> Callable:
    return loop.make_train_call(learner.update, config.batch_size, num_updates)


def make_evaluator(env: Env, config: DiffusionPolicyConfig, inference: InferenceConfig, observation_spec, action_spec):
    return loop.make_evaluator(env, LEARNER, config, inference, observation_spec, action_spec)


run_metadata = functools.partial(loop.run_metadata, LEARNER)
save_policy = functools.partial(loop.save_policy, LEARNER)
load_policy = functools.partial(loop.load_policy, LEARNER)
evaluate_saved_policy = functools.partial(loop.evaluate_saved_policy, LEARNER)


def train(config: TrainConfig, env_factory: Callable[[str, int, int], Env] | None = None) -> TrainResult:
    """Run (or resume) Diffusion Policy training on the dataset in `config.dataset` (see robojax.imitation.train)."""
    return loop.train(LEARNER, config, env_factory)
