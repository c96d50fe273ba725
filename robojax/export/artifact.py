"""Writing policy artifacts: a policy's step function serialised with `jax.export` plus a JSON sidecar.

Any learner plugs in by handing `export_policy` a `robojax.policy.Policy`: two pure functions with
the parameters closed over (they become constants of the exported module),

    init_carry() -> carry                          () for a stateless policy, a GRU state, the previous
                                                   action chunk and its index for a chunked policy
    step(carry, obs, key) -> (action, carry)       obs [obs_dim] unbatched, key a raw uint32 PRNG key

and its descriptive fields (`stochastic`, `normalization`, `action_chunking`, `name`), which go to
the sidecar. The artifact's exported function wraps `step` so that it takes and returns
the carry as a flat tuple of leaves and splits the key itself (see robojax.deploy.artifact); the
controller then stays the same for every policy.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from robojax.deploy.artifact import (
    CARRY_FILE,
    FORMAT,
    SIDECAR,
    STEP_FILE,
    Spec,
    sha256_file,
    sha256_tree,
)
from robojax.policy import Policy

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def _key_name(entry: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _json_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.ndarray, jax.Array)):
        return np.asarray(value).tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check_platforms(platforms: Sequence[str]) -> tuple[str, ...]:
    platforms = tuple(str(p).strip().lower() for p in platforms if str(p).strip())
    if not platforms:
        raise ValueError("export_policy needs at least one platform, e.g. platforms=('cpu',)")
    unknown = [p for p in platforms if p not in PLATFORMS]
    if unknown:
        raise ValueError(f"unknown export platforms {unknown}; choose from {list(PLATFORMS)}")
    if len(set(platforms)) != len(platforms):
        raise ValueError(f"export platforms repeat: {list(platforms)}")
    return platforms


def flat_step(policy: Policy, carry_treedef) -> Callable:
    """The artifact's signature around `policy.step`: (carry leaves, obs, key) -> (action, leaves, next key)."""

    def step(carry_leaves, obs, key):
        carry = jax.tree.unflatten(carry_treedef, list(carry_leaves))
        use, next_key = jax.random.split(key)
        action, new_carry = policy.step(carry, obs, use)
        new_leaves, new_treedef = jax.tree.flatten(new_carry)
        if new_treedef != carry_treedef:
            raise ValueError(
                f"the policy's step returned a carry of structure {new_treedef}, but init_carry() gives"
                f" {carry_treedef}; step must return a carry shaped like the one it takes"
            )
        return action, tuple(new_leaves), next_key

    return step


def source_record(path: str | os.PathLike | None, include: Sequence[str] | None = None) -> dict | None:
    """The sidecar's `source_checkpoint` of parameters read from `path`: the path, the top-level entries
    read (`include`, None: all) and their content hash (`sha256_tree`); None without a path."""
    if path is None:
        return None
    path = os.path.abspath(os.fspath(path))
    return {"path": path, "items": list(include) if include else None, **sha256_tree(path, include or None)}


def export_source(
    policy: Policy,
    source: Any,
    out_dir: str | os.PathLike,
    *,
    control_dt: float,
    metadata: Mapping[str, Any],
    platforms: Sequence[str] = ("cpu",),
    overwrite: bool = False,
) -> str:
    """`export_policy` for a learner's loaded source (SAC, DP, RAPTOR, PPO adapters).

    source: anything with `observation_spec`, `action_spec` and `path` (the checkpoint or policy
    directory the parameters came from) and optionally `hash_include` (the top-level entries whose
    content hash the sidecar records; default all).
    """
    return export_policy(
        policy,
        out_dir,
        observation_spec=source.observation_spec,
        action_spec=source.action_spec,
        control_dt=control_dt,
        metadata=metadata,
        platforms=platforms,
        source_checkpoint=source_record(source.path, getattr(source, "hash_include", None)),
        overwrite=overwrite,
    )


def export_policy(
    policy: Policy,
    out_dir: str | os.PathLike,
    *,
    observation_spec: Any,
    action_spec: Any,
    control_dt: float,
    metadata: Mapping[str, Any] | None = None,
    platforms: Sequence[str] = ("cpu",),
    source_checkpoint: str | os.PathLike | Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> str:
    """Serialise `policy` into the artifact directory `out_dir` (written aside, then renamed in).

    observation_spec / action_spec: `ArraySpec`s (or their dicts) of one unbatched step.
    source_checkpoint: the file or directory the parameters came from (its sha256 is recorded), or
      an already computed {"path":..., "sha256":...} record.
    Returns the absolute artifact path.
    """
    if not isinstance(policy, Policy):
        raise TypeError(
            f"export_policy takes a robojax.policy.Policy, got {type(policy).__name__}; wrap the functions as"
            " Policy(init_carry=..., step=..., name=...)"
        )
    if policy.batch_size is not None:
        raise ValueError(
            f"policy {policy.name!r} is batched for {policy.batch_size} envs; export the policy of one observation"
        )
    obs_spec = Spec.coerce(observation_spec, "observation_spec")
    act_spec = Spec.coerce(action_spec, "action_spec")
    platforms = _check_platforms(platforms)
    control_dt = float(control_dt)
    if not control_dt > 0:
        raise ValueError(f"control_dt must be positive seconds, got {control_dt}")
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.exists(out_dir) and not overwrite:
        raise FileExistsError(f"{out_dir} already exists; choose a new output directory or pass overwrite=True")

    carry = policy.init_carry()
    leaves, treedef = jax.tree.flatten(carry)
    leaves = [np.asarray(leaf) for leaf in leaves]
    carry_desc = []
    for (path, _), leaf in zip(jax.tree_util.tree_flatten_with_path(carry)[0], leaves):
        carry_desc.append(
            {"name": ".".join(_key_name(p) for p in path), "shape": list(leaf.shape), "dtype": leaf.dtype.name}
        )

    key_data = np.asarray(jax.random.key_data(jax.random.PRNGKey(0)))
    args = (
        tuple(jax.ShapeDtypeStruct(leaf.shape, leaf.dtype) for leaf in leaves),
        jax.ShapeDtypeStruct(obs_spec.shape, obs_spec.dtype),
        jax.ShapeDtypeStruct(key_data.shape, key_data.dtype),
    )
    step = flat_step(policy, treedef)
    action_aval = jax.eval_shape(step, *args)[0]
    if tuple(action_aval.shape) != act_spec.shape or np.dtype(action_aval.dtype) != act_spec.dtype:
        raise ValueError(
            f"the policy's step returns an action {np.dtype(action_aval.dtype).name}{list(action_aval.shape)} for one"
            f" observation {obs_spec.dtype.name}{list(obs_spec.shape)}, but the action spec is"
            f" {act_spec.dtype.name}{list(act_spec.shape)}; steps take and return unbatched arrays"
        )
    exported = jax.export.export(jax.jit(step), platforms=platforms)(*args)
    blob = exported.serialize()

    if source_checkpoint is None:
        source = None
    elif isinstance(source_checkpoint, Mapping):
        source = dict(source_checkpoint)
    else:
        path = os.path.abspath(os.fspath(source_checkpoint))
        source = {"path": path, **sha256_tree(path)}

    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=os.path.basename(out_dir) + ".tmp-", dir=parent)
    os.chmod(staging, 0o755)  # mkdtemp makes it private; an artifact is meant to be copied around
    try:
        with open(os.path.join(staging, STEP_FILE), "wb") as f:
            f.write(bytes(blob))
        np.savez(os.path.join(staging, CARRY_FILE), **{f"carry_{i}": leaf for i, leaf in enumerate(leaves)})
        chunking = dict(policy.action_chunking or {"chunk_length": 1, "executed_steps": 1})
        sidecar = {
            "format": FORMAT,
            "name": policy.name or "",
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "jax_version": jax.__version__,
            "jaxlib_version": getattr(jax.lib, "__version__", None) or _jaxlib_version(),
            "robojax_version": _robojax_version(),
            "platforms": list(platforms),
            "files": {
                STEP_FILE: sha256_file(os.path.join(staging, STEP_FILE)),
                CARRY_FILE: sha256_file(os.path.join(staging, CARRY_FILE)),
            },
            "observation_spec": obs_spec.to_dict(),
            "action_spec": act_spec.to_dict(),
            "control_dt": control_dt,
            "control_rate_hz": 1.0 / control_dt,
            "stochastic": bool(policy.stochastic),
            "normalization": _json_ready(policy.normalization),
            "action_chunking": _json_ready(chunking),
            "carry": carry_desc,
            "key": {
                "shape": list(key_data.shape),
                "dtype": key_data.dtype.name,
                "impl": str(jax.config.jax_default_prng_impl),
            },
            "signature": "step(carry_leaves, obs, key) -> (action, carry_leaves, next_key)",
            "source_checkpoint": _json_ready(source),
            "metadata": _json_ready(dict(metadata or {})),
        }
        with open(os.path.join(staging, SIDECAR), "w") as f:
            json.dump(sidecar, f, indent=1, allow_nan=True)
        previous = None
        if os.path.exists(out_dir):
            previous = tempfile.mkdtemp(prefix=os.path.basename(out_dir) + ".old-", dir=parent)
            os.replace(out_dir, os.path.join(previous, "artifact"))
        os.replace(staging, out_dir)
        if previous:
            shutil.rmtree(previous, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _jaxlib_version() -> str | None:
    try:
        import jaxlib

        return jaxlib.__version__
    except (ImportError, AttributeError):
        return None


def _robojax_version() -> str:
    import robojax

    return robojax.__version__
