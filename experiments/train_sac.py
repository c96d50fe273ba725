"""Train SAC on a robojax task with the on-device loop.

    python -m experiments.train_sac                                  # cartpole_balance, defaults
    python -m experiments.train_sac --env=pendulum_swingup --workdir=runs/sac_pendulum
    python -m experiments.train_sac --workdir=runs/sac_pendulum --env=pendulum_swingup --resume
    python -m experiments.train_sac --env=playground:CartpoleBalance  # any MuJoCo Playground env

A gymnasium id (any env that is neither a robojax task nor `playground:<Name>` but that `gymnasium.registry` has) runs the threaded
host actor/learner loop (`robojax.agents.sac.host_loop`) instead, optionally with a human in the loop:

    python -m experiments.train_sac --env=InvertedPendulum-v5 --target_eval_return=1000
    python -m experiments.train_sac --env=InvertedPendulum-v5 --intervention=keyboard

Every field of `TrainConfig` and `SACConfig` is a flag of the same name (layer widths as
comma-separated lists, e.g. `--critic_hidden_dims=128,128`); the host loop adds the fields of
`HostTrainConfig` that the on-device loop lacks. For a gymnasium id, flags left unset take the
host loop's defaults (`HostTrainConfig`, `config.HOST_SAC_DEFAULTS`), not the on-device ones.
The run directory receives checkpoints, `metrics.jsonl`, TensorBoard events, `learning_curve.png`
and the final `policy/`.
"""

from __future__ import annotations

import dataclasses
import typing

from absl import app, flags

from experiments import flags as config_flags
from robojax.agents.sac.config import HostTrainConfig, TrainConfig

# SAC's fields keep their plain names (--critic_hidden_dims); both loops share the flags of the
# fields they have in common, with the on-device loop's defaults.
_PREFIXES = {"sac": ""}
_TRAIN_NAMES = {f.name for f in dataclasses.fields(TrainConfig)}
_HOST_NAMES = {f.name for f in dataclasses.fields(HostTrainConfig)}
_DEVICE_ONLY = tuple(sorted(_TRAIN_NAMES - _HOST_NAMES))

_INTERVENTION = flags.DEFINE_enum(
    "intervention",
    "none",
    ["none", "keyboard", "spacemouse"],
    "Host loop (gymnasium ids) only: a human source whose actions replace the policy's and also go"
    " to the demo buffer. keyboard: keys a/d, s/w, j/l, k/i, u/o, n/m drive action dims 0..5 to -1/+1"
    " (stdin must be a terminal); spacemouse: needs the optional `pyspacemouse` package.",
)

_COMPILE_CACHE = config_flags.define_compile_cache_flag()

config_flags.define_config_flags(TrainConfig, prefixes=_PREFIXES)
config_flags.define_config_flags(HostTrainConfig, prefixes=_PREFIXES, skip=tuple(_TRAIN_NAMES & _HOST_NAMES))

FLAGS = flags.FLAGS


def _is_set(name: str) -> bool:
    return not FLAGS[name].using_default_value


def host_config_from_flags() -> HostTrainConfig:
    """The host loop's config: flags that were set, the host loop's own defaults for the rest."""
    env = FLAGS.env
    wrong = [name for name in _DEVICE_ONLY if _is_set(name)]
    if wrong:
        raise ValueError(
            f"--{', --'.join(wrong)} only apply to the on-device loop; {env!r} is a gymnasium id, which"
            " runs the host loop (one env, threaded actor and learner)"
        )
    overrides = {"env": env}
    if FLAGS.workdir is None:
        overrides["workdir"] = config_flags.default_workdir("sac", env)
    return config_flags.config_from_flags(HostTrainConfig, prefixes=_PREFIXES, overrides=overrides, only_set=True)


def config_from_flags() -> TrainConfig | HostTrainConfig:
    """Build the validated config from parsed flags; a run directory is made up when none is given.

    A robojax task name gives a `TrainConfig` (on-device loop); a gymnasium id a `HostTrainConfig`.
    """
    from robojax.envs import registry
    from robojax.envs.host import is_gym_id

    if not registry.is_known(FLAGS.env) and is_gym_id(FLAGS.env):
        return host_config_from_flags()
    if _INTERVENTION.value != "none":
        raise ValueError("--intervention needs the host loop: pass a gymnasium id as --env")
    # Unknown names (robojax tasks or playground:<Name>) raise with the valid list and close matches.
    registry.check_name(FLAGS.env)
    overrides = {}
    if FLAGS.workdir is None:
        overrides["workdir"] = config_flags.default_workdir("sac", FLAGS.env)
    return config_flags.config_from_flags(TrainConfig, prefixes=_PREFIXES, overrides=overrides)


def main(argv: typing.Sequence[str]) -> None:
    config = config_flags.start_experiment(argv, config_from_flags, _COMPILE_CACHE.value)
    if isinstance(config, HostTrainConfig):
        _run_host_loop(config)
        return
    from robojax.agents.sac.train import train

    result = config_flags.train_or_usage_error(train, config)
    print(
        f"final eval return {result.final_return:.1f} after {result.steps:,d} env steps"
        f" in {result.wall_s:.0f} s (first iteration incl. compile {result.first_iteration_s:.0f} s)\n"
        f"run directory: {result.workdir} (metrics.jsonl, tensorboard/, learning_curve.png, policy/, checkpoints/)"
    )


def _run_host_loop(config: HostTrainConfig) -> None:
    from robojax.agents.sac import host_loop
    from robojax.agents.sac.interventions import make_intervention
    from robojax.envs.host import make_gym_env

    try:
        probe = make_gym_env(config.env)
        action_dim = probe.action_spec.shape[0]
        probe.close()
        intervention = make_intervention(_INTERVENTION.value, action_dim)
    except (TypeError, ValueError, RuntimeError) as e:  # non-Box spaces, no TTY, no pyspacemouse
        raise app.UsageError(str(e)) from None
    if intervention is not None and hasattr(intervention, "describe"):
        print(f"intervention keys: {intervention.describe()}", flush=True)
    result = config_flags.train_or_usage_error(lambda c: host_loop.train(c, intervention=intervention), config)
    print(
        f"final eval return {result.final_return:.1f} after {result.steps:,d} env steps,"
        f" {result.updates:,d} updates, {result.interventions:,d} intervened steps, in {result.wall_s:.0f} s\n"
        f"run directory: {result.workdir} (metrics.jsonl, tensorboard/, learning_curve.png, policy/, checkpoints/)"
    )


if __name__ == "__main__":
    app.run(main)
