"""Running exported policies on robots: artifact loading and a fixed-rate controller runtime.

    import robojax.deploy
    policy = robojax.deploy.load("artifacts/sac_arm_reach")
    policy.reset()
    action = policy(obs)               # numpy in, numpy out; carries recurrent state / chunks / RNG

Importing this package and loading an artifact pulls in numpy and jax only: no flax, optax, orbax
or learner code (tests/deploy/test_imports.py checks). The controller (`robojax.deploy.controller`,
also reachable as `robojax.deploy.Controller`) is imported on first use.
"""

from robojax.deploy.artifact import (
    FORMAT,
    ArtifactError,
    DeployedPolicy,
    PolicyOutputError,
    Spec,
    load,
    read_sidecar,
    sha256_tree,
)

_CONTROLLER_NAMES = ("Controller", "ControllerConfig", "ControllerReport", "ControllerSetupError", "LatencyStats")

__all__ = [
    "FORMAT",
    "ArtifactError",
    "DeployedPolicy",
    "PolicyOutputError",
    "Spec",
    "load",
    "read_sidecar",
    "sha256_tree",
    *_CONTROLLER_NAMES,
]


def __getattr__(name):
    if name in _CONTROLLER_NAMES:
        from robojax.deploy import controller

        return getattr(controller, name)
    raise AttributeError(f"module 'robojax.deploy' has no attribute {name!r}")
