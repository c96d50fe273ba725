"""The functional env interface, its wrappers, the task registry (`make`, `names`, `register`) and
bridges to other env ecosystems."""

from robojax.envs.core import ArraySpec, Env, EnvState, HostEnv, Wrapper, tree_where
from robojax.envs.perturbation import Perturbation, shift_free_joint
from robojax.envs.registry import gymnasium_id, make, names, perturbation_names, register, task_class
from robojax.envs.wrappers import (
    ActionRepeat,
    AutoResetWrapper,
    DomainRandomization,
    EpisodeStatistics,
    TimeLimit,
    Uniform,
    VmapWrapper,
)

__all__ = [
    "ActionRepeat",
    "ArraySpec",
    "AutoResetWrapper",
    "DomainRandomization",
    "Env",
    "EnvState",
    "EpisodeStatistics",
    "HostEnv",
    "Perturbation",
    "TimeLimit",
    "Uniform",
    "VmapWrapper",
    "Wrapper",
    "gymnasium_id",
    "make",
    "names",
    "perturbation_names",
    "register",
    "shift_free_joint",
    "task_class",
    "tree_where",
]
