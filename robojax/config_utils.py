"""Shared pieces of the (frozen, possibly nested) config dataclasses of every learner.

Fields: `field(default, help)` attaches the help string that becomes the flag's help
(`experiments/flags.py` makes the flags). Checks: `check_*` raise naming `ClassName.field` (for
`__post_init__`). Renames: `@renamed(old="new")` makes an old keyword a clear error and lets
`from_dict` read configs saved under the old names. Serialisation: `to_dict` / `from_dict` for every
config dataclass (nested configs become dicts, tuples lists, and back).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from collections.abc import Mapping, Sequence
from typing import Any

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


# --------------------------------------------------------------------------------------------- renames


def renamed(**old_to_new: str):
    """Class decorator (outside `@dataclass`) for fields renamed to the shared vocabulary.

    Constructing the config with an old keyword raises a TypeError naming the new one; `from_dict`
    maps old names to the new ones, so configs saved by older runs (checkpoints, config.json) still
    load for resume and export; `experiments/flags.py` turns old flag names into clear errors.
    """

    def wrap(cls):
        names = {f.name for f in dataclasses.fields(cls)}
        for old, new in old_to_new.items():
            if new not in names:
                raise TypeError(f"@renamed({old}={new!r}): {cls.__name__} has no field {new!r}")
        cls.__renamed_fields__ = {**getattr(cls, "__renamed_fields__", {}), **old_to_new}
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            for old in kwargs:
                if old in cls.__renamed_fields__:
                    raise TypeError(f"{cls.__name__}.{old} was renamed {cls.__renamed_fields__[old]}")
            init(self, *args, **kwargs)

        cls.__init__ = __init__
        return cls

    return wrap


def renamed_fields(cls: type) -> dict[str, str]:
    """`{old name: new name}` of a config class decorated with `@renamed` (empty otherwise)."""
    return dict(getattr(cls, "__renamed_fields__", {}))


# --------------------------------------------------------------------------------------------- dicts


def nested_config_types(cls: type) -> dict[str, type]:
    """`{field name: config class}` of the fields of `cls` that hold a nested config dataclass."""
    hints = typing.get_type_hints(cls)
    return {
        f.name: hints[f.name]
        for f in dataclasses.fields(cls)
        if isinstance(hints.get(f.name), type) and dataclasses.is_dataclass(hints[f.name])
    }


def to_dict(config: Any) -> dict:
    """A JSON-friendly dict of a config dataclass (nested configs become dicts, tuples lists)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"to_dict needs a config dataclass instance, got {config!r}")
    return _json_ready(dataclasses.asdict(config))


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def from_dict(cls: type, values: Mapping[str, Any]) -> Any:
    """Rebuild a config dataclass from `to_dict` output: lists back to tuples, nested configs rebuilt.

    Keys left out take the field defaults; old names of `@renamed` fields map to the new ones;
    an unknown key raises a ValueError naming it and the valid keys.
    """
    if not isinstance(values, Mapping):
        raise TypeError(f"{cls.__name__} from_dict needs a mapping of field values, got {values!r}")
    names = [f.name for f in dataclasses.fields(cls)]
    renames = renamed_fields(cls)
    nested = nested_config_types(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        name = renames.get(key, key)
        if name not in names:
            raise ValueError(f"{cls.__name__} has no field {key!r}; valid fields: {', '.join(names)}")
        if name in kwargs:
            old = next(o for o, n in renames.items() if n == name and o in values)
            raise ValueError(f"{cls.__name__}: both {old!r} and its new name {name!r} are given; keep {name!r}")
        if name in nested and isinstance(value, Mapping):
            value = from_dict(nested[name], value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)
