"""The task registry: `robojax.envs.make(name, **overrides)` builds any registered task.

Task packages register themselves through the `robojax.envs` entry-point group: each entry point
names a function that calls `register(...)` for its tasks. The registry loads them on first use, so
`robojax.envs.make("cartpole_balance")` finds the built-in tasks (the top-level `envs` package)
without robojax importing `envs`, which sits above it in the dependency order. A package of your
own declares, in its pyproject.toml:

    [project.entry-points."robojax.envs"]
    my_tasks = "my_package:register_tasks"

Tasks can also be registered at run time with `register`. `playground:<Name>` builds a MuJoCo
Playground env (see `robojax.envs.playground`).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
import threading
from collections.abc import Callable, Mapping
from typing import Any

from robojax.envs.core import Env
from robojax.envs.perturbation import Perturbation
from robojax.envs.wrappers import (
    ActionRepeat,
    AutoResetWrapper,
    DomainRandomization,
    EpisodeStatistics,
    TimeLimit,
    VmapWrapper,
)

ENTRY_POINT_GROUP = "robojax.envs"
PLAYGROUND_PREFIX = "playground:"

# name -> (entry: a class/callable or a lazy "module:Attr" string, gymnasium id or None)
_TASKS: dict[str, tuple[Callable[..., Env] | str, str | None]] = {}
_plugins_loaded = False
_plugin_errors: list[str] = []
_lock = threading.RLock()


def register(name: str, entry: Callable[..., Env] | str, *, gymnasium_id: str | None = None) -> None:
    """Register a task under `name`.

    Args:
      name: what `make` accepts; must not start with 'playground:'.
      entry: the task class (or any callable `(**overrides) -> Env`), or a lazy "module:Attr"
        string imported on first `make`, so registering stays cheap.
      gymnasium_id: also register the task with gymnasium under this id (e.g. "robojax/Reacher-v0"),
        so `gymnasium.make(gymnasium_id)` and `gymnasium.make_vec` build it through `make`.
    Re-registering a name with the same entry is a no-op; with a different entry it is an error.
    """
    if not isinstance(name, str) or not name or name.startswith(PLAYGROUND_PREFIX):
        raise ValueError(f"task name must be a non-empty string not starting with {PLAYGROUND_PREFIX!r}, got {name!r}")
    if isinstance(entry, str):
        module, sep, attr = entry.partition(":")
        if not sep or not module or not attr:
            raise ValueError(f"lazy entry for {name!r} must look like 'package.module:Attr', got {entry!r}")
    elif not callable(entry):
        raise TypeError(f"entry for {name!r} must be a class, a callable or a 'module:Attr' string, got {entry!r}")
    with _lock:
        if name in _TASKS and _TASKS[name] != (entry, gymnasium_id):
            raise ValueError(
                f"task {name!r} is already registered as {_TASKS[name][0]!r}"
                f" (gymnasium id {_TASKS[name][1]!r}); pick another name"
            )
        _TASKS[name] = (entry, gymnasium_id)
    if gymnasium_id is not None:
        _register_gymnasium(name, gymnasium_id)


def _register_gymnasium(name: str, gym_id: str) -> None:
    """Make `gymnasium.make(gym_id)` / `gymnasium.make_vec(gym_id, ...)` build this task."""
    import gymnasium

    if gym_id in gymnasium.registry:
        return
    gymnasium.register(
        id=gym_id,
        entry_point="robojax.envs.gym_bridge:make_gymnasium_env",
        vector_entry_point="robojax.envs.gym_bridge:make_gymnasium_vector_env",
        kwargs={"env_name": name},
        disable_env_checker=False,
    )


def _load_plugins() -> None:
    """Run every `robojax.envs` entry point once (the first time the registry is read)."""
    global _plugins_loaded
    with _lock:
        if _plugins_loaded:
            return
        # Set first: a plugin's own module may read the registry while it registers (re-entrant).
        _plugins_loaded = True
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                ep.load()()
            except Exception as e:  # noqa: BLE001 (one broken task package must not hide the others)
                _plugin_errors.append(f"{ep.name} = {ep.value}: {type(e).__name__}: {e}")


def names() -> list[str]:
    """Names `make` accepts (plus any `playground:<Name>` when the playground extra is installed)."""
    _load_plugins()
    return sorted(_TASKS)


def _check_name(name: str) -> None:
    _load_plugins()
    if name in _TASKS:
        return
    close = difflib.get_close_matches(name, _TASKS, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    if _TASKS:
        valid = f" Valid names: {', '.join(names())};"
    else:
        valid = (
            f" No tasks are registered: no installed package declares a {ENTRY_POINT_GROUP!r} entry"
            " point (reinstall robojax with `pip install -e .` so its metadata lists the built-in"
            " tasks, or `import envs` first);"
        )
    broken = f" Task packages that failed to load: {'; '.join(_plugin_errors)}." if _plugin_errors else ""
    raise ValueError(
        f"unknown env {name!r}.{hint}{valid} or '{PLAYGROUND_PREFIX}<Name>' for a MuJoCo Playground env.{broken}"
    )


def check_name(name: str) -> None:
    """Raise a ValueError naming close matches unless `make` accepts `name`; for `playground:<Name>`
    this checks Playground's registry (so it needs the playground extra), without building the env."""
    if name.startswith(PLAYGROUND_PREFIX):
        from robojax.envs import playground

        playground.check_name(name[len(PLAYGROUND_PREFIX) :])
        return
    _check_name(name)


def is_known(name: str) -> bool:
    """Whether `make` accepts `name` by its spelling (a registered task or any `playground:` name)."""
    _load_plugins()
    return name in _TASKS or name.startswith(PLAYGROUND_PREFIX)


def task_class(name: str) -> Callable[..., Env]:
    """The class (or factory) registered under `name`, imported if it was registered lazily."""
    _check_name(name)
    entry, _ = _TASKS[name]
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module), attr)
    return entry


def gymnasium_id(name: str) -> str | None:
    """The gymnasium id `name` was registered with (None when it has none)."""
    _check_name(name)
    return _TASKS[name][1]


def _construct(name: str, overrides: Mapping[str, Any]) -> Env:
    if name.startswith(PLAYGROUND_PREFIX):
        from robojax.envs.playground import PlaygroundEnv

        return PlaygroundEnv(name[len(PLAYGROUND_PREFIX) :], **overrides)
    cls = task_class(name)
    try:
        params = inspect.signature(cls.__init__ if inspect.isclass(cls) else cls).parameters
    except (TypeError, ValueError):  # builtins without a signature: let the call report errors
        params = None
    if params is not None:
        takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
        unknown = [k for k in overrides if k not in params]
        if unknown and not takes_kwargs:
            valid = [p for p in params if p != "self"]
            raise TypeError(f"{name} got unknown overrides {unknown}; valid: {valid}")
    return cls(**overrides)


def perturbation_names(env: Env) -> tuple[str, ...]:
    """The named perturbations a constructed task offers (`make(..., perturbation=...)`); () if none."""
    task = env.unwrapped
    names_ = getattr(task, "perturbation_names", ())
    return tuple(names_) if callable(getattr(task, "perturbation", None)) else ()


def _tasks_with_perturbations() -> list[str]:
    """Registered tasks whose class declares named perturbations (for error messages only)."""
    found = []
    for name in names():
        try:
            cls = task_class(name)
        except Exception:  # noqa: BLE001 (a task that fails to import has none we can list)
            continue
        if getattr(cls, "perturbation_names", ()) and callable(getattr(cls, "perturbation", None)):
            found.append(name)
    return found


def _with_perturbation(env: Env, name: str, perturbation: str, delay: int, kwargs: Mapping[str, Any]) -> Env:
    available = perturbation_names(env)
    if not available:
        others = _tasks_with_perturbations()
        hint = f" Tasks with named perturbations: {', '.join(others)}." if others else ""
        raise ValueError(
            f"task {name!r} has no named perturbations (a task offers them with `perturbation_names`"
            f" and `perturbation(name, **kw) -> (trigger, apply)`); wrap it with"
            f" robojax.envs.Perturbation(env, trigger, apply) yourself.{hint}"
        )
    if perturbation not in available:
        close = difflib.get_close_matches(str(perturbation), available, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown perturbation {perturbation!r} for task {name!r}.{hint}"
            f" Available: {', '.join(repr(p) for p in available)}"
        )
    trigger, apply = env.unwrapped.perturbation(perturbation, **kwargs)
    return Perturbation(env, trigger, apply, delay=delay, name=perturbation)


def make(
    name: str,
    *,
    num_envs: int | None = None,
    episode_length: int | None = None,
    action_repeat: int = 1,
    domain_randomization: Mapping[str, Any] | None = None,
    autoreset: bool | None = None,
    perturbation: str | None = None,
    perturbation_delay: int = 0,
    perturbation_kwargs: Mapping[str, Any] | None = None,
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
      perturbation: a named mid-episode perturbation of the task (e.g. "cube_shift" on
        arm_push_cube; `perturbation_names(env)` lists a task's), applied once per episode by a
        `Perturbation` wrapper directly on the task; `info["perturbed"]`/`["perturbed_step"]`
        report it.
      perturbation_delay: control steps (of the task, before `action_repeat`) from the trigger
        to the perturbation.
      perturbation_kwargs: arguments of the task's perturbation (e.g. `{"low": 0.03, "high": 0.05}`).
      **overrides: task constructor arguments (e.g. `control_dt`, MuJoCo options like `iterations`).
    """
    if perturbation is None and (perturbation_kwargs or perturbation_delay):
        raise ValueError("perturbation_delay / perturbation_kwargs given without perturbation=<name>")
    env = _construct(name, overrides)
    if episode_length is None:
        episode_length = getattr(env, "episode_length", None)
    if perturbation is not None:
        env = _with_perturbation(env, name, perturbation, perturbation_delay, perturbation_kwargs or {})
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
    return env
