"""Export a trained SAC policy as a self-contained artifact for controllers.

    python -m experiments.export_policy --checkpoint=runs/sac_arm_reach --out=artifacts/sac_arm_reach
    python -m experiments.export_policy --checkpoint=runs/sac_arm_reach/checkpoints --step=20000 \
        --out=artifacts/sac_arm_reach_20k --platforms=cpu,cuda

--checkpoint takes a run directory (its final policy/, or a checkpoint with --step), a policy/
directory, a checkpoints/ directory, or one checkpoint step directory. The artifact holds the
deterministic actor tanh(mean) (--stochastic for the sampling policy) serialised with jax.export,
observation normalisation folded in, and artifact.json describing specs, control rate, statistics,
the jax version and the checkpoint's sha256. Load it with `robojax.deploy.load(DIR)` or run it on a
robot with `python -m experiments.run_controller --policy=DIR`.
"""

from __future__ import annotations

import json
import os

import robojax  # noqa: F401  (XLA CPU flags before JAX initialises)
from absl import app, flags

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Run, policy, checkpoints or checkpoint-step directory.")
_OUT = flags.DEFINE_string("out", None, "Artifact directory to write (written aside, then renamed in).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step to export (default: the final policy, else the latest).")
_PLATFORMS = flags.DEFINE_list("platforms", ["cpu"], "Platforms to lower for: cpu, cuda (cuda lowers on a CPU machine).")
_STOCHASTIC = flags.DEFINE_boolean("stochastic", False, "Export the sampling policy instead of tanh(mean).")
_CONTROL_DT = flags.DEFINE_float(
    "control_dt", None, "Control period in seconds (default: the robojax task's; required for other envs)."
)
_OVERWRITE = flags.DEFINE_boolean("overwrite", False, "Replace an existing artifact at --out.")

flags.mark_flags_as_required(["checkpoint", "out"])


def _task_control_dt(env_name: str | None) -> float:
    import envs

    if env_name is None or env_name not in envs.names():
        raise app.UsageError(
            f"the run's env {env_name!r} is not a robojax task, so its control period is unknown; pass --control_dt"
        )
    return float(envs.make(env_name).dt)


def main(argv):
    del argv
    from robojax.agents.sac.export import export_sac, load_sac_source

    source = load_sac_source(_CHECKPOINT.value, step=_STEP.value)
    control_dt = _CONTROL_DT.value or _task_control_dt(source.env)
    out = export_sac(
        source,
        _OUT.value,
        control_dt=control_dt,
        deterministic=not _STOCHASTIC.value,
        platforms=tuple(_PLATFORMS.value),
        overwrite=_OVERWRITE.value,
    )
    with open(os.path.join(out, "artifact.json")) as f:
        sidecar = json.load(f)
    src = sidecar["source_checkpoint"] or {}
    print(f"wrote {out}")
    print(f"  policy      {sidecar['name']} ({'stochastic' if sidecar['stochastic'] else 'deterministic'})")
    print(f"  observation {sidecar['observation_spec']['shape']}  action {sidecar['action_spec']['shape']}")
    print(f"  control     {sidecar['control_dt']} s ({sidecar['control_rate_hz']:.1f} Hz)")
    print(f"  platforms   {','.join(sidecar['platforms'])}  jax {sidecar['jax_version']}")
    print(f"  source      {src.get('path')}  sha256 {str(src.get('sha256'))[:16]}...")


if __name__ == "__main__":
    app.run(main)
