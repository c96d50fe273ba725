"""robojax task suite and registry: `envs.make(name, **overrides)`.

Every task is also registered with gymnasium as `robojax/<Name>-v0` on import, e.g.
`gymnasium.make("robojax/CartpoleBalance-v0")`.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
from typing import Any, Mapping

from robojax.envs.core import Env
from robojax.envs.wrappers import (
    ActionRepeat,
    AutoResetWrapper,
    DomainRandomization,
    EpisodeStatistics,
    TimeLimit,
    VmapWrapper,
)

# name -> (module, class, gymnasium id)
_TASKS: dict[str, tuple[str, str, str]] = {
    "pendulum_swingup": ("envs.classic", "PendulumSwingup", "robojax/PendulumSwingup-v0"),
    "cartpole_balance": ("envs.classic", "CartpoleBalance", "robojax/CartpoleBalance-v0"),
    "cartpole_swingup": ("envs.classic", "CartpoleSwingup", "robojax/CartpoleSwingup-v0"),
    "reacher": ("envs.classic", "Reacher", "robojax/Reacher-v0"),
    "arm_reach": ("envs.arm", "ArmReach", "robojax/ArmReach-v0"),
    "arm_push_cube": ("envs.arm", "ArmPushCube", "robojax/ArmPushCube-v0"),
    "arm_pick_place": ("envs.arm", "ArmPickPlace", "robojax/ArmPickPlace-v0"),
    "quadrotor_hover": ("envs.quadrotor", "QuadrotorHover", "robojax/QuadrotorHover-v0"),
    "quadrotor_track": ("envs.quadrotor", "QuadrotorTrack", "robojax/QuadrotorTrack-v0"),
}

PLAYGROUND_PREFIX = "playground:"


def names() -> list[str]:
    """Names `make` accepts (plus any `playground:<Name>` when the playground extra is installed)."""
    return sorted(_TASKS)


def gymnasium_id(name: str) -> str:
    _check_name(name)
    return _TASKS[name][2]


def _check_name(name: str) -> None:
    if name in _TASKS:
        return
    close = difflib.get_close_matches(name, _TASKS, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"unknown env {name!r}.{hint} Valid names: {', '.join(names())};"
        f" or '{PLAYGROUND_PREFIX}<Name>' for a MuJoCo Playground env."
    )


def task_class(name: str) -> type[Env]:
    _check_name(name)
    module, cls, _ = _TASKS[name]
    return getattr(importlib.import_module(module), cls)


def make(
    name: str,
    *,
    num_envs: int | None = None,
    episode_length: int | None = None,
    action_repeat: int = 1,
    domain_randomization: Mapping[str, Any] | None = None,
    autoreset: bool | None = None,
    **overrides,
) -> Env:
    """Build a task with the standard wrappers.

    Args:
      name: a registered task (see `names()`) or `playground:<Name>`.
      num_envs: batch the env with `jax.vmap` over this many copies (None: unbatched).
      episode_length: control steps before truncation (default: the task's own).
      action_repeat: repeat each action this many control steps.
      domain_randomization: `{model_field: Uniform(...)}` sampled per env on reset.
      autoreset: reset finished episodes inside `step` (default: on when batched).
      **overrides: task constructor arguments (e.g. `control_dt`, MuJoCo options like `iterations`).
    """
    if name.startswith(PLAYGROUND_PREFIX):
        from robojax.envs.playground import PlaygroundEnv

        env: Env = PlaygroundEnv(name[len(PLAYGROUND_PREFIX):], **overrides)
    else:
        cls = task_class(name)
        params = inspect.signature(cls.__init__).parameters
        takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
        unknown = [k for k in overrides if k not in params]
        if unknown and not takes_kwargs:
            valid = [p for p in params if p != "self"]
            raise TypeError(f"{name} got unknown overrides {unknown}; valid: {valid}")
        env = cls(**overrides)
    if episode_length is None:
        episode_length = getattr(env, "episode_length", None)
    if action_repeat != 1:
        env = ActionRepeat(env, action_repeat)
    if domain_randomization:
        env = DomainRandomization(env, domain_randomization)
    if episode_length is not None:
        env = TimeLimit(env, episode_length)
    env = EpisodeStatistics(env)
    if num_envs is not None:
        env = VmapWrapper(env, num_envs)
    if autoreset if autoreset is not None else num_envs is not None:
        env = AutoResetWrapper(env)
    if hasattr(env.unwrapped, "reset_stack_with_parameters") and env is not env.unwrapped:
        # Tasks with explicit physical parameters (quadrotor): reset through the whole stack.
        env.reset_with_parameters = functools.partial(env.unwrapped.reset_stack_with_parameters, env)
    return env


def _register_gymnasium() -> None:
    import gymnasium

    for name, (_, _, gym_id) in _TASKS.items():
        if gym_id in gymnasium.registry:
            continue
        gymnasium.register(
            id=gym_id,
            entry_point="robojax.envs.gym_bridge:make_gymnasium_env",
            vector_entry_point="robojax.envs.gym_bridge:make_gymnasium_vector_env",
            kwargs={"env_name": name},
            disable_env_checker=False,
        )


_register_gymnasium()
