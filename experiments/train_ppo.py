"""Train PPO on a robojax task, all seeds in one compiled program.

    python -m experiments.train_ppo --env=cartpole_balance --workdir=runs/ppo_cartpole
    python -m experiments.train_ppo --env=cartpole_balance --workdir=runs/ppo_cartpole --resume
    python -m experiments.train_ppo --env=cartpole_swingup --num_seeds=3 --target_eval_return=800
    python -m experiments.train_ppo --env=playground:CartpoleBalance --action_repeat=1

Every field of `TrainConfig` and `PPOConfig` is a flag of the same name (PPO's fields unprefixed,
layer widths as comma-separated lists, e.g. `--policy_hidden_dims=128,128`). The env is built with
`--action_repeat` (default 4) and episodes of ceil(task length / action_repeat) policy steps, so an
episode covers the task's simulated time. Env steps (budget, intervals, logs) are those of one
seed. The run directory receives checkpoints/, metrics.jsonl, TensorBoard events,
learning_curve.png and policy/ (every seed's; `experiments.export_policy --seed_index=i` picks one).
"""

from __future__ import annotations

import typing

from absl import app, flags

from experiments import flags as config_flags
from robojax.agents.ppo.config import TrainConfig

# PPO's fields keep their plain names (--num_envs, --learning_rate).
_PREFIXES = {"ppo": ""}

_COMPILE_CACHE = config_flags.define_compile_cache_flag()
config_flags.define_config_flags(TrainConfig, prefixes=_PREFIXES)

FLAGS = flags.FLAGS


def config_from_flags() -> TrainConfig:
    """The validated config from parsed flags; a run directory is made up when none is given."""
    from robojax.envs import registry

    # Unknown names (robojax tasks or playground:<Name>) raise with the valid list and close matches.
    registry.check_name(FLAGS.env)
    overrides = {}
    if FLAGS.workdir is None:
        overrides["workdir"] = config_flags.default_workdir("ppo", FLAGS.env)
    return config_flags.config_from_flags(TrainConfig, prefixes=_PREFIXES, overrides=overrides)


def main(argv: typing.Sequence[str]) -> None:
    config = config_flags.start_experiment(argv, config_from_flags, _COMPILE_CACHE.value)
    from robojax.agents.ppo.train import train

    result = config_flags.train_or_usage_error(train, config)
    per_seed = ", ".join(f"seed {s}: {r:.1f}" for s, r in zip(result.seeds, result.final_returns))
    seeds = f"mean of {len(result.seeds)} seeds; {per_seed}" if len(result.seeds) > 1 else f"seed {result.seeds[0]}"
    success = f", success {result.final_success:.2f}" if result.final_success is not None else ""
    print(
        f"final eval return {result.final_return:.1f} ({seeds}){success}"
        f" after {result.steps:,d} env steps per seed in {result.wall_s:.0f} s"
        f" (first call incl. compile {result.first_iteration_s:.0f} s)\n"
        f"run directory: {result.workdir} (metrics.jsonl, tensorboard/, learning_curve.png, policy/, checkpoints/)"
    )


if __name__ == "__main__":
    app.run(main)
