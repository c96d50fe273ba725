"""Demonstration datasets on disk: a `.npz` of stacked transitions, validated on load."""

from __future__ import annotations

import os

import numpy as np

from robojax.data.replay import Transition

_FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "truncated")


def save_demos(path: str | os.PathLike, transitions: Transition) -> None:
    """Write stacked transitions (leading axis = number of steps); written aside, then renamed."""
    path = os.fspath(path)
    if not path.endswith(".npz"):
        raise ValueError(f"demo files are .npz archives; got {path!r}")
    arrays = {name: np.asarray(getattr(transitions, name)) for name in _FIELDS + ("intervention",)}
    tmp = path[: -len(".npz")] + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_demos(path: str | os.PathLike, obs_shape: tuple[int, ...], action_shape: tuple[int, ...]) -> Transition:
    """Read a demo file and check it against the env's observation and action shapes."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"demo file not found: {path!r}")
    try:
        archive = np.load(path)
    except Exception as e:  # numpy raises several types for a non-npz file
        raise ValueError(f"demo file {path!r} is not a readable .npz archive: {e}") from e
    with archive:
        missing = [name for name in _FIELDS if name not in archive.files]
        if missing:
            raise ValueError(f"demo file {path!r} lacks fields {missing}; it needs {list(_FIELDS)}")
        arrays = {name: archive[name] for name in archive.files}
    n = len(arrays["reward"])
    if n == 0:
        raise ValueError(f"demo file {path!r} holds no transitions")
    expected = {
        "obs": (n, *obs_shape),
        "next_obs": (n, *obs_shape),
        "action": (n, *action_shape),
        "reward": (n,),
        "terminated": (n,),
        "truncated": (n,),
    }
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise ValueError(
                f"demo file {path!r}: {name} has shape {arrays[name].shape}, expected {shape};"
                " was it recorded on a different env?"
            )
    intervention = arrays.get("intervention", np.zeros(n, bool))
    return Transition(
        obs=arrays["obs"].astype(np.float32),
        action=arrays["action"].astype(np.float32),
        reward=arrays["reward"].astype(np.float32),
        next_obs=arrays["next_obs"].astype(np.float32),
        terminated=arrays["terminated"].astype(bool),
        truncated=arrays["truncated"].astype(bool),
        intervention=intervention.astype(bool),
    )
