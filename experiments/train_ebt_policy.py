"""Train an EBT-Policy (energy-based transformer, few-step energy descent) on an episode dataset.

    python -m experiments.collect_demos --env=arm_push_cube --num_episodes=200 --out=data/push
    python -m experiments.train_ebt_policy --dataset=data/push --workdir=runs/ebt_push
    python -m experiments.train_ebt_policy --dataset=data/push --workdir=runs/ebt_push --resume
    python -m experiments.train_ebt_policy --dataset=data/push --preset=s1 --workdir=runs/ebt_s1

Every field of `TrainConfig` and of its nested `EBTPolicyConfig` and `InferenceConfig` is a flag
of the same name; `--preset=authors|s1|s2` starts from one of EBTPolicyConfig's presets (flags
given explicitly still override it). The inference flags pick how the periodic success evaluation
plans (`--inference_steps`, `--adaptive`, `--num_samples`, `--warm_start`, `--escalate`). The run
directory receives checkpoints/, metrics.jsonl, tensorboard/, config.json and the final policy/
(EMA weights), which `python -m experiments.eval_policy --checkpoint=RUN_DIR --inference=ebt`
evaluates and `python -m experiments.export_policy` exports.
"""

from __future__ import annotations

import dataclasses
import os
import typing

from absl import app, flags

import robojax  # noqa: F401  (sets XLA CPU flags before JAX initialises)
from experiments import flags as config_flags
from robojax.agents.ebt_policy.config import EBTPolicyConfig, TrainConfig

# The policy's and the inference settings' fields keep their plain names (--width, --inference_steps).
_PREFIXES = {"policy": "", "inference": ""}
PRESETS = ("default", "authors", "s1", "s2")

_COMPILE_CACHE = config_flags.define_compile_cache_flag()
_PRESET = flags.DEFINE_enum(
    "preset",
    "default",
    PRESETS,
    "EBTPolicyConfig preset the policy flags start from: default (the authors' recipe at CPU widths),"
    " authors (their widths), s1 or s2 (EBT's recipes).",
)
config_flags.define_config_flags(TrainConfig, prefixes=_PREFIXES)

FLAGS = flags.FLAGS


def config_from_flags() -> TrainConfig:
    """The validated config; a run directory is made up when none is given."""
    overrides = {}
    if FLAGS.workdir is None:
        name = os.path.basename(os.path.normpath(FLAGS.dataset or "dataset"))
        overrides["workdir"] = config_flags.default_workdir("ebt", name)
    if _PRESET.value == "default":
        return config_flags.config_from_flags(TrainConfig, prefixes=_PREFIXES, overrides=overrides)
    # A preset: the policy fields whose flags were left alone take the preset's values.
    preset = getattr(EBTPolicyConfig, _PRESET.value)()
    base = config_flags.config_from_flags(TrainConfig, prefixes=_PREFIXES, overrides=overrides, skip=("policy",))
    base = dataclasses.replace(base, policy=preset)
    return config_flags.config_from_flags(
        TrainConfig, prefixes=_PREFIXES, overrides=overrides, base=base, only_set=True
    )


def main(argv: typing.Sequence[str]) -> None:
    config = config_flags.start_experiment(argv, config_from_flags, _COMPILE_CACHE.value)
    from robojax.agents.ebt_policy.train import train
    from robojax.data.episodes import DatasetError

    result = config_flags.train_or_usage_error(train, config, (DatasetError,))
    config_flags.report_chunk_training(result)


if __name__ == "__main__":
    app.run(main)
