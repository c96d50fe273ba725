"""RAPTOR student -> policy artifact: the GRU student's step, its hidden state as the artifact's carry.

The exported step is `networks.student_step(params, h, obs) -> (action, h')` for one quadrotor
(obs [22] -> motor commands [4] in [-1, 1]); the carry is the GRU hidden state h [16], starting
from the stored initial state h0 (`initial_hidden_state`, part of the 2084 parameters), which the
controller's `reset()` restores. The student is deterministic; the artifact's key is unused.
The non-recurrent ablation (`kind="feedforward"`) exports with an empty carry.

Where parameters come from (`load_raptor_source`):
  RUN/                              a RAPTOR run (config.json, format robojax.raptor/1): the latest
                                    checkpoint of checkpoints/student/ (or `step=`)
  RUN/checkpoints/student[/EPOCH]   that checkpoint directory (checkpoints/feedforward: the ablation)
  FILE.npz                          the student's weights in `networks.numpy_parameters` layout
                                    (see `save_student_npz`): input_kernel [22,16], input_bias [16],
                                    gru_input_kernel [16,48], gru_recurrent_kernel [16,48] (gates
                                    [r, z, n]), gru_input_bias [48], gru_recurrent_bias [48],
                                    initial_hidden_state [16], output_kernel [16,4], output_bias [4],
                                    optionally `metadata`: a JSON string ({"env", "control_dt", ...})
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robojax.agents.raptor import networks as S
from robojax.envs.core import ArraySpec
from robojax.policy import Policy

RUN_FORMAT = "robojax.raptor/1"  # robojax.agents.raptor.train.FORMAT (not imported: it pulls in the SAC loop)
NPZ_FORMAT = "robojax.raptor.student_npz/1"
KINDS = ("gru", "feedforward")
# The env a student of a 'track' or 'both' run flies in (the CLI reads its control period from envs).
DEFAULT_ENV = "quadrotor_track"
OBSERVATION_SPEC = ArraySpec((S.OBS_SIZE,), np.float32, name="observation")
ACTION_SPEC = ArraySpec((S.ACTION_SIZE,), np.float32, -1.0, 1.0, name="motor_commands")
NUMPY_SHAPES = {
    "input_kernel": (S.OBS_SIZE, S.HIDDEN_SIZE),
    "input_bias": (S.HIDDEN_SIZE,),
    "gru_input_kernel": (S.HIDDEN_SIZE, 3 * S.HIDDEN_SIZE),
    "gru_recurrent_kernel": (S.HIDDEN_SIZE, 3 * S.HIDDEN_SIZE),
    "gru_input_bias": (3 * S.HIDDEN_SIZE,),
    "gru_recurrent_bias": (3 * S.HIDDEN_SIZE,),
    "initial_hidden_state": (S.HIDDEN_SIZE,),
    "output_kernel": (S.HIDDEN_SIZE, S.ACTION_SIZE),
    "output_bias": (S.ACTION_SIZE,),
}


@dataclasses.dataclass
class RaptorSource:
    """A student's parameters and what the sidecar records about where they came from."""

    params: Any  # flax variables {"params": {...}} of RaptorStudent (or FeedforwardStudent)
    kind: str = "gru"
    env: str | None = None
    control_dt: float | None = None
    path: str | None = None
    hash_include: tuple[str, ...] | None = None
    step: int | None = None  # distillation epoch of the checkpoint
    run_metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown RAPTOR student kind {self.kind!r}; use one of {list(KINDS)}")


def params_from_numpy(weights: Mapping[str, np.ndarray]) -> dict:
    """Inverse of `networks.numpy_parameters`: the flat float32 arrays back into flax variables."""
    missing = sorted(set(NUMPY_SHAPES) - set(weights))
    if missing:
        raise ValueError(f"the student weights lack {missing}; expected the keys of networks.numpy_parameters")
    for name, shape in NUMPY_SHAPES.items():
        if tuple(np.shape(weights[name])) != shape:
            raise ValueError(f"student weight {name} has shape {np.shape(weights[name])}, expected {shape}")
    w = {k: jnp.asarray(np.asarray(weights[k], np.float32)) for k in NUMPY_SHAPES}
    return {
        "params": {
            "initial_hidden_state": w["initial_hidden_state"],
            "input_layer": {"kernel": w["input_kernel"], "bias": w["input_bias"]},
            "gru": {
                "input_kernel": w["gru_input_kernel"],
                "recurrent_kernel": w["gru_recurrent_kernel"],
                "input_bias": w["gru_input_bias"],
                "recurrent_bias": w["gru_recurrent_bias"],
            },
            "output_layer": {"kernel": w["output_kernel"], "bias": w["output_bias"]},
        }
    }


def save_student_npz(params: dict, path: str | os.PathLike, metadata: Mapping[str, Any] | None = None) -> str:
    """Write the GRU student's weights as a numpy .npz (numpy_parameters layout), written aside then renamed."""
    path = os.path.abspath(os.fspath(path))
    if not path.endswith(".npz"):
        raise ValueError(f"the student weights file must end in .npz, got {path}")
    meta = {"format": NPZ_FORMAT, **dict(metadata or {})}
    tmp = path[:-4] + ".tmp.npz"
    np.savez(tmp, **S.numpy_parameters(params), metadata=np.asarray(json.dumps(meta)))
    os.replace(tmp, path)
    return path


def is_student_npz(path: str | os.PathLike) -> bool:
    """Whether `path` is a .npz holding the GRU student's weights in numpy_parameters layout."""
    path = os.fspath(path)
    if not (os.path.isfile(path) and path.endswith(".npz")):
        return False
    with np.load(path, allow_pickle=False) as npz:
        return set(NUMPY_SHAPES) <= set(npz.files)


def _load_npz(path: str) -> RaptorSource:
    with np.load(path, allow_pickle=False) as npz:
        if not set(NUMPY_SHAPES) <= set(npz.files):
            raise ValueError(
                f"{path} is not a RAPTOR student weights file: it holds {sorted(npz.files)}, expected"
                f" {sorted(NUMPY_SHAPES)} (networks.numpy_parameters layout, see save_student_npz)"
            )
        weights = {k: npz[k] for k in NUMPY_SHAPES}
        meta = json.loads(str(npz["metadata"])) if "metadata" in npz.files else {}
    return RaptorSource(
        params=params_from_numpy(weights),
        kind="gru",
        env=meta.get("env"),
        control_dt=meta.get("control_dt"),
        path=path,
        run_metadata=meta,
    )


def _env_of(metadata: Mapping) -> str:
    task = (metadata.get("config") or {}).get("task", "track")
    return "quadrotor_hover" if task == "hover" else DEFAULT_ENV


def load_raptor_source(path: str | os.PathLike, *, step: int | None = None) -> RaptorSource:
    """Read a RAPTOR student from a run directory, a student checkpoint (directory or epoch), or an .npz."""
    from robojax import checkpoint as ckpt

    path = os.path.abspath(os.fspath(path))
    if os.path.isfile(path):
        if step is not None:
            raise ValueError(f"{path} is a weights file; --step applies to checkpoint directories only")
        return _load_npz(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no RAPTOR run, student checkpoint or weights file at {path}")
    if os.path.isdir(os.path.join(path, "checkpoints", "student")):  # a run directory
        return load_raptor_source(os.path.join(path, "checkpoints", "student"), step=step)
    parent, name = os.path.dirname(path), os.path.basename(path)
    if name.isdigit() and os.path.isdir(os.path.join(path, "state")):  # one epoch directory
        if step is not None and step != int(name):
            raise ValueError(f"{path} is checkpoint epoch {name}, not {step}")
        path, step = parent, int(name)
    kind = "feedforward" if os.path.basename(path) == "feedforward" else "gru"
    with ckpt.Checkpointer(path, create=False) as checkpointer:
        step = checkpointer._resolve(step)
        metadata = checkpointer.read_metadata(step)
        step_dir = checkpointer.step_path(step)
    if metadata.get("format") != RUN_FORMAT:
        raise ValueError(
            f"{step_dir} holds a {metadata.get('format')!r} checkpoint, not a RAPTOR student ({RUN_FORMAT});"
            " pass a RAPTOR run directory or its checkpoints/student directory"
        )
    tree = ckpt.restore_numpy(path, step)
    params = tree.get("params") if isinstance(tree, Mapping) else None
    if not isinstance(params, Mapping) or "params" not in params:
        raise ValueError(f"{step_dir} holds no student parameters (expected a DistillState with params)")
    return RaptorSource(
        params=jax.tree.map(jnp.asarray, params),
        kind=kind,
        env=_env_of(metadata),
        path=step_dir,
        hash_include=("state", "metadata"),
        step=step,
        run_metadata=metadata,
    )


def recurrent_state(source: RaptorSource) -> dict:
    """The sidecar's description of the carried state."""
    if source.kind == "feedforward":
        return {"shape": [], "dtype": None, "kind": "none (feedforward ablation)"}
    return {
        "shape": [S.HIDDEN_SIZE],
        "dtype": "float32",
        "kind": "GRU hidden state h",
        "initial": "the stored initial_hidden_state parameter h0, restored by reset()",
    }


def make_policy(source: RaptorSource) -> Policy:
    """The student as a Policy: carry = GRU hidden state [16] (or () for the ablation)."""
    return S.student_policy(S.student_functions(source.kind), source.params)


def export_raptor_student(
    source: RaptorSource,
    out_dir: str | os.PathLike,
    *,
    control_dt: float | None = None,
    platforms=("cpu",),
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> str:
    """Write the policy artifact of a RAPTOR student (see robojax.export.export_policy)."""
    from robojax.export import export_policy, source_record

    control_dt = control_dt if control_dt is not None else source.control_dt
    if control_dt is None:
        raise ValueError(
            "the student's source records no control period; pass control_dt (--control_dt), 0.01 s"
            " for robojax's quadrotor tasks"
        )
    meta = {
        "learner": "raptor",
        "student": source.kind,
        "env": source.env,
        "checkpoint_step": source.step,
        "parameters": S.count_parameters(source.params),
        "recurrent_state": recurrent_state(source),
        "run_config": (source.run_metadata or {}).get("config"),
        **dict(metadata or {}),
    }
    return export_policy(
        make_policy(source),
        out_dir,
        observation_spec=OBSERVATION_SPEC,
        action_spec=ACTION_SPEC,
        control_dt=control_dt,
        metadata=meta,
        platforms=platforms,
        source_checkpoint=source_record(source.path, source.hash_include),
        overwrite=overwrite,
    )


# ---- dependency-free C ---------------------------------------------------------------------------


def student_c_policy(params: dict):
    """The recurrent student as a generic C policy: Dense(22->16, ReLU) -> GRU(16) -> Dense(16->4, tanh)."""
    from robojax.export import c_export

    n_params = S.count_parameters(params)
    if n_params != S.PAPER_PARAMETER_COUNT:
        raise ValueError(
            f"export_student_c expects the {S.PAPER_PARAMETER_COUNT}-parameter GRU student"
            f" (robojax.agents.raptor.networks.init_student), got {n_params} parameters"
        )
    w = S.numpy_parameters(params)
    return c_export.CPolicy(
        (
            c_export.Dense(w["input_kernel"], w["input_bias"], "relu", name="input"),
            c_export.GRU(
                w["gru_input_kernel"],
                w["gru_recurrent_kernel"],
                w["gru_input_bias"],
                w["gru_recurrent_bias"],
                w["initial_hidden_state"],
                name="gru",
            ),
            c_export.Dense(w["output_kernel"], w["output_bias"], "tanh", name="output"),
        ),
        description="RAPTOR student policy, Dense(22->16, ReLU) -> GRU(16) -> Dense(16->4) -> tanh.",
    )


def reference_sequence(params: dict, steps: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random observations (steps, 22) and the JAX student's actions (steps, 4), from reset."""
    obs = np.asarray(jax.random.normal(jax.random.PRNGKey(seed), (steps, S.OBS_SIZE)), np.float32)
    actions, _ = S.student_sequence(params, obs)
    return obs, np.asarray(actions, np.float32)


def export_student_c(
    params: dict, out_dir: str | os.PathLike, name: str = "raptor_student", reference_steps: int = 8, seed: int = 0
) -> dict:
    """Write `<name>.h`, `<name>.c` and `<name>_selftest.c` (robojax.export.c_export) into `out_dir`."""
    from robojax.export import c_export

    policy = student_c_policy(params)
    if reference_steps < 1:
        raise ValueError(f"reference_steps must be >= 1, got {reference_steps}")
    obs, actions = reference_sequence(params, reference_steps, seed)
    return c_export.export_policy_c(
        policy,
        out_dir,
        name,
        obs,
        actions,
        defines={"HIDDEN_SIZE": S.HIDDEN_SIZE, "CONTROL_HZ": 100},
        header_notes=[
            "Observation: position error (3), rotation matrix row-major (9), velocity error (3),",
            "body angular velocity (3), previous action (4). Action: 4 motor commands in [-1, 1].",
        ],
    )
