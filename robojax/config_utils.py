"""Shared pieces of the config dataclasses and of the experiments' absl flags built from them.

Fields: `field(default, help)` attaches the help string that becomes the flag's help. Checks:
`check_*` raise naming `ClassName.field` (for `__post_init__`). Flags: `define_flags` turns config
fields into absl flags of the same name (optionally prefixed) and `values_from_flags` reads them
back as config keyword arguments; `define_compile_cache_flag` is the experiments' `--compile_cache_dir`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable, Iterable, Sequence

from absl import flags

# Flags defined through the helpers below belong to the module that calls them (an experiment),
# not to this one: that keeps them in the experiment's --helpshort and lets
# tests/experiments/conftest.py::load_experiment drop them by module name.
flags.disclaim_key_flags()


# --------------------------------------------------------------------------------------------- fields


def field(default: Any, help: str) -> Any:
    """A dataclass field with `default` and a `help` string in its metadata (the flag's help)."""
    return dataclasses.field(default=default, metadata={"help": help})


# --------------------------------------------------------------------------------------------- checks


def _fail(obj: Any, name: str, expected: str, value: Any) -> None:
    raise ValueError(f"{type(obj).__name__}.{name} must be {expected}, got {value!r}")


def check_int(obj: Any, *names: str, minimum: int = 1, expected: str | None = None) -> None:
    """Raise ValueError unless every named field is an int (not a bool) >= `minimum`.

    The message says `must be <expected>`, by default `an integer >= <minimum>`.
    """
    expected = expected or f"an integer >= {minimum}"
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            _fail(obj, name, expected, value)


def check_positive_int(obj: Any, *names: str) -> None:
    """Raise ValueError unless every named field is an int >= 1 ("must be a positive integer")."""
    check_int(obj, *names, minimum=1, expected="a positive integer")


def check_non_negative_int(obj: Any, *names: str) -> None:
    """Raise ValueError unless every named field is an int >= 0 ("must be a non-negative integer")."""
    check_int(obj, *names, minimum=0, expected="a non-negative integer")


def check_number(
    obj: Any, *names: str, allow_zero: bool = False, allow_bool: bool = False, expected: str | None = None
) -> None:
    """Raise ValueError unless every named field is a finite int or float > 0 (>= 0 with `allow_zero`).

    Bools are rejected unless `allow_bool`. The message says `must be <expected>`, by default
    `a finite number > 0` (or `>= 0`).
    """
    expected = expected or f"a finite number {'>= 0' if allow_zero else '> 0'}"
    for name in names:
        value = getattr(obj, name)
        ok = isinstance(value, (int, float)) and (allow_bool or not isinstance(value, bool)) and math.isfinite(value)
        if not (ok and (value >= 0 if allow_zero else value > 0)):
            _fail(obj, name, expected, value)


def check_choice(obj: Any, name: str, choices: Sequence[Any], shown: Any = None) -> None:
    """Raise ValueError unless the field's value is one of `choices`.

    The message lists `shown`, by default `list(choices)`.
    """
    value = getattr(obj, name)
    if value not in choices:
        _fail(obj, name, f"one of {list(choices) if shown is None else shown}", value)


def check_dims(obj: Any, name: str, what: str = "widths") -> None:
    """Raise unless the field is a non-empty tuple of positive ints (layer or channel widths).

    TypeError for a list, string or other non-tuple; ValueError for an empty tuple or a bad width.
    `what` names the widths in the messages.
    """
    dims = getattr(obj, name)
    if isinstance(dims, (list, str)) or not isinstance(dims, tuple):
        raise TypeError(f"{type(obj).__name__}.{name} must be a tuple of {what}, got {dims!r}")
    if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
        raise ValueError(f"{type(obj).__name__}.{name} needs one or more positive {what}, got {dims!r}")


# --------------------------------------------------------------------------------------------- flags

_INT_TUPLE = "tuple[int, ...]"
_OPTIONAL = ("str | None", "float | None")
_FIELD_DEFAULT = object()


def define_flag(
    field: dataclasses.Field, default: Any = _FIELD_DEFAULT, name: str | None = None,
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
    elif kind == "int":
        flags.DEFINE_integer(name, default, help_, flag_values=flag_values)
    elif kind in ("float", "float | None"):
        flags.DEFINE_float(name, default, help_, flag_values=flag_values)
    elif kind in ("str", "str | None"):
        flags.DEFINE_string(name, default, help_, flag_values=flag_values)
    elif kind == _INT_TUPLE:
        flags.DEFINE_list(name, [str(v) for v in default], help_, flag_values=flag_values)
    else:
        raise TypeError(f"no flag type for config field {field.name}: {kind}")


def define_flags(
    fields: Iterable[dataclasses.Field], defaults: Any = None, prefix: str = "",
    flag_values: flags.FlagValues = flags.FLAGS,
) -> None:
    """One flag per field, named `prefix + field.name`; defaults from the `defaults` config instance
    when given, else the fields' own defaults."""
    for f in fields:
        default = f.default if defaults is None else getattr(defaults, f.name)
        define_flag(f, default, name=prefix + f.name, flag_values=flag_values)


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


def values_from_flags(
    fields: Iterable[dataclasses.Field], flag_values: flags.FlagValues = flags.FLAGS, prefix: str = "",
    only_set: bool = False,
) -> dict[str, Any]:
    """Config keyword arguments `{field.name: value}` from the flags `define_flags` made for `fields`.

    only_set: leave out flags left at their default (so the config's own defaults apply).
    """
    return {
        f.name: flag_value(f, flag_values, prefix + f.name)
        for f in fields
        if not (only_set and flag_values[prefix + f.name].using_default_value)
    }


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
