"""Experiment modules define absl flags on import into the one global FLAGS, and several define the
same names (`--seed`, `--env`, ...). Each CLI runs alone, so that is right for them, but pytest
imports them all into one process. `load_experiment` drops every flag an `experiments.*` module
registered, then (re)imports the wanted module, so its own flags, with its own defaults, are the
ones registered while its tests run.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from absl import flags


def load_experiment(name: str) -> ModuleType:
    """Import (or re-import) `experiments.<name>` with only its own experiment flags registered."""
    # Copy first: deleting a flag also removes it from these live per-module lists.
    taken = [flag.name for module, module_flags in flags.FLAGS.flags_by_module_dict().items()
             if module.startswith("experiments.") for flag in list(module_flags)]
    for flag_name in set(taken):
        if flag_name in flags.FLAGS:
            delattr(flags.FLAGS, flag_name)
    full_name = f"experiments.{name}"
    if full_name in sys.modules:
        return importlib.reload(sys.modules[full_name])
    return importlib.import_module(full_name)
