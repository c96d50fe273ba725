"""Loading policy artifacts written by `robojax.export.export_policy`: validate, deserialise, call.

An artifact is a directory:

    artifact.json        the sidecar (format below); the only file that is not hashed
    policy_step.jax      `jax.export` serialisation of  step(carry, obs, key) -> (action, carry, next_key)
                         with the policy's parameters baked in as constants
    initial_carry.npz    the policy's initial carry, one array per leaf (`carry_0`, `carry_1`, ...)

The exported step is flat: its carry is the tuple of the policy's carry leaves, its key a raw
uint32 key that the step splits itself and hands back, so this loader needs neither the policy's
pytree classes nor host-side `jax.random` calls between steps.

This module imports numpy and jax only: never flax, optax, orbax or a learner, so a controller
process stays small and starts fast (a test checks `sys.modules`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

FORMAT = "robojax.policy_artifact/1"
SIDECAR = "artifact.json"
STEP_FILE = "policy_step.jax"
CARRY_FILE = "initial_carry.npz"
HASHED_FILES = (STEP_FILE, CARRY_FILE)


class ArtifactError(ValueError):
    """A policy artifact is missing, corrupt, or does not fit this process; the message names the fix."""


class PolicyOutputError(RuntimeError):
    """The policy produced a non-finite action; the controller must stop the robot."""


@dataclasses.dataclass(frozen=True)
class Spec:
    """Shape, dtype and bounds of an observation or action; the JSON layout of `ArraySpec.to_dict()`.

    A flax-free twin of `robojax.envs.ArraySpec` for controllers (`ArraySpec.from_dict(spec.to_dict())`
    converts).
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    low: np.ndarray
    high: np.ndarray
    name: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], what: str = "spec") -> Spec:
        try:
            shape = tuple(int(s) for s in d["shape"])
            dtype = np.dtype(d["dtype"])
            low = np.broadcast_to(np.asarray(d.get("low", -np.inf), dtype), shape).copy()
            high = np.broadcast_to(np.asarray(d.get("high", np.inf), dtype), shape).copy()
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"{what} is malformed ({e!r}): expected ArraySpec.to_dict() layout, got {d!r}") from e
        return cls(shape, dtype, low, high, str(d.get("name", "")))

    @classmethod
    def coerce(cls, spec: Any, what: str = "spec") -> Spec:
        """A Spec from a Spec, an `ArraySpec`, or its dict."""
        if isinstance(spec, Spec):
            return spec
        if hasattr(spec, "to_dict"):
            return cls.from_dict(spec.to_dict(), what)
        if isinstance(spec, Mapping):
            return cls.from_dict(spec, what)
        raise TypeError(f"{what} must be an ArraySpec, a Spec or a dict, got {type(spec).__name__}")

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype.name,
            "low": self.low.tolist(),
            "high": self.high.tolist(),
        }

    def validate(self, value: Any, what: str = "array") -> np.ndarray:
        """`value` as a contiguous array of this spec's dtype; ValueError on a wrong shape or NaN/inf."""
        arr = np.ascontiguousarray(value, dtype=self.dtype)
        if arr.shape != self.shape:
            raise ValueError(
                f"{what} has shape {arr.shape}, the policy expects {self.shape} ({self.name or 'spec'});"
                " check that the robot and the policy artifact describe the same task"
            )
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ValueError(f"{what} contains NaN or inf: {arr}; refusing to run the policy on it")
        return arr


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(path: str | os.PathLike, include: Sequence[str] | None = None) -> dict:
    """A content hash of a file, or of every file under a directory (names and bytes, sorted).

    include: for a directory, only these top-level entries (e.g. the checkpoint items actually read).
    Returns {"sha256": hex, "num_files": n, "num_bytes": b}.
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        return {"sha256": sha256_file(path), "num_files": 1, "num_bytes": os.path.getsize(path)}
    if not os.path.isdir(path):
        raise FileNotFoundError(f"nothing to hash at {path}")
    files = []
    roots = [os.path.join(path, name) for name in include] if include is not None else [path]
    for root in roots:
        if os.path.isfile(root):
            files.append(root)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            files.extend(os.path.join(dirpath, name) for name in filenames)
    digest, total = hashlib.sha256(), 0
    for file in sorted(files):
        rel = os.path.relpath(file, path).replace(os.sep, "/")
        digest.update(rel.encode() + b"\0" + sha256_file(file).encode() + b"\n")
        total += os.path.getsize(file)
    return {"sha256": digest.hexdigest(), "num_files": len(files), "num_bytes": total}


def parse_version(version: str) -> tuple[int, ...]:
    """(major, minor, patch) of a version string such as '0.10.2' or '0.10.2.dev20260101'."""
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", str(version))
    if not match:
        raise ArtifactError(f"cannot parse the version string {version!r} in the artifact sidecar")
    return tuple(int(g or 0) for g in match.groups())


def check_jax_version(exported_with: str, running: str, *, allow_mismatch: bool = False) -> None:
    """Refuse an artifact from a newer jax; warn across minor versions.

    jax.export guarantees that an artifact runs on a jax up to ~6 months newer than the exporter
    but only ~3 weeks older (jax docs, export.md "Compatibility guarantees"), so a controller whose
    jax is older than the exporter's is refused unless `allow_mismatch`.
    """
    old, new = parse_version(exported_with), parse_version(running)
    if new < old and not allow_mismatch:
        raise ArtifactError(
            f"the artifact was exported with jax {exported_with} but this process runs jax {running}, which is"
            " older: jax.export only reads artifacts from a jax at most ~3 weeks newer. Upgrade jax on the"
            f" controller to {exported_with}, or re-export the policy with jax {running}"
        )
    if new[:2] != old[:2]:
        warnings.warn(
            f"policy artifact exported with jax {exported_with}, running jax {running}: jax.export reads"
            " artifacts up to ~6 months old; pin the controller's jax and re-export when upgrading",
            stacklevel=3,
        )


def read_sidecar(directory: str | os.PathLike) -> dict:
    """The artifact's JSON sidecar, with its format and required keys checked."""
    directory = os.fspath(directory)
    path = os.path.join(directory, SIDECAR)
    if not os.path.isdir(directory):
        raise ArtifactError(
            f"no policy artifact at {directory}: not a directory (export one with experiments.export_policy)"
        )
    if not os.path.isfile(path):
        raise ArtifactError(
            f"{directory} is not a policy artifact: {SIDECAR} is missing (export one with experiments.export_policy)"
        )
    try:
        with open(path) as f:
            sidecar = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path} is not readable JSON ({e}); the artifact is corrupt, export it again") from e
    if not isinstance(sidecar, dict):
        raise ArtifactError(f"{path} must hold a JSON object; the artifact is corrupt, export it again")
    if sidecar.get("format") != FORMAT:
        raise ArtifactError(
            f"{path} has format {sidecar.get('format')!r}, this robojax reads {FORMAT!r};"
            " re-export the policy with this robojax version"
        )
    required = ("jax_version", "platforms", "files", "observation_spec", "action_spec", "control_dt", "carry", "key")
    missing = [k for k in required if k not in sidecar]
    if missing:
        raise ArtifactError(f"{path} lacks the keys {missing}; the artifact is corrupt, export it again")
    return sidecar


def verify_files(directory: str | os.PathLike, sidecar: Mapping) -> None:
    """Check every hashed artifact file against the sha256 the sidecar records."""
    files = sidecar["files"]
    for name in HASHED_FILES:
        path = os.path.join(os.fspath(directory), name)
        if name not in files:
            raise ArtifactError(f"{SIDECAR} in {directory} records no hash for {name}; export the policy again")
        if not os.path.isfile(path):
            raise ArtifactError(f"{path} is missing; the artifact is incomplete, export the policy again")
        actual = sha256_file(path)
        if actual != files[name]:
            raise ArtifactError(
                f"{path} is corrupt: sha256 {actual[:16]}... differs from {files[name][:16]}... recorded in"
                f" {SIDECAR}; copy the artifact again or re-export it"
            )


def _aval_str(shape, dtype) -> str:
    return f"{np.dtype(dtype).name}{list(shape)}"


def _check_signature(
    exported, sidecar: Mapping, obs_spec: Spec, action_spec: Spec, carry: list[np.ndarray], where: str
):
    """The exported function's argument and result shapes must be those the sidecar describes."""
    key = sidecar["key"]
    want_in = [(tuple(c.shape), c.dtype) for c in carry] + [(obs_spec.shape, obs_spec.dtype)]
    want_in.append((tuple(key["shape"]), np.dtype(key["dtype"])))
    want_out = [(action_spec.shape, action_spec.dtype)] + [(tuple(c.shape), c.dtype) for c in carry]
    want_out.append((tuple(key["shape"]), np.dtype(key["dtype"])))
    got_in = [(tuple(a.shape), np.dtype(a.dtype)) for a in exported.in_avals]
    got_out = [(tuple(a.shape), np.dtype(a.dtype)) for a in exported.out_avals]
    for label, want, got in (("arguments", want_in, got_in), ("results", want_out, got_out)):
        if want != got:
            raise ArtifactError(
                f"{where}: the exported step's {label} are {[_aval_str(*g) for g in got]} but {SIDECAR}"
                f" describes {[_aval_str(*w) for w in want]} (carry, observation, key); the sidecar and"
                " the serialised policy do not belong together, export the policy again"
            )


class DeployedPolicy:
    """A loaded policy artifact: `reset()`, then `action = policy(obs)` once per control step.

    Carries the policy's own state (recurrent state, action chunk, RNG key) between calls.
    Observations are validated (shape, NaN/inf) before the call; actions are checked finite and
    clipped into the action spec's bounds.
    """

    def __init__(self, directory: str, sidecar: dict, exported, initial_carry: list[np.ndarray], *, seed: int, device):
        import jax

        self.directory = directory
        self.metadata = sidecar
        self.observation_spec = Spec.from_dict(sidecar["observation_spec"], "observation_spec")
        self.action_spec = Spec.from_dict(sidecar["action_spec"], "action_spec")
        self.control_dt = float(sidecar["control_dt"])
        self.stochastic = bool(sidecar.get("stochastic", False))
        self.platforms = tuple(exported.platforms)
        self.device = device
        self._exported = exported
        self._initial_carry = tuple(jax.device_put(np.asarray(c), device) for c in initial_carry)
        sharding = jax.sharding.SingleDeviceSharding(device)
        self._step = jax.jit(exported.call, in_shardings=sharding, out_shardings=sharding)
        self._low, self._high = self.action_spec.low, self.action_spec.high
        self._clip = bool(np.isfinite(self._low).any() or np.isfinite(self._high).any())
        self._seed = int(seed)
        self.reset(seed)

    @property
    def spec(self) -> dict:
        """{"observation": Spec, "action": Spec, "control_dt": float}."""
        return {"observation": self.observation_spec, "action": self.action_spec, "control_dt": self.control_dt}

    @property
    def carry(self) -> tuple[np.ndarray, ...]:
        """The current carry leaves, as numpy arrays (for inspection and tests)."""
        return tuple(np.asarray(c) for c in self._carry)

    def reset(self, seed: int | None = None) -> None:
        """Back to the initial carry; reseed the policy's noise (default: the seed given to `load`)."""
        import jax

        self._seed = self._seed if seed is None else int(seed)
        key = jax.random.key_data(jax.random.PRNGKey(self._seed))
        self._key = jax.device_put(np.asarray(key, np.dtype(self.metadata["key"]["dtype"])), self.device)
        self._carry = self._initial_carry
        self.steps = 0

    def __call__(self, obs: Any) -> np.ndarray:
        """One control step: the action for `obs` (numpy, the action spec's dtype)."""
        obs = self.observation_spec.validate(obs, "observation")
        action, self._carry, self._key = self._step(self._carry, obs, self._key)
        action = np.asarray(action)
        if not np.isfinite(action).all():
            raise PolicyOutputError(f"the policy returned a non-finite action {action} at step {self.steps}")
        self.steps += 1
        if self._clip:
            action = np.clip(action, self._low, self._high)
        return action

    def __repr__(self) -> str:
        return (
            f"DeployedPolicy({self.directory!r}, obs={self.observation_spec.shape}, action={self.action_spec.shape},"
            f" control_dt={self.control_dt}, carry_leaves={len(self._initial_carry)}, stochastic={self.stochastic},"
            f" device={self.device})"
        )


def _pick_device(platforms: Sequence[str], platform: str | None):
    import jax

    wanted = platform or ("cpu" if "cpu" in platforms else None)
    if wanted is None:
        wanted = jax.default_backend()
    if wanted not in platforms:
        raise ArtifactError(
            f"the artifact was exported for platforms {list(platforms)}, not {wanted!r};"
            f" re-export with --platforms={','.join(list(platforms) + [wanted])}"
        )
    try:
        return jax.devices(wanted)[0]
    except RuntimeError as e:
        raise ArtifactError(f"this process has no {wanted!r} device ({e}); load with platform='cpu'") from e


def load(
    directory: str | os.PathLike,
    *,
    seed: int = 0,
    platform: str | None = None,
    allow_jax_mismatch: bool = False,
    warmup: bool = True,
) -> DeployedPolicy:
    """Validate and load a policy artifact.

    platform: where to run the step ("cpu", "cuda"); default the CPU, which at batch 1 beats a
      GPU's launch latency. warmup: run one step (compiles) and reset, so the first control step is fast.
    Raises ArtifactError for a missing, corrupt or incompatible artifact.
    """
    import jax

    directory = os.path.abspath(os.fspath(directory))
    sidecar = read_sidecar(directory)
    check_jax_version(sidecar["jax_version"], jax.__version__, allow_mismatch=allow_jax_mismatch)
    verify_files(directory, sidecar)
    obs_spec = Spec.from_dict(sidecar["observation_spec"], "observation_spec")
    action_spec = Spec.from_dict(sidecar["action_spec"], "action_spec")

    with np.load(os.path.join(directory, CARRY_FILE), allow_pickle=False) as npz:
        names = [f"carry_{i}" for i in range(len(sidecar["carry"]))]
        if sorted(npz.files) != sorted(names):
            raise ArtifactError(
                f"{CARRY_FILE} holds the arrays {sorted(npz.files)}, {SIDECAR} describes {len(names)} carry leaves;"
                " export the policy again"
            )
        carry = [npz[name] for name in names]
    for i, (leaf, desc) in enumerate(zip(carry, sidecar["carry"])):
        if list(leaf.shape) != list(desc["shape"]) or leaf.dtype.name != desc["dtype"]:
            raise ArtifactError(
                f"carry leaf {i} ({desc.get('name', '')}) is {_aval_str(leaf.shape, leaf.dtype)} in {CARRY_FILE} but"
                f" {_aval_str(desc['shape'], desc['dtype'])} in {SIDECAR}; export the policy again"
            )

    with open(os.path.join(directory, STEP_FILE), "rb") as f:
        blob = f.read()
    try:
        exported = jax.export.deserialize(bytearray(blob))
    except ImportError as e:
        raise ArtifactError(f"cannot deserialise {STEP_FILE}: {e} (pip install flatbuffers)") from e
    except Exception as e:  # jax raises assorted errors for foreign/expired serialisations
        raise ArtifactError(
            f"jax {jax.__version__} cannot deserialise {os.path.join(directory, STEP_FILE)} (exported with jax"
            f" {sidecar['jax_version']}): {e}; re-export the policy with this jax version"
        ) from e
    _check_signature(exported, sidecar, obs_spec, action_spec, carry, directory)
    device = _pick_device(exported.platforms, platform)
    policy = DeployedPolicy(directory, sidecar, exported, carry, seed=seed, device=device)
    if warmup:
        policy(np.clip(np.zeros(obs_spec.shape, obs_spec.dtype), obs_spec.low, obs_spec.high))
        policy.reset()
    return policy
