"""Policy artifacts for controllers: `jax.export` serialisations with a JSON sidecar.

    from robojax.policy import Policy
    from robojax.export import export_policy
    export_policy(Policy(init_carry, step, name="my_policy"), "artifacts/my_policy",
                  observation_spec=..., action_spec=..., control_dt=0.04, metadata={...})

Load the result with `robojax.deploy.load` (which needs no learner code). The SAC adapter is
`robojax.agents.sac.export`; `python -m experiments.export_policy` does it from a run directory.
"""

from robojax.export.artifact import export_policy, export_source, flat_step, source_record

__all__ = ["export_policy", "export_source", "flat_step", "source_record"]
