"""Train a Diffusion Policy (or the MSE baseline) on an episode dataset, evaluating in MJX envs.

    python -m experiments.collect_demos --env=arm_push_cube --num_episodes=200 --out=data/push
    python -m experiments.train_diffusion_policy --dataset=data/push --workdir=runs/dp_push
    python -m experiments.train_diffusion_policy --dataset=data/push --workdir=runs/dp_push --resume
    python -m experiments.train_diffusion_policy --dataset=data/pick --workdir=runs/mse_pick --objective=mse

Every field of `TrainConfig` and of its nested `DiffusionPolicyConfig` and `InferenceConfig` is a
flag of the same name (widths as comma-separated lists, e.g. `--down_dims=32,64,128`); the inference flags pick how
the periodic evaluation samples actions (`--inference=ddpm|ddim|rti`). The run directory receives
checkpoints/, metrics.jsonl, tensorboard/, config.json and the final policy/ (EMA weights), which
`python -m experiments.eval_policy --checkpoint=RUN_DIR` evaluates.
"""

from __future__ import annotations

import os
import typing

from absl import app, flags

import robojax  # noqa: F401  (sets XLA CPU flags before JAX initialises)
from experiments import flags as config_flags
from robojax.agents.diffusion_policy.config import TrainConfig

# The policy's and the inference settings' fields keep their plain names (--down_dims, --ddim_steps).
_PREFIXES = {"policy": "", "inference": ""}

_COMPILE_CACHE = config_flags.define_compile_cache_flag()
config_flags.define_config_flags(TrainConfig, prefixes=_PREFIXES)

FLAGS = flags.FLAGS


def config_from_flags() -> TrainConfig:
    """The validated config; a run directory is made up when none is given."""
    overrides = {}
    if FLAGS.workdir is None:
        name = os.path.basename(os.path.normpath(FLAGS.dataset or "dataset"))
        overrides["workdir"] = config_flags.default_workdir("dp", name)
    return config_flags.config_from_flags(TrainConfig, prefixes=_PREFIXES, overrides=overrides)


def main(argv: typing.Sequence[str]) -> None:
    config = config_flags.start_experiment(argv, config_from_flags, _COMPILE_CACHE.value)
    from robojax.agents.diffusion_policy.train import train
    from robojax.data.episodes import DatasetError

    result = config_flags.train_or_usage_error(train, config, (DatasetError,))
    config_flags.report_chunk_training(result)


if __name__ == "__main__":
    app.run(main)
