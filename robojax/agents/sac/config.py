"""SAC configuration: the learner's hyperparameters and the on-device training loop's settings.

Both are frozen dataclasses validated on construction. Every field carries a `help` string in its
metadata, which `experiments/train_sac.py` turns into an absl flag of the same name.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from robojax.nets.mlp import ACTIVATIONS


def _field(default: Any, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{type(obj).__name__}.{name} must be a positive integer, got {value!r}")


def _hidden_dims(obj: Any, name: str) -> None:
    dims = getattr(obj, name)
    if isinstance(dims, (list, str)) or not isinstance(dims, tuple):
        raise TypeError(f"{type(obj).__name__}.{name} must be a tuple of layer widths, got {dims!r}")
    if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
        raise ValueError(f"{type(obj).__name__}.{name} needs one or more positive layer widths, got {dims!r}")


@dataclasses.dataclass(frozen=True)
class SACConfig:
    """Hyperparameters of the SAC learner (SERL / RLPD / REDQ flavour)."""

    actor_hidden_dims: tuple[int, ...] = _field((64, 64), "Actor MLP hidden layer widths.")
    critic_hidden_dims: tuple[int, ...] = _field((64, 64), "Critic MLP hidden layer widths.")
    activation: str = _field("relu", f"Hidden activation: one of {sorted(ACTIVATIONS)}.")
    use_layer_norm: bool = _field(True, "LayerNorm after every hidden layer of actor and critics (RLPD).")
    critic_ensemble_size: int = _field(10, "Number of critics N in the ensemble (REDQ).")
    critic_subset_size: int = _field(2, "Critics M drawn without replacement for the target min (REDQ).")
    discount: float = _field(0.99, "Discount factor gamma.")
    # 10x the usual 0.005: values propagate in fewer updates, which is what wall-clock on a CPU
    # buys; LayerNorm critics and the REDQ subset min keep it stable (benchmarks/sac.py).
    tau: float = _field(0.05, "Polyak rate of the target critics.")
    actor_lr: float = _field(1e-3, "Adam learning rate of the actor.")
    critic_lr: float = _field(1e-3, "Adam learning rate of the critics.")
    temperature_lr: float = _field(1e-3, "Adam learning rate of the temperature.")
    init_temperature: float = _field(0.1, "Initial entropy temperature alpha.")
    target_entropy: float | None = _field(None, "Target entropy; None means -|A|/2 (SERL).")
    backup_entropy: bool = _field(True, "Subtract alpha * log pi(a'|s') in the critic target (SAC eq. 3).")
    log_std_min: float = _field(-10.0, "Lower bound of the actor's log standard deviation.")
    log_std_max: float = _field(2.0, "Upper bound of the actor's log standard deviation.")
    batch_size: int = _field(128, "Transitions per gradient step (half demo, half online with demos).")
    utd_ratio: int = _field(1, "Critic updates per step of the vectorised env, then one actor update.")
    normalize_observations: bool = _field(False, "Normalise observations with running statistics.")

    def __post_init__(self):
        _hidden_dims(self, "actor_hidden_dims")
        _hidden_dims(self, "critic_hidden_dims")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"SACConfig.activation {self.activation!r} unknown; choose from {sorted(ACTIVATIONS)}")
        _positive(self, "critic_ensemble_size", "critic_subset_size", "batch_size", "utd_ratio")
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

    env: str = _field("cartpole_balance", "Task name (see envs.names()).")
    seed: int = _field(0, "Seed of every random stream in the run.")
    # One env: on a 2-core CPU gradient updates, not env steps, bound the wall-clock, so the
    # defaults spend them at one update step per transition (benchmarks/sac.py).
    num_envs: int = _field(1, "Vectorised training envs stepped together.")
    total_env_steps: int = _field(20_000, "Env transitions to collect (summed over all envs).")
    learning_starts: int = _field(1_000, "Transitions of uniform random actions before updates begin.")
    steps_per_iteration: int = _field(1_000, "Vectorised env steps inside one jitted collect-and-update call.")
    replay_capacity: int = _field(1_000_000, "Replay buffer capacity in transitions.")
    demo_path: str | None = _field(None, "A .npz of demo transitions; turns on 50/50 symmetric sampling (RLPD).")
    demo_capacity: int = _field(10_000, "Demo buffer capacity (room for later interventions too).")
    eval_interval: int = _field(2_000, "Transitions between evaluations.")
    eval_episodes: int = _field(10, "Episodes per evaluation, run as a batch of envs with the deterministic actor.")
    target_eval_return: float | None = _field(None, "Stop once an evaluation reaches this mean return.")
    checkpoint_interval: int = _field(10_000, "Transitions between checkpoints (also one at the end).")
    checkpoints_to_keep: int = _field(2, "Most recent checkpoints kept on disk.")
    checkpoint_replay: bool = _field(True, "Save replay and demo buffers with checkpoints (exact resume).")
    workdir: str | None = _field(None, "Run directory for checkpoints, logs, plot and policy (None: no files).")
    resume: bool = _field(False, "Continue from the latest checkpoint in workdir.")
    progress_bar: bool = _field(True, "Show a progress bar when stderr is a terminal.")
    sac: SACConfig = dataclasses.field(default_factory=SACConfig)

    def __post_init__(self):
        if not isinstance(self.env, str) or not self.env:
            raise ValueError(f"TrainConfig.env must be a task name, got {self.env!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"TrainConfig.seed must be a non-negative integer, got {self.seed!r}")
        _positive(
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
        starts = self.learning_starts
        if isinstance(starts, bool) or not isinstance(starts, int) or starts < 0:
            raise ValueError(f"TrainConfig.learning_starts must be >= 0, got {self.learning_starts!r}")
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


def to_dict(config: Any) -> dict:
    """A JSON-friendly dict of a config (nested configs become nested dicts, tuples lists)."""
    return json_ready(dataclasses.asdict(config))


def json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value
