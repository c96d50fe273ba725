"""absl flags built from the config dataclasses, and the common opening of an experiment's `main`.

Every field of a config, nested configs included, becomes one flag documented by the field's help:

    define_config_flags(RaptorConfig, skip=("distill.recurrent",))   # --num_teachers, --teacher_sac..
    config = config_from_flags(RaptorConfig, skip=("distill.recurrent",))

A nested config's flags carry its field name as a prefix (`--teacher_total_env_steps` for
`RaptorConfig.teacher.total_env_steps`), unless `prefixes` maps its dotted path to another prefix
(`{"sac": ""}`: SAC's fields keep their plain names). Old names of `@renamed` fields become flags
that only say the new name (`--eval_every was renamed --eval_interval`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from absl import flags

from robojax.config_utils import nested_config_types, renamed_fields

# Flags defined through the helpers below belong to the module that calls them (an experiment),
# not to this one: that keeps them in the experiment's --helpshort and lets
# tests/experiments/conftest.py::load_experiment drop them by module name.
flags.disclaim_key_flags()

_INT_TUPLE = "tuple[int, ...]"
_OPTIONAL = ("str | None", "float | None", "int | None")
_FIELD_DEFAULT = object()


# --------------------------------------------------------------------------------------------- one field


def define_flag(
    field: dataclasses.Field,
    default: Any = _FIELD_DEFAULT,
    name: str | None = None,
    flag_values: flags.FlagValues = flags.FLAGS,
) -> None:
    """An absl flag named (`name`, default the field's name) and documented like the config field.

    `default` left out means the field's own default. Field types: bool, int, float, str (each also
    `| None` where a flag can hold it) and `tuple[int, ...]` (a comma-separated list).
    """
    kind, help_ = field.type, field.metadata.get("help", field.name)
    name = name or field.name
    default = field.default if default is _FIELD_DEFAULT else default
    if kind == "bool":
        flags.DEFINE_boolean(name, default, help_, flag_values=flag_values)
    elif kind in ("int", "int | None"):
        flags.DEFINE_integer(name, default, help_, flag_values=flag_values)
    elif kind in ("float", "float | None"):
        flags.DEFINE_float(name, default, help_, flag_values=flag_values)
    elif kind in ("str", "str | None"):
        flags.DEFINE_string(name, default, help_, flag_values=flag_values)
    elif kind == _INT_TUPLE:
        flags.DEFINE_list(name, [str(v) for v in default], help_, flag_values=flag_values)
    else:
        raise TypeError(f"no flag type for config field {field.name}: {kind}")


def flag_value(field: dataclasses.Field, flag_values: flags.FlagValues = flags.FLAGS, name: str | None = None) -> Any:
    """The parsed value of the field's flag as the config wants it: int tuples, None for '' in `| None` fields."""
    name = name or field.name
    value = flag_values[name].value
    if field.type == _INT_TUPLE:
        try:
            return tuple(int(v) for v in value)
        except ValueError:
            raise ValueError(f"--{name} needs comma-separated integers, got {','.join(value)!r}") from None
    if field.type in _OPTIONAL and value in ("", None):
        return None
    return value


# --------------------------------------------------------------------------------------------- whole configs


@dataclasses.dataclass(frozen=True)
class ConfigFlag:
    """One leaf field of a (nested) config and the flag that sets it."""

    flag: str  # flag name
    path: str  # dotted field path from the top config, e.g. "teacher.sac.batch_size"
    field: dataclasses.Field
    default: Any  # the field's value in the defaults instance


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def config_flags(
    cls: type,
    prefixes: Mapping[str, str] | None = None,
    skip: Sequence[str] = (),
    defaults: Any = None,
    prefix_sep: str = "_",
) -> tuple[list[ConfigFlag], dict[str, str]]:
    """The flags of every leaf field of `cls` and its nested configs, and `{old flag: new flag}` of renames.

    prefixes: dotted path of a nested config -> the prefix of its fields' flags (default: the
        parent's prefix + the field name + `prefix_sep`).
    skip: dotted paths of fields (or whole nested configs) that get no flag.
    defaults: an instance of `cls` giving the flags' defaults (default: the fields' own).
    """
    prefixes = dict(prefixes or {})
    out: list[ConfigFlag] = []
    renames: dict[str, str] = {}

    def walk(cls: type, instance: Any, path: str, prefix: str) -> None:
        nested = nested_config_types(cls)
        for old, new in renamed_fields(cls).items():
            renames[prefix + old] = prefix + new
        for f in dataclasses.fields(cls):
            dotted = f"{path}{f.name}"
            if dotted in skip:
                continue
            value = _field_default(f) if instance is None else getattr(instance, f.name)
            if f.name in nested:
                walk(nested[f.name], value, dotted + ".", prefixes.get(dotted, prefix + f.name + prefix_sep))
            else:
                out.append(ConfigFlag(prefix + f.name, dotted, f, value))

    walk(cls, defaults, "", "")
    seen: dict[str, str] = {}
    for cf in out:
        if cf.flag in seen:
            raise ValueError(
                f"{cls.__name__}: fields {seen[cf.flag]} and {cf.path} would both be --{cf.flag};"
                " give one of their nested configs another prefix"
            )
        seen[cf.flag] = cf.path
    renames = {old: new for old, new in renames.items() if old not in seen}
    return out, renames


def define_config_flags(
    cls: type,
    prefixes: Mapping[str, str] | None = None,
    skip: Sequence[str] = (),
    defaults: Any = None,
    prefix_sep: str = "_",
    flag_values: flags.FlagValues = flags.FLAGS,
) -> list[str]:
    """Define one flag per leaf field of `cls` (see `config_flags`) plus the renamed fields' old flags.

    Returns the flag names defined for the fields.
    """
    leaves, renames = config_flags(cls, prefixes, skip, defaults, prefix_sep)
    for cf in leaves:
        define_flag(cf.field, cf.default, name=cf.flag, flag_values=flag_values)
    for old, new in renames.items():
        if old not in flag_values:
            flags.DEFINE_string(old, None, f"Renamed --{new}.", flag_values=flag_values)
    return [cf.flag for cf in leaves]


def check_renamed_flags(renames: Mapping[str, str], flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Raise ValueError for an old flag name that was set: `--eval_every was renamed --eval_interval`."""
    for old, new in renames.items():
        if old in flag_values and not flag_values[old].using_default_value:
            raise ValueError(f"--{old} was renamed --{new}")


def config_from_flags(
    cls: type,
    prefixes: Mapping[str, str] | None = None,
    skip: Sequence[str] = (),
    overrides: Mapping[str, Any] | None = None,
    base: Any = None,
    only_set: bool = False,
    prefix_sep: str = "_",
    flag_values: flags.FlagValues = flags.FLAGS,
) -> Any:
    """The validated `cls` config (nested configs built too) from the flags `define_config_flags` made.

    overrides: dotted field path -> value used instead of the flag's (e.g. a made-up workdir).
    only_set: fields whose flags were left at their default take `base`'s values (default: the
        class defaults), so another set of defaults than the flags' can apply.
    Skipped fields take `base`'s value, else their defaults.
    """
    leaves, renames = config_flags(cls, prefixes, skip, None, prefix_sep)
    check_renamed_flags(renames, flag_values)
    values: dict[str, Any] = {}
    for cf in leaves:
        if only_set and flag_values[cf.flag].using_default_value:
            continue
        values[cf.path] = flag_value(cf.field, flag_values, cf.flag)
    values.update(overrides or {})

    def build(cls: type, instance: Any, path: str) -> Any:
        nested = nested_config_types(cls)
        kwargs = {}
        for f in dataclasses.fields(cls):
            dotted = f"{path}{f.name}"
            if f.name in nested and dotted not in values:
                sub = None if instance is None else getattr(instance, f.name)
                if sub is None and (only_set or dotted in skip):
                    sub = _field_default(f)
                if sub is not None or any(k.startswith(dotted + ".") for k in values):
                    kwargs[f.name] = build(nested[f.name], sub, dotted + ".")
            elif dotted in values:
                kwargs[f.name] = values[dotted]
        return cls(**kwargs) if instance is None else dataclasses.replace(instance, **kwargs)

    return build(cls, base, "")


# --------------------------------------------------------------------------------------------- experiments


def define_compile_cache_flag(flag_values: flags.FlagValues = flags.FLAGS) -> flags.FlagHolder:
    """The experiments' `--compile_cache_dir` (default $ROBOJAX_JAX_CACHE or ~/.cache/robojax/jax_cache)."""
    return flags.DEFINE_string(
        "compile_cache_dir",
        os.environ.get("ROBOJAX_JAX_CACHE", os.path.expanduser("~/.cache/robojax/jax_cache")),
        "Persistent JAX compilation cache ('' turns it off).",
        flag_values=flag_values,
    )


def start_experiment(argv: Sequence[str], build_config: Callable[[], Any], compile_cache_dir: str) -> Any:
    """The common opening of an experiment's `main`: reject positional arguments, build the config
    from the flags (a bad value becomes a usage error naming it), quiet Orbax's per-save INFO logs
    unless --verbosity was given, and enable the persistent compilation cache. Returns the config."""
    from absl import app
    from absl import logging as absl_logging

    from robojax.compile_cache import enable_compilation_cache

    if len(argv) > 1:
        raise app.UsageError(f"unexpected positional arguments: {' '.join(argv[1:])}")
    try:
        config = build_config()
    except (TypeError, ValueError) as e:
        raise app.UsageError(str(e)) from None
    if not flags.FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every save at INFO
    enable_compilation_cache(compile_cache_dir)
    return config


def default_workdir(learner: str, name: str = "") -> str:
    """A fresh run directory `runs/<learner>_<name>_<time>` for runs given no --workdir."""
    import time

    safe = name.replace(":", "_").replace("/", "_")
    return os.path.join("runs", f"{learner}_{safe + '_' if safe else ''}{time.strftime('%Y%m%d-%H%M%S')}")


def train_or_usage_error(train: Callable[[Any], Any], config: Any, usage_errors: tuple = ()) -> Any:
    """`train(config)`, announcing a resumption; bad run directories, data paths and mismatched
    checkpoints (and `usage_errors`) become usage errors that say what to change."""
    from absl import app

    from robojax.checkpoint import CheckpointMismatchError

    if getattr(config, "resume", False):
        print(f"resuming the run in {os.path.abspath(config.workdir)}", flush=True)
    try:
        return train(config)
    except (FileNotFoundError, FileExistsError, NotADirectoryError, CheckpointMismatchError, *usage_errors) as e:
        raise app.UsageError(str(e)) from None


def report_chunk_training(result: Any) -> None:
    """The closing lines of a demo-trained chunk policy's training experiment (DP, EBT-Policy)."""
    success = "n/a" if result.final_success is None else f"{100 * result.final_success:.1f}%"
    print(
        f"final success {success} after {result.steps:,d} gradient steps in {result.wall_s:.0f} s"
        f" (first iteration incl. compile {result.first_iteration_s:.0f} s)\n"
        f"run directory: {result.workdir} (metrics.jsonl, tensorboard/, policy/, checkpoints/)",
        flush=True,
    )
