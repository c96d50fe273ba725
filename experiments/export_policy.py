"""Export a trained policy (SAC, PPO, Diffusion Policy, EBT-Policy, RAPTOR student) as a self-contained artifact.

    python -m experiments.export_policy --checkpoint=runs/sac_arm_reach --out=artifacts/sac_arm_reach
    python -m experiments.export_policy --checkpoint=runs/sac_arm_reach/checkpoints --step=20000 \
        --out=artifacts/sac_arm_reach_20k --platforms=cpu,cuda

    python -m experiments.export_policy --checkpoint=runs/dp_push --out=artifacts/dp_push_rti \
        --inference=rti --action_steps=1 --rti_start_step=20 --rti_steps=2
    python -m experiments.export_policy --checkpoint=runs/ebt_push --out=artifacts/ebt_push --inference_steps=2
    python -m experiments.export_policy --checkpoint=runs/raptor --out=artifacts/raptor_student
    python -m experiments.export_policy --checkpoint=runs/ppo_cartpole --out=artifacts/ppo_cartpole --seed_index=1

The learner is detected from the saved metadata's format string:
  SAC (robojax.sac.*)          a run directory (its final policy/, or a checkpoint with --step), a
                               policy/ directory, a checkpoints/ directory, or one checkpoint step;
                               the deterministic actor tanh(mean) (--stochastic: the sampling policy)
  PPO (robojax.ppo/1)          the same layouts as SAC; every seed of the run is saved, --seed_index
                               picks one (default 0); the policy mean clipped or squashed onto the
                               bounds (--stochastic: the sampling policy); control_dt = task dt x
                               action_repeat, as the run recorded it
  Diffusion Policy             a run directory or its policy/ (robojax.diffusion_policy/1); the
                               receding-horizon policy with --inference=ddpm|ddim|rti and its step
                               flags (default: the run's own inference settings), recorded in the sidecar
  EBT-Policy                   a run directory or its policy/ (robojax.ebt_policy/1); the energy-descent
                               receding-horizon policy with its inference flags (--inference_steps,
                               --adaptive, --num_samples, --warm_start, --escalate, ...; default: the
                               run's own settings); the plan's energy rides in the carry
  RAPTOR (robojax.raptor/1)    a run directory, its checkpoints/student[/EPOCH] (checkpoints/feedforward:
                               the ablation), or a student .npz in networks.numpy_parameters layout
The artifact is the policy's step serialised with jax.export (normalisers, chunk bookkeeping or GRU
state in its carry) and artifact.json describing specs, control rate, statistics, the jax version
and the checkpoint's sha256. Load it with `robojax.deploy.load(DIR)` or run it on a
robot with `python -m experiments.run_controller --policy=DIR`.
"""

from __future__ import annotations

import json
import os

from absl import app, flags

import robojax  # noqa: F401  (XLA CPU flags before JAX initialises)

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Run, policy, checkpoints or checkpoint-step directory.")
_OUT = flags.DEFINE_string("out", None, "Artifact directory to write (written aside, then renamed in).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step to export (default: the final policy, else the latest).")
_PLATFORMS = flags.DEFINE_list(
    "platforms", ["cpu"], "Platforms to lower for: cpu, cuda (cuda lowers on a CPU machine)."
)
_STOCHASTIC = flags.DEFINE_boolean(
    "stochastic", False, "SAC and PPO: export the sampling policy instead of the deterministic one."
)
_SEED_INDEX = flags.DEFINE_integer(
    "seed_index", None, "PPO: which of the run's seeds to export (0 = its --seed; default 0)."
)
_CONTROL_DT = flags.DEFINE_float(
    "control_dt", None, "Control period in seconds (default: the robojax task's; required for other envs)."
)
_OVERWRITE = flags.DEFINE_boolean("overwrite", False, "Replace an existing artifact at --out.")


def _define_inference_flags(config_cls, learner: str, skip=()) -> dict:
    """A learner's inference flags, one per InferenceConfig field; None keeps the run's setting."""
    import dataclasses

    from robojax.agents.diffusion_policy.config import INFERENCE_MODES

    defined = {}
    for field in dataclasses.fields(config_cls):
        if field.name in skip:
            continue
        help_ = f"{learner}: " + field.metadata.get("help", field.name) + " (default: the run's setting)"
        if field.type in ("bool", bool):
            defined[field.name] = flags.DEFINE_boolean(field.name, None, help_)
        elif field.name == "inference":
            defined[field.name] = flags.DEFINE_enum(field.name, None, list(INFERENCE_MODES), help_)
        elif field.type in ("int", int):
            defined[field.name] = flags.DEFINE_integer(field.name, None, help_)
        elif field.type in ("float", float):
            defined[field.name] = flags.DEFINE_float(field.name, None, help_)
        else:
            defined[field.name] = flags.DEFINE_string(field.name, None, help_)
    return defined


def _inference_flags():
    from robojax.agents.diffusion_policy.config import InferenceConfig
    from robojax.agents.ebt_policy.config import InferenceConfig as EBTInferenceConfig

    dp = _define_inference_flags(InferenceConfig, "Diffusion Policy")
    # --action_steps is shared: both learners execute that many actions per plan.
    ebt = _define_inference_flags(EBTInferenceConfig, "EBT-Policy", skip=("action_steps",))
    return dp, {**ebt, "action_steps": dp["action_steps"]}


_INFERENCE, _EBT_INFERENCE = _inference_flags()
KINDS = {
    "sac": "a SAC run, policy/, checkpoints/ or checkpoint step (format robojax.sac.*)",
    "ppo": "a PPO run, policy/, checkpoints/ or checkpoint step (format robojax.ppo/1)",
    "diffusion_policy": "a Diffusion Policy run or its policy/ directory (format robojax.diffusion_policy/1)",
    "ebt_policy": "an EBT-Policy run or its policy/ directory (format robojax.ebt_policy/1)",
    "raptor": "a RAPTOR run, its checkpoints/student[/EPOCH], or a student .npz (format robojax.raptor/1)",
}

flags.mark_flags_as_required(["checkpoint", "out"])


def _task_control_dt(env_name: str | None) -> float:
    from robojax.envs import registry

    if env_name is None or not registry.is_known(env_name):
        raise app.UsageError(
            f"the run's env {env_name!r} is not a robojax task, so its control period is unknown; pass --control_dt"
        )
    return float(registry.make(env_name).dt)


def _json_format(path: str) -> str | None:
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError):
        return None
    return value.get("format") if isinstance(value, dict) else None


def _checkpoint_format(path: str) -> str | None:
    """The format recorded with the latest (or this step's) checkpoint under `path`, if any."""
    from robojax import checkpoint as ckpt

    parent, name = os.path.dirname(path), os.path.basename(path)
    step = None
    if name.isdigit() and os.path.isdir(os.path.join(path, "state")):
        path, step = parent, int(name)
    for directory in (path, os.path.join(path, "checkpoints")):
        if not os.path.isdir(directory):
            continue
        with ckpt.Checkpointer(directory, create=False) as checkpointer:
            if checkpointer.latest_step() is None:
                continue
            return checkpointer.read_metadata(step).get("format")
    return None


def detect_kind(path: str) -> str:
    """'sac', 'ppo', 'diffusion_policy', 'ebt_policy' or 'raptor', from the format string saved beside the parameters."""
    from robojax.agents.raptor.export import is_student_npz

    path = os.path.abspath(path)
    if os.path.isfile(path):
        if is_student_npz(path):
            return "raptor"
        fmt = "a file that is not a RAPTOR student .npz"
    elif not os.path.isdir(path):
        raise app.UsageError(f"--checkpoint {path} does not exist")
    else:
        fmt = None
        for candidate in ("policy.json", os.path.join("policy", "policy.json"), "config.json"):
            fmt = fmt or _json_format(os.path.join(path, candidate))
        if fmt is None and os.path.isdir(os.path.join(path, "checkpoints", "student")):
            fmt = _checkpoint_format(os.path.join(path, "checkpoints", "student"))
        fmt = fmt or _checkpoint_format(path)
        if fmt is not None:
            for prefix, kind in (
                ("robojax.sac.", "sac"),
                ("robojax.ppo", "ppo"),
                ("robojax.diffusion_policy", "diffusion_policy"),
                ("robojax.ebt_policy", "ebt_policy"),
                ("robojax.raptor", "raptor"),
            ):
                if fmt.startswith(prefix):
                    return kind
        fmt = f"format {fmt!r}" if fmt else "no recognisable saved metadata (policy.json, config.json, checkpoints)"
    accepted = "; ".join(f"{kind}: {what}" for kind, what in KINDS.items())
    raise app.UsageError(f"--checkpoint {path} holds {fmt}; export_policy accepts {accepted}")


def _inference_config(saved, config_cls, defined):
    import dataclasses

    given = {name: flag.value for name, flag in defined.items() if flag.value is not None}
    return dataclasses.replace(saved or config_cls(), **given)


def _export(kind: str):
    platforms = tuple(_PLATFORMS.value)
    if kind not in ("sac", "ppo") and _STOCHASTIC.value:
        raise app.UsageError(
            "--stochastic applies to SAC and PPO only (Diffusion Policy and EBT-Policy always sample; RAPTOR is"
            " deterministic)"
        )
    if kind != "ppo" and _SEED_INDEX.value is not None:
        raise app.UsageError(f"--seed_index applies to PPO runs (several seeds in one run), not to a {kind} policy")
    dp_only = sorted(set(_INFERENCE) - set(_EBT_INFERENCE))
    ebt_only = sorted(set(_EBT_INFERENCE) - set(_INFERENCE))
    for learner, names, accepts in (
        ("Diffusion Policy", dp_only, ("diffusion_policy",)),
        ("EBT-Policy", ebt_only, ("ebt_policy",)),
        ("Diffusion Policy and EBT-Policy", ["action_steps"], ("diffusion_policy", "ebt_policy")),
    ):
        given = [name for name in names if _INFERENCE.get(name, _EBT_INFERENCE.get(name)).value is not None]
        if given and kind not in accepts:
            raise app.UsageError(f"--{', --'.join(given)} apply to {learner} only, not to a {kind} policy")
    if kind == "sac":
        from robojax.agents.sac.export import export_sac, load_sac_source

        source = load_sac_source(_CHECKPOINT.value, step=_STEP.value)
        return export_sac(
            source,
            _OUT.value,
            control_dt=_CONTROL_DT.value or _task_control_dt(source.env),
            deterministic=not _STOCHASTIC.value,
            platforms=platforms,
            overwrite=_OVERWRITE.value,
        )
    if kind == "ppo":
        from robojax.agents.ppo.export import export_ppo, load_ppo_source

        try:
            source = load_ppo_source(_CHECKPOINT.value, step=_STEP.value, seed_index=_SEED_INDEX.value or 0)
        except ValueError as e:  # a seed index the run does not have
            raise app.UsageError(str(e)) from None
        control_dt = _CONTROL_DT.value or source.control_dt
        if control_dt is None:
            control_dt = _task_control_dt(source.env) * (source.action_repeat or 1)
        return export_ppo(
            source,
            _OUT.value,
            control_dt=control_dt,
            deterministic=not _STOCHASTIC.value,
            platforms=platforms,
            overwrite=_OVERWRITE.value,
        )
    if kind in ("diffusion_policy", "ebt_policy"):
        if kind == "diffusion_policy":
            from robojax.agents.diffusion_policy.config import InferenceConfig
            from robojax.agents.diffusion_policy.export import export_diffusion_policy as export
            from robojax.agents.diffusion_policy.export import load_dp_source as load

            defined = _INFERENCE
        else:
            from robojax.agents.ebt_policy.config import InferenceConfig
            from robojax.agents.ebt_policy.export import export_ebt_policy as export
            from robojax.agents.ebt_policy.export import load_ebt_source as load

            defined = _EBT_INFERENCE
        source = load(_CHECKPOINT.value, step=_STEP.value)
        return export(
            source,
            _OUT.value,
            inference=_inference_config(source.inference, InferenceConfig, defined),
            control_dt=_CONTROL_DT.value or source.control_dt or _task_control_dt(source.env),
            platforms=platforms,
            overwrite=_OVERWRITE.value,
        )
    from robojax.agents.raptor.export import export_raptor_student, load_raptor_source

    source = load_raptor_source(_CHECKPOINT.value, step=_STEP.value)
    control_dt = _CONTROL_DT.value or source.control_dt or _task_control_dt(source.env)
    return export_raptor_student(
        source, _OUT.value, control_dt=control_dt, platforms=platforms, overwrite=_OVERWRITE.value
    )


def main(argv):
    del argv
    try:
        out = _export(detect_kind(_CHECKPOINT.value))
    except (FileNotFoundError, FileExistsError) as e:  # a broken or missing saved policy, an existing --out
        raise app.UsageError(str(e)) from None
    with open(os.path.join(out, "artifact.json")) as f:
        sidecar = json.load(f)
    src = sidecar["source_checkpoint"] or {}
    print(f"wrote {out}")
    print(f"  policy      {sidecar['name']} ({'stochastic' if sidecar['stochastic'] else 'deterministic'})")
    print(f"  observation {sidecar['observation_spec']['shape']}  action {sidecar['action_spec']['shape']}")
    print(f"  control     {sidecar['control_dt']} s ({sidecar['control_rate_hz']:.1f} Hz)")
    print(f"  platforms   {','.join(sidecar['platforms'])}  jax {sidecar['jax_version']}")
    print(f"  source      {src.get('path')}  sha256 {str(src.get('sha256'))[:16]}...")
    chunking = sidecar["action_chunking"]
    if chunking.get("chunk_length", 1) > 1:
        print(
            f"  chunking    Tp={chunking['chunk_length']} Ta={chunking['executed_steps']}"
            f" inference={chunking.get('inference')}"
            + (
                f" nfe/chunk={chunking['nfe_per_chunk']}"
                if "nfe_per_chunk" in chunking
                else f" forward equivalents/plan={chunking.get('forward_equivalents_per_plan')}"
            )
        )
    if sidecar["carry"]:
        print(f"  carry       {', '.join(c['name'] + str(c['shape']) for c in sidecar['carry'])}")


if __name__ == "__main__":
    app.run(main)
