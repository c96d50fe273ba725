"""Train a Diffusion Policy (or the MSE baseline) on an episode dataset, evaluating in MJX envs.

    python -m experiments.collect_demos --env=arm_push_cube --num_episodes=200 --out=data/push
    python -m experiments.train_diffusion_policy --dataset=data/push --workdir=runs/dp_push
    python -m experiments.train_diffusion_policy --dataset=data/push --workdir=runs/dp_push --resume
    python -m experiments.train_diffusion_policy --dataset=data/pick --workdir=runs/mse_pick --objective=mse

Every field of `TrainConfig`, `DiffusionPolicyConfig` and `InferenceConfig` is a flag of the same
name (widths as comma-separated lists, e.g. `--down_dims=32,64,128`); the inference flags pick how
the periodic evaluation samples actions (`--inference=ddpm|ddim|rti`). The run directory receives
checkpoints/, metrics.jsonl, tensorboard/, config.json and the final policy/ (EMA weights), which
`python -m experiments.eval_policy --checkpoint=RUN_DIR` evaluates.
"""

from __future__ import annotations

import dataclasses
import os
import time
import typing

from absl import app, flags
from absl import logging as absl_logging

import robojax  # noqa: F401  (sets XLA CPU flags before JAX initialises)
from robojax.agents.diffusion_policy.config import DiffusionPolicyConfig, InferenceConfig, TrainConfig
from robojax.compile_cache import enable_compilation_cache

_TRAIN_FIELDS = tuple(f for f in dataclasses.fields(TrainConfig) if f.name not in ("policy", "inference"))
_POLICY_FIELDS = tuple(dataclasses.fields(DiffusionPolicyConfig))
_INFERENCE_FIELDS = tuple(dataclasses.fields(InferenceConfig))

_COMPILE_CACHE = flags.DEFINE_string(
    "compile_cache_dir",
    os.environ.get("ROBOJAX_JAX_CACHE", os.path.expanduser("~/.cache/robojax/jax_cache")),
    "Persistent JAX compilation cache ('' turns it off).",
)


def define_flag(field: dataclasses.Field, default=None) -> None:
    """An absl flag named and documented like the config field, with the config's default."""
    kind, help_ = field.type, field.metadata.get("help", field.name)
    default = field.default if default is None else default
    if kind == "bool":
        flags.DEFINE_boolean(field.name, default, help_)
    elif kind == "int":
        flags.DEFINE_integer(field.name, default, help_)
    elif kind == "float":
        flags.DEFINE_float(field.name, default, help_)
    elif kind in ("str", "str | None"):
        flags.DEFINE_string(field.name, default, help_)
    elif kind == "tuple[int, ...]":
        flags.DEFINE_list(field.name, [str(v) for v in default], help_)
    else:
        raise TypeError(f"no flag type for config field {field.name}: {kind}")


def flag_value(field: dataclasses.Field):
    value = flags.FLAGS[field.name].value
    if field.type == "tuple[int, ...]":
        try:
            return tuple(int(v) for v in value)
        except ValueError:
            raise ValueError(f"--{field.name} needs comma-separated integers, got {','.join(value)!r}") from None
    if field.type == "str | None" and value == "":
        return None
    return value


for _f in _TRAIN_FIELDS + _POLICY_FIELDS + _INFERENCE_FIELDS:
    define_flag(_f)

FLAGS = flags.FLAGS


def config_from_flags() -> TrainConfig:
    """The validated config; a run directory is made up when none is given."""
    values = {f.name: flag_value(f) for f in _TRAIN_FIELDS}
    if values["workdir"] is None:
        name = os.path.basename(os.path.normpath(values["dataset"] or "dataset"))
        values["workdir"] = os.path.join("runs", f"dp_{name}_{time.strftime('%Y%m%d-%H%M%S')}")
    policy = DiffusionPolicyConfig(**{f.name: flag_value(f) for f in _POLICY_FIELDS})
    inference = InferenceConfig(**{f.name: flag_value(f) for f in _INFERENCE_FIELDS})
    return TrainConfig(**values, policy=policy, inference=inference)



def main(argv: typing.Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected positional arguments: {' '.join(argv[1:])}")
    try:
        config = config_from_flags()
    except (TypeError, ValueError) as e:
        raise app.UsageError(str(e)) from None
    if not FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every save at INFO
    enable_compilation_cache(_COMPILE_CACHE.value)
    from robojax.agents.diffusion_policy.train import train
    from robojax.checkpoint import CheckpointMismatchError
    from robojax.data.episodes import DatasetError

    if config.resume:
        print(f"resuming the run in {os.path.abspath(config.workdir)}", flush=True)
    try:
        result = train(config)
    except (FileNotFoundError, FileExistsError, NotADirectoryError, CheckpointMismatchError, DatasetError) as e:
        raise app.UsageError(str(e)) from None
    success = "n/a" if result.final_success is None else f"{100 * result.final_success:.1f}%"
    print(
        f"final success {success} after {result.steps:,d} gradient steps in {result.wall_s:.0f} s"
        f" (first call incl. compile {result.first_call_s:.0f} s)\n"
        f"run directory: {result.workdir} (metrics.jsonl, tensorboard/, policy/, checkpoints/)",
        flush=True,
    )


if __name__ == "__main__":
    app.run(main)
