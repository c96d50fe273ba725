"""Train SAC on a robojax task with the on-device loop.

    python -m experiments.train_sac                                  # cartpole_balance, defaults
    python -m experiments.train_sac --env=pendulum_swingup --workdir=runs/sac_pendulum
    python -m experiments.train_sac --workdir=runs/sac_pendulum --env=pendulum_swingup --resume

Every field of `TrainConfig` and `SACConfig` is a flag of the same name (layer widths as
comma-separated lists, e.g. `--critic_hidden_dims=128,128`). The run directory receives
checkpoints, `metrics.jsonl`, TensorBoard events, `learning_curve.png` and the final `policy/`.
"""

from __future__ import annotations

import dataclasses
import os
import time
import typing

from absl import app, flags
from absl import logging as absl_logging

from robojax.agents.sac.config import SACConfig, TrainConfig

_SAC_FIELDS = tuple(f for f in dataclasses.fields(SACConfig))
_TRAIN_FIELDS = tuple(f for f in dataclasses.fields(TrainConfig) if f.name != "sac")

_COMPILE_CACHE = flags.DEFINE_string(
    "compile_cache_dir",
    os.environ.get("ROBOJAX_JAX_CACHE", os.path.expanduser("~/.cache/robojax/jax_cache")),
    "Persistent JAX compilation cache ('' turns it off).",
)


def _define(field: dataclasses.Field, default) -> None:
    """An absl flag named and documented like the config field, with the config's default."""
    kind, help_ = field.type, field.metadata.get("help", field.name)
    if kind == "bool":
        flags.DEFINE_boolean(field.name, default, help_)
    elif kind == "int":
        flags.DEFINE_integer(field.name, default, help_)
    elif kind in ("float", "float | None"):
        flags.DEFINE_float(field.name, default, help_)
    elif kind in ("str", "str | None"):
        flags.DEFINE_string(field.name, default, help_)
    elif kind == "tuple[int, ...]":
        flags.DEFINE_list(field.name, [str(v) for v in default], help_)
    else:
        raise TypeError(f"no flag type for config field {field.name}: {kind}")


for _field in _TRAIN_FIELDS:
    _define(_field, _field.default)
for _field in _SAC_FIELDS:
    _define(_field, _field.default)

FLAGS = flags.FLAGS


def _value(field: dataclasses.Field):
    value = FLAGS[field.name].value
    if field.type == "tuple[int, ...]":
        try:
            return tuple(int(v) for v in value)
        except ValueError:
            raise ValueError(f"--{field.name} needs comma-separated integers, got {','.join(value)!r}") from None
    if field.type == "str | None" and value == "":
        return None
    return value


def config_from_flags() -> TrainConfig:
    """Build the validated config from parsed flags; a run directory is made up when none is given."""
    import envs

    values = {f.name: _value(f) for f in _TRAIN_FIELDS}
    envs.task_class(values["env"])  # unknown names raise with the valid list and close matches
    if values["workdir"] is None:
        values["workdir"] = os.path.join("runs", f"sac_{values['env']}_{time.strftime('%Y%m%d-%H%M%S')}")
    sac = SACConfig(**{f.name: _value(f) for f in _SAC_FIELDS})
    return TrainConfig(**values, sac=sac)


def enable_compilation_cache(directory: str) -> None:
    """Persist compiled XLA programs so that reruns skip most of the compile time."""
    import jax

    if not directory:
        return
    os.makedirs(directory, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def main(argv: typing.Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected positional arguments: {' '.join(argv[1:])}")
    try:
        config = config_from_flags()
    except (TypeError, ValueError) as e:
        raise app.UsageError(str(e)) from None
    if not FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every save step at INFO
    enable_compilation_cache(_COMPILE_CACHE.value)
    if config.resume:
        print(f"resuming the run in {os.path.abspath(config.workdir)}", flush=True)
    from robojax.agents.sac.train import train
    from robojax.checkpoint import CheckpointMismatchError

    try:
        result = train(config)
    except (FileNotFoundError, FileExistsError, NotADirectoryError, CheckpointMismatchError) as e:
        # Bad run directories and mismatched checkpoints are usage errors: say what to change.
        raise app.UsageError(str(e)) from None
    print(
        f"final eval return {result.final_eval_return:.1f} after {result.env_steps:,d} env steps"
        f" in {result.wall_s:.0f} s (first iteration incl. compile {result.first_iteration_s:.0f} s)\n"
        f"run directory: {result.workdir} (metrics.jsonl, tensorboard/, learning_curve.png, policy/, checkpoints/)"
    )


if __name__ == "__main__":
    app.run(main)
