"""The training-loop config every demonstration-trained chunk policy shares (no JAX imported here).

A learner's `TrainConfig` derives from `ChunkTrainConfig` and adds two nested configs, `policy`
(the learner's config) and `inference` (how evaluation plans), typed with their classes so that
`experiments.flags` and `config_utils.from_dict` find them.
"""

from __future__ import annotations

import dataclasses

from robojax.config_utils import check_int, check_non_negative_int, field, nested_config_types


@dataclasses.dataclass(frozen=True)
class ChunkTrainConfig:
    """The training loop: dataset, run directory, evaluation and checkpoints."""

    dataset: str = field("", "Episode dataset directory (robojax.episodes/1, from experiments.collect_demos).")
    workdir: str | None = field(None, "Run directory for checkpoints, metrics and the final policy (None: no files).")
    seed: int = field(0, "Seed of every random stream in the run.")
    max_episodes: int = field(0, "Use only the first N episodes of the dataset (0: all).")
    updates_per_call: int = field(100, "Gradient steps inside one jitted lax.scan call.")
    eval_interval: int = field(5_000, "Gradient steps between success-rate evaluations (0: only at the end).")
    eval_episodes: int = field(50, "Episodes per evaluation, run as one batch of envs.")
    eval_env: str = field("", "Env for evaluation ('' = the dataset's env; 'none' = no evaluation).")
    eval_episode_length: int = field(0, "Control steps per evaluation episode (0: the task's own).")
    checkpoint_interval: int = field(5_000, "Gradient steps between checkpoints (also one at the end).")
    checkpoints_to_keep: int = field(2, "Most recent checkpoints kept on disk.")
    resume: bool = field(False, "Continue from the latest checkpoint in workdir.")
    progress_bar: bool = field(True, "Show a progress bar when stderr is a terminal.")

    def __post_init__(self):
        name = type(self).__name__
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError(f"{name}.dataset must name an episode dataset directory (--dataset=DIR)")
        check_non_negative_int(self, "seed")
        for field_name in ("updates_per_call", "eval_episodes", "checkpoint_interval", "checkpoints_to_keep"):
            check_int(self, field_name)
        for field_name in ("max_episodes", "eval_interval", "eval_episode_length"):
            check_int(self, field_name, minimum=0)
        if self.resume and not self.workdir:
            raise ValueError(f"{name}.resume needs a workdir to resume from")
        nested = nested_config_types(type(self))
        for field_name in ("policy", "inference"):
            expected = nested.get(field_name)
            if expected is None:
                raise TypeError(f"{name} must declare a nested `{field_name}` config field")
            value = getattr(self, field_name)
            if not isinstance(value, expected):
                raise TypeError(f"{name}.{field_name} must be a {expected.__name__}, got {type(value).__name__}")
        self.inference.check_against(self.policy)
