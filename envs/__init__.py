"""robojax task suite: the built-in tasks, registered in `robojax.envs`'s registry.

`robojax.envs.make(name, **overrides)` finds these tasks without importing this package: robojax's
pyproject.toml declares `register_tasks` below as a `robojax.envs` entry point, which the registry
runs on first use. `envs.make`/`envs.names` are the registry's, re-exported.

Every task is also registered with gymnasium as `robojax/<Name>-v0` on import, e.g.
`gymnasium.make("robojax/CartpoleBalance-v0")`.
"""

from __future__ import annotations

from robojax.envs.registry import (
    PLAYGROUND_PREFIX,
    check_name,
    gymnasium_id,
    is_known,
    make,
    names,
    register,
    task_class,
)

__all__ = [
    "PLAYGROUND_PREFIX",
    "check_name",
    "gymnasium_id",
    "is_known",
    "make",
    "names",
    "register",
    "register_tasks",
    "task_class",
]

# name -> (lazy entry "module:Class", gymnasium id); modules import on first `make`.
_TASKS: dict[str, tuple[str, str]] = {
    "pendulum_swingup": ("envs.classic:PendulumSwingup", "robojax/PendulumSwingup-v0"),
    "cartpole_balance": ("envs.classic:CartpoleBalance", "robojax/CartpoleBalance-v0"),
    "cartpole_swingup": ("envs.classic:CartpoleSwingup", "robojax/CartpoleSwingup-v0"),
    "reacher": ("envs.classic:Reacher", "robojax/Reacher-v0"),
    "arm_reach": ("envs.arm:ArmReach", "robojax/ArmReach-v0"),
    "arm_push_cube": ("envs.arm:ArmPushCube", "robojax/ArmPushCube-v0"),
    "arm_pick_place": ("envs.arm:ArmPickPlace", "robojax/ArmPickPlace-v0"),
    "quadrotor_hover": ("envs.quadrotor:QuadrotorHover", "robojax/QuadrotorHover-v0"),
    "quadrotor_track": ("envs.quadrotor:QuadrotorTrack", "robojax/QuadrotorTrack-v0"),
}


def register_tasks() -> None:
    """Register the built-in tasks (the `robojax.envs` entry point; idempotent)."""
    for name, (entry, gym_id) in _TASKS.items():
        register(name, entry, gymnasium_id=gym_id)


# Also without the entry point (a checkout on PYTHONPATH, not installed): importing registers,
# which also registers the gymnasium ids.
register_tasks()
