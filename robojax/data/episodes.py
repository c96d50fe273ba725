"""Episode datasets on disk: whole demonstrations (or robot runs), one file per episode.

Format "robojax.episodes/1". A dataset is a directory:

    PATH/dataset.json
        {
          "format": "robojax.episodes/1",
          "observation_spec": ArraySpec.to_dict(),     # per-step observation
          "action_spec": ArraySpec.to_dict(),          # per-step action
          "env": "arm_pick_place" | null,              # envs.make name the data came from
          "control_dt": 0.04 | null,                   # seconds between steps
          "discrete_action_dims": [3],                 # action dims that are discrete (e.g. a gripper)
          "metadata": {...},                           # free-form dataset metadata (JSON)
          "episodes": [                                # in order; index i <-> episode_{i:06d}.npz
            {"file": "episodes/episode_000000.npz", "length": T, "success": true | false | null,
             "metadata": {...}},
            ...
          ]
        }
    PATH/episodes/episode_000000.npz     (numpy .npz, no pickled objects)
        observations  [T, *observation_spec.shape]   observation_spec.dtype
        actions       [T, *action_spec.shape]        action_spec.dtype; actions[t] was applied at obs[t]
        rewards       [T]                            float32; reward of the step that actions[t] took
        metadata      0-d unicode array: JSON of the per-episode metadata (seed, success, mode, ...)
        <any other name>  an extra per-step array [T, ...] (e.g. latency_ms)

Writes are crash-safe: every file is written to a temporary name in the same directory, flushed
and fsync'd, then `os.replace`d over its final name. An episode's `.npz` lands before the
`dataset.json` that lists it, so a writer killed at any moment leaves a dataset whose
`dataset.json` lists only complete episodes (an unlisted trailing `.npz` is ignored and is
overwritten by the next append).

`load_episodes` validates everything and raises `DatasetError` (a `ValueError`) naming the file,
the problem and the fix.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from robojax.envs.core import ArraySpec

FORMAT = "robojax.episodes/1"
_FORMAT_PREFIX = "robojax.episodes/"
_INDEX = "dataset.json"
_EPISODE_DIR = "episodes"
_RESERVED = ("observations", "actions", "rewards", "metadata")

__all__ = ["FORMAT", "DatasetError", "Episode", "EpisodeDataset", "EpisodeWriter", "load_episodes"]


class DatasetError(ValueError):
    """A malformed, incomplete or mismatched episode dataset. The message names the file and the fix."""


@dataclasses.dataclass
class Episode:
    """One episode: per-step arrays with a shared leading length T."""

    observations: np.ndarray  # [T, *obs]
    actions: np.ndarray  # [T, *act]
    rewards: np.ndarray  # [T]
    success: bool | None
    extras: dict = dataclasses.field(default_factory=dict)  # name -> [T, ...]
    metadata: dict = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.actions.shape[0])


@dataclasses.dataclass
class EpisodeDataset:
    path: str
    observation_spec: ArraySpec
    action_spec: ArraySpec
    env: str | None
    control_dt: float | None
    discrete_action_dims: tuple[int, ...]
    metadata: dict
    episodes: list[Episode]

    def __len__(self) -> int:
        return len(self.episodes)

    @property
    def num_steps(self) -> int:
        return sum(len(e) for e in self.episodes)

    @property
    def success_rate(self) -> float | None:
        known = [e.success for e in self.episodes if e.success is not None]
        return float(np.mean(known)) if known else None


# ---------------------------------------------------------------------------------------------
# Writing


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_aside(path: str, write) -> None:
    """Write via `write(fileobj)` to a temp file next to `path`, fsync, then rename over `path`."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(directory)


def _episode_file(index: int) -> str:
    return f"{_EPISODE_DIR}/episode_{index:06d}.npz"


def _json_ready(value: Any, what: str) -> Any:
    """Round-trip through JSON (numpy scalars become Python numbers); clear error otherwise."""

    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        raise TypeError(f"{type(o).__name__} is not JSON serialisable")

    try:
        return json.loads(json.dumps(value, default=default))
    except (TypeError, ValueError) as e:
        raise DatasetError(f"{what} must be JSON-serialisable (str, numbers, bools, lists, dicts): {e}") from e


def _specs_equal(a: ArraySpec, b: ArraySpec, bounds: bool) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if bounds:
        return bool(np.array_equal(a.low, b.low) and np.array_equal(a.high, b.high))
    return True


def _spec_str(spec: ArraySpec) -> str:
    return f"shape={spec.shape} dtype={spec.dtype.name}"


class EpisodeWriter:
    """Writes episodes into a dataset directory, one `add_episode` at a time (see module docstring).

    Creates `path` (refusing an existing dataset unless `append=True`). With `append=True` an
    existing dataset is continued after checking that its specs, env, control_dt and
    discrete_action_dims match; a missing one is created. Usable as a context manager.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        observation_spec: ArraySpec,
        action_spec: ArraySpec,
        *,
        env: str | None = None,
        control_dt: float | None = None,
        discrete_action_dims: Sequence[int] = (),
        metadata: Mapping[str, Any] | None = None,
        append: bool = False,
    ):
        self.path = os.fspath(path)
        self.observation_spec = observation_spec
        self.action_spec = action_spec
        dims = tuple(int(d) for d in discrete_action_dims)
        if len(action_spec.shape) != 1 and dims:
            raise DatasetError("discrete_action_dims needs a 1-D action spec")
        for d in dims:
            if not 0 <= d < action_spec.size:
                raise DatasetError(f"discrete_action_dims has {d}, outside the action's {action_spec.size} dims")
        self._header = {
            "format": FORMAT,
            "observation_spec": observation_spec.to_dict(),
            "action_spec": action_spec.to_dict(),
            "env": env,
            "control_dt": None if control_dt is None else float(control_dt),
            "discrete_action_dims": list(dims),
            "metadata": _json_ready(dict(metadata or {}), "dataset metadata"),
        }
        self._episodes: list[dict] = []
        self._closed = False
        index_path = os.path.join(self.path, _INDEX)
        if os.path.exists(index_path):
            if not append:
                raise DatasetError(
                    f"{index_path} already exists: refusing to overwrite a dataset. Pass append=True to add"
                    " episodes to it, or delete the directory (collect_demos: --overwrite)."
                )
            self._open_existing(index_path, dataset_metadata=metadata)
        else:
            if os.path.isdir(self.path) and os.listdir(self.path) and not append:
                raise DatasetError(
                    f"{self.path} exists, is not empty and has no {_INDEX}: refusing to write a dataset into it."
                    " Choose an empty or new directory."
                )
            os.makedirs(os.path.join(self.path, _EPISODE_DIR), exist_ok=True)
            self._write_index()

    def _open_existing(self, index_path: str, dataset_metadata) -> None:
        header = _read_index(self.path)
        problems = []
        for key, mine in (("observation_spec", self.observation_spec), ("action_spec", self.action_spec)):
            theirs = ArraySpec.from_dict(header[key])
            if not _specs_equal(theirs, mine, bounds=True):
                problems.append(f"{key}: dataset has {theirs.to_dict()}, writer has {mine.to_dict()}")
        for key in ("env", "control_dt", "discrete_action_dims"):
            if header.get(key) != self._header[key]:
                problems.append(f"{key}: dataset has {header.get(key)!r}, writer has {self._header[key]!r}")
        if problems:
            raise DatasetError(
                f"cannot append to {index_path}: it was written for different data ("
                + "; ".join(problems)
                + "). Append with the same env/specs, or write a new dataset directory."
            )
        if dataset_metadata is None:
            self._header["metadata"] = header.get("metadata", {})
        else:
            self._header["metadata"] = {**header.get("metadata", {}), **self._header["metadata"]}
        self._episodes = list(header["episodes"])
        os.makedirs(os.path.join(self.path, _EPISODE_DIR), exist_ok=True)

    @property
    def num_episodes(self) -> int:
        return len(self._episodes)

    def _write_index(self) -> None:
        doc = dict(self._header, episodes=self._episodes)
        text = json.dumps(doc, indent=1).encode()
        _write_aside(os.path.join(self.path, _INDEX), lambda f: f.write(text))

    def add_episode(
        self,
        observations,
        actions,
        *,
        rewards=None,
        success: bool | None = None,
        extras: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> int:
        """Validate and write one episode (npz aside + rename, then dataset.json); returns its index.

        observations [T, *obs], actions [T, *act] with actions[t] taken at observations[t];
        rewards [T] (zeros if None); extras: per-step arrays [T, ...].
        """
        if self._closed:
            raise DatasetError(f"EpisodeWriter for {self.path} is closed; open a new one with append=True")
        obs = np.asarray(observations)
        act = np.asarray(actions)
        t = int(act.shape[0]) if act.ndim else 0
        if t == 0:
            raise DatasetError("add_episode: an episode needs at least one step (actions is empty)")
        for name, arr, spec in (("observations", obs, self.observation_spec), ("actions", act, self.action_spec)):
            if arr.shape[1:] != spec.shape or arr.ndim == 0:
                raise DatasetError(
                    f"add_episode: {name} has shape {arr.shape}, expected [T, *{spec.shape}] from the {name[:-1]} spec"
                )
            if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
                raise DatasetError(f"add_episode: {name} has non-numeric dtype {arr.dtype}")
            if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
                raise DatasetError(f"add_episode: {name} contain NaN or inf; drop this episode")
        if obs.shape[0] != t:
            raise DatasetError(f"add_episode: {obs.shape[0]} observations but {t} actions; they must pair up per step")
        rew = np.zeros(t, np.float32) if rewards is None else np.asarray(rewards, np.float32)
        if rew.shape != (t,):
            raise DatasetError(f"add_episode: rewards has shape {rew.shape}, expected ({t},)")
        arrays = {
            "observations": obs.astype(self.observation_spec.dtype, copy=False),
            "actions": act.astype(self.action_spec.dtype, copy=False),
            "rewards": rew,
        }
        for name, value in (extras or {}).items():
            if name in _RESERVED or not name.isidentifier():
                raise DatasetError(f"add_episode: extra {name!r} is reserved or not an identifier; rename it")
            value = np.asarray(value)
            if value.ndim == 0 or value.shape[0] != t or value.dtype == object:
                raise DatasetError(
                    f"add_episode: extra {name!r} has shape {value.shape}; extras are per-step [T={t}, ...]"
                )
            arrays[name] = value
        success = None if success is None else bool(success)
        meta = _json_ready({**dict(metadata or {}), "success": success}, "episode metadata")
        arrays["metadata"] = np.array(json.dumps(meta))
        index = len(self._episodes)
        rel = _episode_file(index)
        _write_aside(os.path.join(self.path, rel), lambda f: np.savez(f, **arrays))
        self._episodes.append({"file": rel, "length": t, "success": success, "metadata": meta})
        self._write_index()
        return index

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Reading


def _read_index(path: str) -> dict:
    index_path = os.path.join(path, _INDEX)
    if not os.path.isdir(path):
        raise DatasetError(
            f"dataset directory {path} does not exist; record one with `python -m experiments.collect_demos"
            " --env=... --out=DIR` or pass the directory that holds dataset.json"
        )
    if not os.path.isfile(index_path):
        raise DatasetError(
            f"{index_path} is missing: {path} is not a robojax episode dataset (or it was never written)."
            " Pass the directory that holds dataset.json, or record one with experiments.collect_demos."
        )
    try:
        with open(index_path, "rb") as f:
            header = json.loads(f.read().decode())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(
            f"{index_path} is not readable JSON ({e}); the file is corrupt: re-record the dataset"
        ) from e
    if not isinstance(header, dict):
        raise DatasetError(f"{index_path} holds {type(header).__name__}, not a JSON object; re-record the dataset")
    fmt = header.get("format")
    if fmt != FORMAT:
        if isinstance(fmt, str) and fmt.startswith(_FORMAT_PREFIX):
            fix = (
                "it was written by a different robojax version; read it with the version that wrote it or re-record it"
            )
        else:
            fix = "this is not a robojax episode dataset; record one with experiments.collect_demos"
        raise DatasetError(f"{index_path}: unknown format {fmt!r} (this robojax reads {FORMAT!r}); {fix}")
    required = ("observation_spec", "action_spec", "episodes")
    missing = [k for k in required if k not in header]
    if missing:
        raise DatasetError(
            f"{index_path} lacks {missing}; the file is incomplete or hand-edited: re-record the dataset"
        )
    for key in ("observation_spec", "action_spec"):
        try:
            ArraySpec.from_dict(header[key])
        except Exception as e:  # KeyError, TypeError, ValueError from a malformed spec dict
            raise DatasetError(f"{index_path}: {key} is malformed ({e!r}); re-record the dataset") from e
    if not isinstance(header["episodes"], list) or not all(
        isinstance(e, dict) and "file" in e and "length" in e for e in header["episodes"]
    ):
        raise DatasetError(
            f"{index_path}: 'episodes' must be a list of {{'file', 'length', ...}}; re-record the dataset"
        )
    return header


def _load_episode(path: str, entry: dict, obs_spec: ArraySpec, act_spec: ArraySpec) -> Episode:
    rel = entry["file"]
    file = os.path.join(path, rel)
    if os.path.isabs(rel) or os.path.normpath(rel).startswith(".."):
        raise DatasetError(f"{os.path.join(path, _INDEX)}: episode file {rel!r} must be a path inside the dataset")
    if not os.path.isfile(file):
        raise DatasetError(
            f"episode file {file} is missing but listed in {os.path.join(path, _INDEX)};"
            " copy the whole dataset directory, or re-record it"
        )
    try:
        with np.load(file, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except Exception as e:  # BadZipFile, EOFError, ValueError, OSError, zlib.error: numpy raises many
        raise DatasetError(
            f"episode file {file} is truncated or corrupt ({type(e).__name__}: {e}); delete it and its entry"
            f" from dataset.json, or re-record the dataset"
        ) from e
    missing = [k for k in _RESERVED if k not in arrays]
    if missing:
        raise DatasetError(
            f"episode file {file} lacks arrays {missing}; it was not written by EpisodeWriter: re-record it"
        )
    obs, act, rew = arrays.pop("observations"), arrays.pop("actions"), arrays.pop("rewards")
    try:
        meta = json.loads(str(arrays.pop("metadata")))
    except json.JSONDecodeError as e:
        raise DatasetError(f"episode file {file}: 'metadata' is not valid JSON ({e}); re-record it") from e
    length = int(entry["length"])
    lengths = {
        "observations": obs.shape[0] if obs.ndim else None,
        "actions": act.shape[0] if act.ndim else None,
        "rewards": rew.shape[0] if rew.ndim else None,
    }
    lengths.update({f"extra {k!r}": (v.shape[0] if v.ndim else None) for k, v in arrays.items()})
    bad = {k: n for k, n in lengths.items() if n != length}
    if bad:
        raise DatasetError(
            f"episode file {file}: lengths {bad} do not match the {length} steps listed in dataset.json"
            " (observations, actions, rewards and extras must all have one entry per step); re-record this episode"
        )
    for name, arr, spec in (("observations", obs, obs_spec), ("actions", act, act_spec)):
        if arr.shape[1:] != spec.shape or arr.dtype != spec.dtype:
            raise DatasetError(
                f"episode file {file}: {name} are {arr.dtype.name} {arr.shape}, but dataset.json declares"
                f" {spec.dtype.name} [T, *{spec.shape}]; the file belongs to another dataset: re-record it"
            )
    if np.issubdtype(act.dtype, np.floating) and not np.all(np.isfinite(act)):
        steps = np.unique(np.nonzero(~np.isfinite(act.reshape(length, -1)))[0])
        raise DatasetError(
            f"episode file {file}: actions contain NaN/inf at steps {steps[:10].tolist()}; drop this episode"
            " (remove it from dataset.json) or re-record it"
        )
    if np.issubdtype(obs.dtype, np.floating) and not np.all(np.isfinite(obs)):
        raise DatasetError(f"episode file {file}: observations contain NaN/inf; drop this episode or re-record it")
    success = entry.get("success", meta.get("success"))
    return Episode(
        obs, act, rew.astype(np.float32, copy=False), None if success is None else bool(success), arrays, meta
    )


def load_episodes(
    path: str | os.PathLike,
    *,
    observation_spec: ArraySpec | None = None,
    action_spec: ArraySpec | None = None,
) -> EpisodeDataset:
    """Read and validate a dataset written by `EpisodeWriter`.

    If `observation_spec`/`action_spec` are given (e.g. the env's), the dataset's must match
    them in shape and dtype (and, for actions, in bounds), else `DatasetError`.
    """
    path = os.fspath(path)
    header = _read_index(path)
    index_path = os.path.join(path, _INDEX)
    obs_spec = ArraySpec.from_dict(header["observation_spec"])
    act_spec = ArraySpec.from_dict(header["action_spec"])
    for what, theirs, expected, bounds in (
        ("observation", obs_spec, observation_spec, False),
        ("action", act_spec, action_spec, True),
    ):
        if expected is not None and not _specs_equal(theirs, expected, bounds):
            raise DatasetError(
                f"{index_path}: the dataset's {what} spec ({_spec_str(theirs)}, low={theirs.low.tolist()},"
                f" high={theirs.high.tolist()}) does not match the expected one ({_spec_str(expected)},"
                f" low={expected.low.tolist()}, high={expected.high.tolist()}); it was recorded on env"
                f" {header.get('env')!r}: use a dataset recorded on the env you train/evaluate on"
            )
    dims = tuple(int(d) for d in header.get("discrete_action_dims", ()))
    if any(not 0 <= d < act_spec.size for d in dims):
        raise DatasetError(
            f"{index_path}: discrete_action_dims {list(dims)} out of range for {act_spec.size} action dims"
        )
    episodes = [_load_episode(path, entry, obs_spec, act_spec) for entry in header["episodes"]]
    return EpisodeDataset(
        path=path,
        observation_spec=obs_spec,
        action_spec=act_spec,
        env=header.get("env"),
        control_dt=header.get("control_dt"),
        discrete_action_dims=dims,
        metadata=header.get("metadata", {}),
        episodes=episodes,
    )
