"""SAC configuration: the learner's hyperparameters, the on-device loop's and the host loop's settings.

All are frozen dataclasses validated on construction. Every field carries a `help` string in its
metadata, which `experiments/train_sac.py` turns into an absl flag of the same name.
"""

from __future__ import annotations

import dataclasses
import math

from robojax.config_utils import check_dims, check_int, check_non_negative_int, check_positive_int, field
from robojax.nets.mlp import ACTIVATIONS


@dataclasses.dataclass(frozen=True)
class SACConfig:
    """Hyperparameters of the SAC learner (SERL / RLPD / REDQ flavour)."""

    actor_hidden_dims: tuple[int, ...] = field((64, 64), "Actor MLP hidden layer widths.")
    critic_hidden_dims: tuple[int, ...] = field((64, 64), "Critic MLP hidden layer widths.")
    activation: str = field("relu", f"Hidden activation: one of {sorted(ACTIVATIONS)}.")
    use_layer_norm: bool = field(True, "LayerNorm after every hidden layer of actor and critics (RLPD).")
    critic_ensemble_size: int = field(10, "Number of critics N in the ensemble (REDQ).")
    critic_subset_size: int = field(2, "Critics M drawn without replacement for the target min (REDQ).")
    discount: float = field(0.99, "Discount factor gamma.")
    # 10x the usual 0.005: values propagate in fewer updates, which is what wall-clock on a CPU
    # buys; LayerNorm critics and the REDQ subset min keep it stable (benchmarks/sac.py).
    tau: float = field(0.05, "Polyak rate of the target critics.")
    actor_lr: float = field(1e-3, "Adam learning rate of the actor.")
    critic_lr: float = field(1e-3, "Adam learning rate of the critics.")
    temperature_lr: float = field(1e-3, "Adam learning rate of the temperature.")
    init_temperature: float = field(0.1, "Initial entropy temperature alpha.")
    target_entropy: float | None = field(None, "Target entropy; None means -|A|/2 (SERL).")
    backup_entropy: bool = field(True, "Subtract alpha * log pi(a'|s') in the critic target (SAC eq. 3).")
    log_std_min: float = field(-10.0, "Lower bound of the actor's log standard deviation.")
    log_std_max: float = field(2.0, "Upper bound of the actor's log standard deviation.")
    batch_size: int = field(128, "Transitions per gradient step (half demo, half online with demos).")
    utd_ratio: int = field(1, "Critic updates per step of the vectorised env, then one actor update.")
    normalize_observations: bool = field(False, "Normalise observations with running statistics.")

    def __post_init__(self):
        check_dims(self, "actor_hidden_dims", "layer widths")
        check_dims(self, "critic_hidden_dims", "layer widths")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"SACConfig.activation {self.activation!r} unknown; choose from {sorted(ACTIVATIONS)}")
        check_positive_int(self, "critic_ensemble_size", "critic_subset_size", "batch_size", "utd_ratio")
        if self.critic_subset_size > self.critic_ensemble_size:
            raise ValueError(
                f"SACConfig.critic_subset_size ({self.critic_subset_size}) cannot exceed critic_ensemble_size"
                f" ({self.critic_ensemble_size}): the subset is drawn without replacement"
            )
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"SACConfig.discount must be in (0, 1], got {self.discount}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"SACConfig.tau must be in (0, 1], got {self.tau}")
        for name in ("actor_lr", "critic_lr", "temperature_lr", "init_temperature"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"SACConfig.{name} must be a positive number, got {value}")
        if self.target_entropy is not None and not math.isfinite(self.target_entropy):
            raise ValueError(f"SACConfig.target_entropy must be finite or None, got {self.target_entropy}")
        if not self.log_std_min < self.log_std_max:
            raise ValueError(
                f"SACConfig.log_std_min ({self.log_std_min}) must be below log_std_max ({self.log_std_max})"
            )

    def resolved_target_entropy(self, action_dim: int) -> float:
        """The target entropy, defaulting to -|A|/2 as in SERL."""
        return -action_dim / 2.0 if self.target_entropy is None else float(self.target_entropy)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The on-device training loop: envs, budget, evaluation, checkpoints, and the learner's config."""

    env: str = field("cartpole_balance", "Task name (see envs.names()).")
    seed: int = field(0, "Seed of every random stream in the run.")
    # One env: on a 2-core CPU gradient updates, not env steps, bound the wall-clock, so the
    # defaults spend them at one update step per transition (benchmarks/sac.py).
    num_envs: int = field(1, "Vectorised training envs stepped together.")
    total_env_steps: int = field(20_000, "Env transitions to collect (summed over all envs).")
    learning_starts: int = field(1_000, "Transitions of uniform random actions before updates begin.")
    steps_per_iteration: int = field(1_000, "Vectorised env steps inside one jitted collect-and-update call.")
    replay_capacity: int = field(1_000_000, "Replay buffer capacity in transitions.")
    demo_path: str | None = field(None, "A .npz of demo transitions; turns on 50/50 symmetric sampling (RLPD).")
    demo_capacity: int = field(10_000, "Demo buffer capacity (room for later interventions too).")
    eval_interval: int = field(2_000, "Transitions between evaluations.")
    eval_episodes: int = field(10, "Episodes per evaluation, run as a batch of envs with the deterministic actor.")
    target_eval_return: float | None = field(None, "Stop once an evaluation reaches this mean return.")
    checkpoint_interval: int = field(10_000, "Transitions between checkpoints (also one at the end).")
    checkpoints_to_keep: int = field(2, "Most recent checkpoints kept on disk.")
    checkpoint_replay: bool = field(True, "Save replay and demo buffers with checkpoints (exact resume).")
    workdir: str | None = field(None, "Run directory for checkpoints, logs, plot and policy (None: no files).")
    resume: bool = field(False, "Continue from the latest checkpoint in workdir.")
    progress_bar: bool = field(True, "Show a progress bar when stderr is a terminal.")
    sac: SACConfig = dataclasses.field(default_factory=SACConfig)

    def __post_init__(self):
        if not isinstance(self.env, str) or not self.env:
            raise ValueError(f"TrainConfig.env must be a task name, got {self.env!r}")
        check_non_negative_int(self, "seed")
        check_positive_int(
            self,
            "num_envs",
            "total_env_steps",
            "steps_per_iteration",
            "replay_capacity",
            "demo_capacity",
            "eval_interval",
            "eval_episodes",
            "checkpoint_interval",
            "checkpoints_to_keep",
        )
        check_int(self, "learning_starts", minimum=0, expected=">= 0")
        if self.num_envs > self.replay_capacity:
            raise ValueError(
                f"TrainConfig.replay_capacity ({self.replay_capacity}) must hold at least one step of all"
                f" {self.num_envs} envs"
            )
        if self.demo_path is not None and self.sac.batch_size % 2:
            raise ValueError(
                f"SACConfig.batch_size ({self.sac.batch_size}) must be even with demos: half of every batch"
                " comes from the demo buffer"
            )
        if self.resume and not self.workdir:
            raise ValueError("TrainConfig.resume needs a workdir to resume from")
        if not isinstance(self.sac, SACConfig):
            raise TypeError(f"TrainConfig.sac must be a SACConfig, got {type(self.sac).__name__}")

    @property
    def env_steps_per_iteration(self) -> int:
        return self.num_envs * self.steps_per_iteration


# Tuned on gymnasium's InvertedPendulum-v5 (benchmarks/sac.py --parts=gym).
HOST_SAC_DEFAULTS = SACConfig(actor_hidden_dims=(64, 64), critic_hidden_dims=(64, 64), utd_ratio=2, batch_size=128)


@dataclasses.dataclass(frozen=True)
class HostTrainConfig:
    """The host actor/learner loop: env, budget, threading, evaluation, checkpoints, learner config."""

    env: str = field("InvertedPendulum-v5", "Gymnasium env id (Box spaces), or a name for a custom factory.")
    seed: int = field(0, "Seed of the learner, the env resets and the actor's sampling.")
    total_env_steps: int = field(30_000, "Env transitions to collect.")
    learning_starts: int = field(1_000, "Transitions of uniform random actions before updates begin.")
    replay_capacity: int = field(200_000, "Replay buffer capacity in transitions.")
    demo_path: str | None = field(None, "A .npz of demo transitions, preloaded into the demo buffer.")
    demo_capacity: int = field(10_000, "Demo buffer capacity (demos and interventions).")
    publish_interval: int = field(10, "Learner updates between publishing actor params to the actor thread.")
    max_actor_lead: int = field(100, "Env steps the actor may run ahead of the learner's updates.")
    eval_interval: int = field(2_000, "Transitions between evaluations.")
    eval_episodes: int = field(5, "Episodes per evaluation with the deterministic policy.")
    eval_max_steps: int = field(10_000, "Cut an evaluation episode after this many steps.")
    target_eval_return: float | None = field(None, "Stop once an evaluation reaches this mean return.")
    checkpoint_interval: int = field(10_000, "Transitions between checkpoints (also one at the end).")
    checkpoints_to_keep: int = field(2, "Most recent checkpoints kept on disk.")
    checkpoint_replay: bool = field(True, "Save replay and demo buffers with checkpoints.")
    log_interval: int = field(1_000, "Transitions between training-metric log lines.")
    workdir: str | None = field(None, "Run directory for checkpoints, logs, plot and policy (None: no files).")
    resume: bool = field(False, "Continue from the latest checkpoint in workdir.")
    progress_bar: bool = field(True, "Show a progress bar when stderr is a terminal.")
    sac: SACConfig = dataclasses.field(default_factory=lambda: HOST_SAC_DEFAULTS)

    def __post_init__(self):
        check_non_negative_int(self, "seed")
        check_positive_int(
            self,
            "total_env_steps",
            "replay_capacity",
            "demo_capacity",
            "publish_interval",
            "max_actor_lead",
            "eval_interval",
            "eval_episodes",
            "eval_max_steps",
            "checkpoint_interval",
            "checkpoints_to_keep",
            "log_interval",
        )
        check_int(self, "learning_starts", minimum=0, expected=">= 0")
        if self.sac.batch_size % 2:
            raise ValueError(
                f"SACConfig.batch_size ({self.sac.batch_size}) must be even: once the demo buffer holds"
                " demos or interventions, half of every batch comes from it"
            )
        if self.resume and not self.workdir:
            raise ValueError("HostTrainConfig.resume needs a workdir to resume from")
