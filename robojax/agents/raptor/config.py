"""RAPTOR configuration: teachers (vmapped SAC), meta-imitation distillation, evaluation.

Frozen dataclasses validated on construction; every field carries a `help` string that
`experiments/train_raptor.py` turns into an absl flag (nested configs' flags prefixed teacher_,
distill_, eval_).

CPU-sized defaults (the paper's values in brackets; research note section 3.4 and 3.6):
  teachers      32 quadrotors [1000], 150k env steps each over 4 envs (37.5k updates) [1M, 1 env],
                actor 64x64 [3x64], critics 2 x (64, 64) [2 x 3x256], batch 128 [128]
  distillation  100 epochs [1000], 3 teacher warm-up epochs [10], 4 episodes per quadrotor and
                epoch [10], episodes of 500 steps [500], batch 32 episodes [64], lr 3e-3 [1e-4]
The paper's sizes are reachable through the flags; on 2 CPU cores they would take days.
"""

from __future__ import annotations

import dataclasses

from robojax.agents.sac.config import SACConfig
from robojax.config_utils import (
    check_choice,
    check_non_negative_int,
    check_number,
    check_positive_int,
    field,
    renamed,
)

TASKS = ("hover", "track")
RUN_TASKS = ("hover", "track", "both")


def default_teacher_sac() -> SACConfig:
    """The teachers' SAC: smaller critics than the paper's 3x256 so 32 teachers fit a CPU budget."""
    return SACConfig(
        actor_hidden_dims=(64, 64),
        critic_hidden_dims=(64, 64),
        critic_ensemble_size=2,
        critic_subset_size=2,
        use_layer_norm=True,
        batch_size=128,
        actor_lr=1e-3,
        critic_lr=1e-3,
        temperature_lr=1e-3,
        init_temperature=0.1,
        target_entropy=-2.0,  # the paper's value (pre_training/config.h)
        tau=0.02,
    )


@renamed(env_steps="total_env_steps")
@dataclasses.dataclass(frozen=True)
class TeacherConfig:
    """One SAC teacher per sampled quadrotor, all trained in one jitted, vmapped loop."""

    num_envs: int = field(4, "Envs per teacher (all on that teacher's quadrotor).")
    total_env_steps: int = field(150_000, "Env transitions per teacher (summed over its envs).")
    learning_starts: int = field(2_000, "Transitions of uniform random actions per teacher before updates.")
    steps_per_iteration: int = field(250, "Vectorised env steps per jitted call.")
    privileged: bool = field(
        True,
        "Teachers observe the privileged observation: the student's 22 values plus the"
        " true motor speeds (False: the student's 22 values only).",
    )
    observe_disturbance: bool = field(
        True,
        "Privileged teachers also observe the episode's external-force draw (29 values; the paper's teachers"
        " observe f_ext). Needs privileged.",
    )
    episode_length: int = field(500, "Teacher episode length in control steps (paper: 500 at 100 Hz).")
    sac: SACConfig = dataclasses.field(default_factory=default_teacher_sac)

    def __post_init__(self):
        check_positive_int(self, "num_envs", "total_env_steps", "steps_per_iteration", "episode_length")
        check_non_negative_int(self, "learning_starts")
        if self.observe_disturbance and not self.privileged:
            raise ValueError(
                "TeacherConfig.observe_disturbance needs privileged=True (the force comes after the"
                " motor speeds in the teacher observation); set observe_disturbance=False too"
            )
        if not isinstance(self.sac, SACConfig):
            raise TypeError(f"TeacherConfig.sac must be a SACConfig, got {type(self.sac).__name__}")

    @property
    def observation_size(self) -> int:
        """Values of `info["teacher_obs"]` the teachers see (a prefix: student 22, motors 4, force 3)."""
        return 22 + 4 * self.privileged + 3 * self.observe_disturbance

    @property
    def iterations(self) -> int:
        """Jitted calls needed to reach `total_env_steps` per teacher."""
        per_call = self.num_envs * self.steps_per_iteration
        return -(-self.total_env_steps // per_call)


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """Meta-imitation: teacher warm-up epochs, then on-policy student epochs, dataset rebuilt each epoch."""

    epochs: int = field(100, "Distillation epochs (paper: 1000).")
    warmup_epochs: int = field(3, "First epochs roll out the teachers instead of the student (paper: 10).")
    episodes_per_quadrotor: int = field(4, "Episodes collected per training quadrotor each epoch (paper: 10).")
    episode_length: int = field(500, "Steps per collected episode; BPTT runs over all of them (paper: 500).")
    batch_size: int = field(32, "Episodes per gradient step (paper: 64).")
    updates_per_epoch: int = field(16, "Gradient steps per epoch, each on a shuffled batch of episodes.")
    learning_rate: float = field(3e-3, "Adam learning rate (paper: 1e-4 over 1000 epochs).")
    grad_clip: float = field(1.0, "Global gradient-norm clip.")
    recurrent: bool = field(True, "GRU student (False: the non-recurrent ablation of the same size).")
    position_correction: bool = field(
        False,
        "Shift the student's position input during distillation by each teacher's measured steady-state"
        " hover offset (RLtools' STEADY_STATE_POSITION_CORRECTION), so teachers' biases are not imitated.",
    )

    def __post_init__(self):
        check_positive_int(
            self, "epochs", "episodes_per_quadrotor", "episode_length", "batch_size", "updates_per_epoch"
        )
        check_non_negative_int(self, "warmup_epochs")
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"DistillConfig.warmup_epochs ({self.warmup_epochs}) cannot exceed epochs ({self.epochs})")
        check_number(self, "learning_rate", "grad_clip", allow_bool=True, expected="a positive number")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation: quadrotors from a separate key stream, never used in distillation."""

    num_quadrotors: int = field(
        8, "Held-out quadrotors that also get their own oracle teacher (the three-way comparison)."
    )
    episodes_per_quadrotor: int = field(4, "Evaluation episodes per held-out quadrotor and task.")
    wide_quadrotors: int = field(
        64,
        "More held-out quadrotors (a third key stream, no teachers) that the students fly zero-shot for the"
        " headline figures, episodes_per_quadrotor each: 64 x 4 = 256 episodes per task (0: none).",
    )
    episode_length: int = field(500, "Evaluation episode length in control steps.")
    plot_quadrotors: int = field(3, "Held-out quadrotors drawn in the tracking-trajectory plot.")

    def __post_init__(self):
        check_positive_int(self, "num_quadrotors", "episodes_per_quadrotor", "episode_length", "plot_quadrotors")
        check_non_negative_int(self, "wide_quadrotors")


@renamed(checkpoint_every="checkpoint_interval")  # was an argument of train.run
@dataclasses.dataclass(frozen=True)
class RaptorConfig:
    """A whole RAPTOR run: teachers, distillation, evaluation."""

    num_teachers: int = field(32, "Training quadrotors, one SAC teacher each (paper: 1000).")
    task: str = field(
        "both",
        "hover, track or both. Teachers train on tracking for 'track' and 'both' (hover is tracking a"
        " still reference); distillation collects episodes on the named task(s); evaluation always"
        " reports both.",
    )
    seed: int = field(0, "Seed of every random stream (training and held-out quadrotors use separate streams).")
    workdir: str | None = field(
        None,
        "Run directory; a rerun with the same one skips finished stages (None: the"
        " experiment makes up runs/raptor_<time>).",
    )
    checkpoint_interval: int = field(50, "Teacher iterations between checkpoints.")
    progress_bar: bool = field(True, "Progress bars when stderr is a terminal.")
    teacher: TeacherConfig = dataclasses.field(default_factory=TeacherConfig)
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)

    def __post_init__(self):
        check_positive_int(self, "num_teachers", "checkpoint_interval")
        check_choice(self, "task", RUN_TASKS, shown=RUN_TASKS)
        check_non_negative_int(self, "seed")
        for name, cls in (("teacher", TeacherConfig), ("distill", DistillConfig), ("eval", EvalConfig)):
            if not isinstance(getattr(self, name), cls):
                raise TypeError(
                    f"RaptorConfig.{name} must be a {cls.__name__}, got {type(getattr(self, name)).__name__}"
                )

    @property
    def teacher_task(self) -> str:
        """The env the teachers train on: tracking covers hovering (a still reference)."""
        return "hover" if self.task == "hover" else "track"

    @property
    def distill_tasks(self) -> tuple[str, ...]:
        return TASKS if self.task == "both" else (self.task,)
