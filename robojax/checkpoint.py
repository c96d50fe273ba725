"""Orbax save/restore of whole training states, with run metadata checked on restore.

A checkpoint step directory holds three items: `state` (a pytree of arrays), optional `extras`
items (e.g. replay buffers, which a run may leave out), and `metadata` (JSON: env, specs, config).
Orbax writes each step into a temporary directory and renames it when complete, so a run killed
mid-save never leaves a half-written step behind. Restores go into abstract targets with an
explicit single-device sharding, so a checkpoint written on a GPU (or on another device layout)
loads on a CPU-only machine; `restore_numpy` needs no target at all.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint.checkpoint_managers import preservation_policy

_STATE, _METADATA = "state", "metadata"


class CheckpointMismatchError(ValueError):
    """A checkpoint was written for a different env, config or state layout than the one restoring it."""


def _absolute(path: str | os.PathLike) -> str:
    # Orbax refuses relative paths (tensorstore_utils: "Checkpoint path should be absolute").
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def leaf_names(tree: Any) -> dict[str, Any]:
    """Leaves of a pytree by dotted path (`learner.actor_params.params.Dense_0.kernel`)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {".".join(_key_name(k) for k in path): leaf for path, leaf in flat}


def abstract_tree(tree: Any, device: jax.Device | None = None) -> Any:
    """Shape/dtype stand-ins for `tree`, placed on one device (default: the first local device)."""
    sharding = jax.sharding.SingleDeviceSharding(device or jax.devices()[0])

    def abstract(x):
        dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
        return jax.ShapeDtypeStruct(np.shape(x), dtype, sharding=sharding)

    return jax.tree.map(abstract, tree)


def check_compatible(saved: Any, expected: Any, where: str = "checkpoint") -> None:
    """Raise `CheckpointMismatchError` naming every field where `saved` and `expected` JSON differ."""
    problems: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for key in sorted(set(a) | set(b)):
                sub = f"{path}.{key}" if path else str(key)
                if key not in a:
                    problems.append(f"{sub}: absent in the checkpoint, this run has {b[key]!r}")
                elif key not in b:
                    problems.append(f"{sub}: the checkpoint has {a[key]!r}, absent in this run")
                else:
                    walk(a[key], b[key], sub)
        elif a != b:
            problems.append(f"{path}: the checkpoint has {a!r}, this run has {b!r}")

    walk(json.loads(json.dumps(saved)), json.loads(json.dumps(expected)), "")
    if problems:
        raise CheckpointMismatchError(
            f"{where} does not match this run:\n  "
            + "\n  ".join(problems)
            + "\nUse the settings the checkpoint was written with, or start a new run in a new directory."
        )


def _item_metadata(item_dir: str) -> Any:
    """The stored tree of array metadata (shape, dtype, sharding) of one checkpoint item."""
    return ocp.StandardCheckpointHandler().metadata(epath.Path(item_dir)).tree


def _check_layout(item_dir: str, target: Any, item: str) -> None:
    """Compare stored array shapes/dtypes with the target's before Orbax raises something cryptic."""
    stored_tree = _item_metadata(item_dir)
    stored = {leaf.name: leaf for leaf in jax.tree.leaves(stored_tree)}
    wanted = leaf_names(target)
    problems = [f"{name}: missing from the checkpoint" for name in sorted(set(wanted) - set(stored))]
    problems += [f"{name}: in the checkpoint but not in this run's state" for name in sorted(set(stored) - set(wanted))]
    for name in sorted(set(stored) & set(wanted)):
        saved = (tuple(stored[name].shape), np.dtype(stored[name].dtype))
        this = (tuple(np.shape(wanted[name])), np.dtype(getattr(wanted[name], "dtype", None) or type(wanted[name])))
        if saved != this:
            problems.append(f"{name}: checkpoint {saved[0]} {saved[1]}, this run {this[0]} {this[1]}")
    if problems:
        shown = problems[:12] + ([f"... and {len(problems) - 12} more"] if len(problems) > 12 else [])
        raise CheckpointMismatchError(
            f"the {item!r} item in {item_dir} has a different layout than this run's state"
            " (different network sizes, num_envs, buffer capacity or env?):\n  " + "\n  ".join(shown)
        )


def _drop_empty(tree: Any) -> Any:
    """Zero-size arrays (e.g. an MJX model without actuator activations) as None: Orbax cannot save them."""
    return jax.tree.map(lambda x: None if np.size(x) == 0 else x, tree)


def _restore_empty(restored: Any, target: Any) -> Any:
    """Put the zero-size arrays that `_drop_empty` removed back, with the target's shapes and dtypes."""
    leaves, treedef = jax.tree.flatten(target)
    filled = iter(jax.tree.leaves(restored))
    out = [jax.numpy.zeros(np.shape(x), x.dtype) if np.size(x) == 0 else next(filled) for x in leaves]
    return jax.tree.unflatten(treedef, out)


class Checkpointer:
    """A run's checkpoint directory: Orbax `CheckpointManager` keeping the latest `keep` steps.

    Use as a context manager (or call `close`) so that asynchronous saves finish before exit.
    """

    def __init__(self, directory: str | os.PathLike, *, keep: int = 3, create: bool = True):
        self.directory = _absolute(directory)
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise NotADirectoryError(f"checkpoint path {self.directory} exists and is not a directory")
        if not create and not os.path.isdir(self.directory):
            raise FileNotFoundError(f"no checkpoint directory at {self.directory}")
        options = ocp.CheckpointManagerOptions(preservation_policy=preservation_policy.LatestN(keep), create=create)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def step_path(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def save(
        self, step: int, state: Any, *, extras: Mapping[str, Any] | None = None, metadata: Mapping | None = None
    ) -> None:
        """Start an asynchronous save of `state`, extra pytrees and JSON metadata at `step`."""
        items = {_STATE: ocp.args.StandardSave(_drop_empty(state)), _METADATA: ocp.args.JsonSave(dict(metadata or {}))}
        for name, tree in (extras or {}).items():
            if name in items:
                raise ValueError(f"extra item name {name!r} is reserved")
            items[name] = ocp.args.StandardSave(_drop_empty(tree))
        self._manager.save(int(step), args=ocp.args.Composite(**items), force=True)

    def read_metadata(self, step: int | None = None) -> dict:
        """The JSON metadata saved with `step` (default: the latest)."""
        step = self._resolve(step)
        restored = self._manager.restore(step, args=ocp.args.Composite(**{_METADATA: ocp.args.JsonRestore()}))
        return dict(restored[_METADATA])

    def restore(
        self,
        target: Any,
        *,
        step: int | None = None,
        extras: Mapping[str, Any] | None = None,
        device: jax.Device | None = None,
    ) -> tuple[Any, dict]:
        """Restore `state` (and those `extras` present in the step) in the shapes of the given trees.

        Returns (state, {extra name: tree}); extras absent from the checkpoint are left out.
        Arrays land on `device` (default: the first local device), whatever device wrote them.
        """
        step = self._resolve(step)
        step_dir = self.step_path(step)
        wanted = {_STATE: target}
        for name, tree in (extras or {}).items():
            if os.path.isdir(os.path.join(step_dir, name)):
                wanted[name] = tree
        for name, tree in wanted.items():
            _check_layout(os.path.join(step_dir, name), _drop_empty(tree), name)
        args = {
            name: ocp.args.StandardRestore(abstract_tree(_drop_empty(tree), device)) for name, tree in wanted.items()
        }
        restored = self._manager.restore(step, args=ocp.args.Composite(**args))
        out = {name: _restore_empty(restored[name], tree) for name, tree in wanted.items()}
        return out.pop(_STATE), out

    def _resolve(self, step: int | None) -> int:
        steps = self.all_steps()
        if step is None:
            if not steps:
                raise FileNotFoundError(f"no checkpoint in {self.directory}")
            return max(steps)
        if step not in steps:
            raise FileNotFoundError(
                f"no checkpoint for step {step} in {self.directory}; steps present: {sorted(steps)}"
            )
        return int(step)

    def wait_until_finished(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


def restore_numpy(directory: str | os.PathLike, step: int | None = None, item: str = _STATE) -> Any:
    """Read one item of a checkpoint as nested dicts of numpy arrays, on any machine, no target needed."""
    with Checkpointer(directory, create=False) as checkpointer:
        step = checkpointer._resolve(step)
        item_dir = os.path.join(checkpointer.step_path(step), item)
    return _read_numpy(item_dir)


def _read_numpy(item_dir: str) -> Any:
    if not os.path.isdir(item_dir):
        raise FileNotFoundError(f"no checkpoint item at {item_dir}")
    tree = _item_metadata(item_dir)
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    with ocp.PyTreeCheckpointer() as checkpointer:
        return checkpointer.restore(item_dir, args=ocp.args.PyTreeRestore(restore_args=restore_args))


def save_policy(directory: str | os.PathLike, params: Any, metadata: Mapping) -> str:
    """Save a policy's parameters with a JSON sidecar (`policy.json`), written aside then swapped in."""
    directory = _absolute(directory)
    staging, previous = directory + ".tmp", directory + ".old"
    for path in (staging, previous):
        shutil.rmtree(path, ignore_errors=True)
    os.makedirs(staging)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(os.path.join(staging, "params"), params)
        checkpointer.wait_until_finished()
    with open(os.path.join(staging, "policy.json"), "w") as f:
        json.dump(dict(metadata), f, indent=1)
    if os.path.exists(directory):
        os.replace(directory, previous)
    os.replace(staging, directory)
    shutil.rmtree(previous, ignore_errors=True)
    return directory


def load_policy(directory: str | os.PathLike) -> tuple[Any, dict]:
    """Read a saved policy as (numpy parameter tree, metadata dict)."""
    directory = _absolute(directory)
    sidecar = os.path.join(directory, "policy.json")
    if not os.path.isfile(sidecar):
        raise FileNotFoundError(f"no saved policy at {directory} (missing policy.json)")
    with open(sidecar) as f:
        metadata = json.load(f)
    return _read_numpy(os.path.join(directory, "params")), metadata
