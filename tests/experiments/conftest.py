"""Experiment modules define absl flags on import into the one global FLAGS, and several define the
same names (`--seed`, `--env`, ...). Each CLI runs alone, so that is right for them, but pytest
imports them all into one process. `load_experiment` drops every flag an `experiments.*` or
`benchmarks.*` module registered, then (re)imports the wanted module, so its own flags, with its own defaults, are the
ones registered while its tests run; `experiment_flag_fixtures` gives a test module the fixtures
that keep it that way and let each test change flags freely.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

import pytest
from absl import flags
from absl.testing import flagsaver

from benchmarks.targets import drop_script_flags

# The repository root (where `python -m experiments.<name>` runs).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_experiment(name: str) -> ModuleType:
    """Import (or re-import) `experiments.<name>` with only its own experiment flags registered."""
    drop_script_flags()
    full_name = f"experiments.{name}"
    if full_name in sys.modules:
        return importlib.reload(sys.modules[full_name])
    return importlib.import_module(full_name)


def experiment_flag_fixtures(name: str) -> tuple:
    """Autouse fixtures for a test module of `experiments.<name>`; assign both at module level.

    The first (module scope) reloads the experiment so its flags are the registered ones while the
    module's tests run; the second marks the flags parsed and restores every flag after each test.
    """

    @pytest.fixture(autouse=True, scope="module")
    def _own_experiment_flags():
        load_experiment(name)

    @pytest.fixture(autouse=True)
    def parsed_flags():
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        with flagsaver.flagsaver():
            yield

    return _own_experiment_flags, parsed_flags


def assert_flags_cover_config(experiment: ModuleType, config_cls: type, **set_flags) -> None:
    """Every field of `config_cls` and of its nested configs is a flag, and the flags' defaults (plus
    `set_flags`) build exactly `config_cls(**set_flags)`."""
    import dataclasses

    from robojax.config_utils import nested_config_types

    nested = nested_config_types(config_cls)
    fields = [f for f in dataclasses.fields(config_cls) if f.name not in nested]
    for inner in nested.values():
        fields += list(dataclasses.fields(inner))
    for field in fields:
        assert field.name in flags.FLAGS, field.name
    with flagsaver.flagsaver(**set_flags):
        config = experiment.config_from_flags()
    assert config == config_cls(**set_flags)
