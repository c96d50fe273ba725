"""PPO configuration: every hyperparameter of the learner and of a training run, in one frozen dataclass.

Validated on construction. Every field carries a `help` string in its metadata, which an
experiment turns into an absl flag of the same name (`robojax.config_utils.define_flags`).

Action handling (`action_mode`): the policy is a Gaussian over an unbounded pre-action u, and the
env receives u mapped onto its bounds [low, high] through [-1, 1]:
  "clip": a = clip(u, -1, 1), rescaled. Log-probabilities are those of the unclipped u (the usual
          PPO choice, e.g. purejaxrl / CleanRL); the deterministic action is clip(mean).
  "tanh": a = tanh(u), rescaled. The ratio pi_new(u)/pi_old(u) is unchanged by the squash (its
          Jacobian cancels), so losses use the Gaussian of u; the deterministic action is tanh(mean)
          (Brax's choice).
"""

from __future__ import annotations

import dataclasses
import math

from robojax.config_utils import (
    check_choice,
    check_dims,
    check_non_negative_int,
    check_number,
    check_positive_int,
    field,
)
from robojax.nets.mlp import ACTIVATIONS

LOG_STD_MODES = ("state_independent", "network")
ACTION_MODES = ("clip", "tanh")


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """Hyperparameters of PPO (Schulman et al. 2017) and of a run: budget, evaluation, seeds, BC init.

    Defaults aim at solving cartpole_balance on a 2-core CPU in minutes: with the env built with
    action_repeat=4 (episodes of 250 control steps) they reached eval 980 after 164k control steps,
    82 s including about 75 s of compilation; at the task's native 100 Hz they plateaued near 600.
    """

    # ----------------------------------------------------------------------------- rollout and batch
    num_envs: int = field(256, "Vectorised training envs stepped together.")
    unroll_length: int = field(32, "Env steps per env in one rollout (one iteration collects num_envs x this).")
    num_minibatches: int = field(16, "Minibatches the rollout is split into, per update epoch.")
    update_epochs: int = field(8, "Passes over the rollout per iteration.")
    # ----------------------------------------------------------------------------- returns and losses
    discount: float = field(0.99, "Discount factor gamma.")
    gae_lambda: float = field(0.95, "GAE(lambda) trace parameter.")
    clip_eps: float = field(0.2, "Clipping range of the probability ratio in the surrogate objective.")
    value_clip_eps: float | None = field(None, "Clip value updates to +-this around the rollout's values (None: off).")
    entropy_coef: float = field(1e-3, "Weight of the entropy bonus.")
    vf_coef: float = field(0.5, "Weight of the value loss.")
    normalize_advantages: bool = field(True, "Normalise advantages to zero mean, unit std per minibatch.")
    # ----------------------------------------------------------------------------- optimiser
    learning_rate: float = field(1e-3, "Adam learning rate (policy and value share one optimiser).")
    anneal_lr: bool = field(True, "Anneal the learning rate linearly to 0 over the run.")
    max_grad_norm: float = field(0.5, "Clip the gradient's global norm to this.")
    # ----------------------------------------------------------------------------- inputs and outputs
    # Cartpole's reward is up to 1 per step: scaled by 0.1 the values stay of order 10 at
    # gamma 0.99, so the value loss does not swamp the policy's share of the clipped gradient norm.
    reward_scaling: float = field(0.1, "Multiply rewards by this before computing returns.")
    normalize_observations: bool = field(True, "Normalise observations with running statistics.")
    policy_hidden_dims: tuple[int, ...] = field((64, 64), "Policy MLP hidden layer widths.")
    value_hidden_dims: tuple[int, ...] = field((64, 64), "Value MLP hidden layer widths.")
    activation: str = field("tanh", f"Hidden activation: one of {sorted(ACTIVATIONS)}.")
    log_std_mode: str = field("state_independent", f"Log-std: one of {list(LOG_STD_MODES)}.")
    init_log_std: float = field(0.0, "Initial log standard deviation of the policy.")
    min_log_std: float = field(-5.0, "Lower clip of the policy's log standard deviation.")
    max_log_std: float = field(2.0, "Upper clip of the log standard deviation (World4RL: 0, i.e. sigma <= 1).")
    action_mode: str = field("clip", f"How u ~ N maps onto the action bounds: one of {list(ACTION_MODES)}.")
    # ----------------------------------------------------------------------------- run
    total_env_steps: int = field(1_000_000, "Env transitions to collect per seed (summed over all envs).")
    eval_interval: int = field(81_920, "Env transitions (per seed) between evaluations.")
    eval_episodes: int = field(8, "Episodes per evaluation, run as a batch of envs with the deterministic policy.")
    seed: int = field(0, "Seed of every random stream in the run (with num_seeds > 1: of the first seed).")
    num_seeds: int = field(
        1, "Independent seeds seed, seed + 1, ... trained together in one compiled program (vmapped)."
    )
    # ----------------------------------------------------------------------------- demonstrations
    bc_demo_path: str | None = field(None, "An episode dataset to behaviour-clone the policy from before PPO.")
    bc_steps: int = field(0, "Gradient steps of behaviour cloning (Gaussian NLL) before PPO.")
    bc_batch_size: int = field(256, "Demo transitions per behaviour-cloning step.")
    bc_learning_rate: float = field(1e-3, "Adam learning rate of behaviour cloning.")
    value_warmup_iterations: int = field(0, "First iterations update the value only (keep a BC'd policy).")

    def __post_init__(self):
        check_positive_int(
            self,
            "num_envs",
            "unroll_length",
            "num_minibatches",
            "update_epochs",
            "total_env_steps",
            "eval_interval",
            "eval_episodes",
            "num_seeds",
            "bc_batch_size",
        )
        check_non_negative_int(self, "seed", "bc_steps", "value_warmup_iterations")
        if self.batch_size % self.num_minibatches:
            raise ValueError(
                f"PPOConfig.num_minibatches ({self.num_minibatches}) must divide the rollout's"
                f" num_envs x unroll_length = {self.batch_size} transitions"
            )
        if self.total_env_steps < self.batch_size:
            raise ValueError(
                f"PPOConfig.total_env_steps ({self.total_env_steps}) is less than one iteration's"
                f" num_envs x unroll_length = {self.batch_size}"
            )
        for name in ("discount", "gae_lambda"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"PPOConfig.{name} must be in [0, 1], got {value!r}")
        check_number(self, "clip_eps", "learning_rate", "max_grad_norm", "reward_scaling", "bc_learning_rate")
        check_number(self, "entropy_coef", "vf_coef", allow_zero=True)
        if self.value_clip_eps is not None:
            check_number(self, "value_clip_eps", expected="a finite number > 0 or None")
        check_dims(self, "policy_hidden_dims", "layer widths")
        check_dims(self, "value_hidden_dims", "layer widths")
        check_choice(self, "activation", sorted(ACTIVATIONS))
        check_choice(self, "log_std_mode", LOG_STD_MODES)
        check_choice(self, "action_mode", ACTION_MODES)
        for name in ("init_log_std", "min_log_std", "max_log_std"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"PPOConfig.{name} must be a finite number, got {value!r}")
        if not self.min_log_std <= self.init_log_std <= self.max_log_std:
            raise ValueError(
                f"PPOConfig.init_log_std ({self.init_log_std}) must lie in [min_log_std, max_log_std]"
                f" = [{self.min_log_std}, {self.max_log_std}]"
            )
        if self.value_warmup_iterations >= self.num_iterations:
            raise ValueError(
                f"PPOConfig.value_warmup_iterations ({self.value_warmup_iterations}) leaves no policy"
                f" updates in a run of {self.num_iterations} iterations; raise total_env_steps or lower it"
            )

    @property
    def batch_size(self) -> int:
        """Transitions per iteration (num_envs x unroll_length)."""
        return self.num_envs * self.unroll_length

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    @property
    def num_iterations(self) -> int:
        """Iterations in the run: total_env_steps rounded down to whole rollouts."""
        return self.total_env_steps // self.batch_size

    @property
    def iterations_per_eval(self) -> int:
        """Iterations between evaluations (at least one)."""
        return max(1, self.eval_interval // self.batch_size)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A PPO training run (`robojax.agents.ppo.train`): task, action repeat, checkpoints, run directory, PPO.

    Budget, evaluation schedule and seeds are `PPOConfig` fields (`make_train` reads them there);
    env steps count the control steps of ONE seed's run (num_seeds runs each collect
    `ppo.total_env_steps`).
    """

    env: str = field("cartpole_balance", "Task name (see envs.names()) or playground:<Name>.")
    # The env is built with episode_length = ceil(task episode length / action_repeat), so an episode
    # covers the task's simulated time and returns stay comparable with SAC's (which uses k = 1).
    action_repeat: int = field(4, "Repeat each policy action this many task control steps (rewards summed).")
    target_eval_return: float | None = field(
        None, "Stop once every seed's eval return has reached this (at some evaluation)."
    )
    checkpoint_interval: int = field(
        200_000, "Env steps (per seed) between checkpoints, taken at the next evaluation; also one at the end."
    )
    checkpoints_to_keep: int = field(2, "Most recent checkpoints kept on disk.")
    workdir: str | None = field(None, "Run directory for checkpoints, logs, plot and policy (None: no files).")
    resume: bool = field(False, "Continue from the latest checkpoint in workdir.")
    progress_bar: bool = field(True, "Show a progress bar when stderr is a terminal.")
    ppo: PPOConfig = dataclasses.field(default_factory=PPOConfig)

    def __post_init__(self):
        if not isinstance(self.env, str) or not self.env:
            raise ValueError(f"TrainConfig.env must be a task name, got {self.env!r}")
        check_positive_int(self, "action_repeat", "checkpoint_interval", "checkpoints_to_keep")
        if self.target_eval_return is not None:
            value = self.target_eval_return
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"TrainConfig.target_eval_return must be a finite number or None, got {value!r}")
        if self.resume and not self.workdir:
            raise ValueError("TrainConfig.resume needs a workdir to resume from")
        if not isinstance(self.ppo, PPOConfig):
            raise TypeError(f"TrainConfig.ppo must be a PPOConfig, got {type(self.ppo).__name__}")
        if self.ppo.bc_steps and not self.ppo.bc_demo_path:
            raise ValueError(
                f"PPOConfig.bc_steps ({self.ppo.bc_steps}) needs bc_demo_path: a demo .npz or an episode"
                " dataset directory to behaviour-clone from"
            )
        if self.ppo.bc_demo_path and not self.ppo.bc_steps:
            raise ValueError(
                f"PPOConfig.bc_demo_path ({self.ppo.bc_demo_path!r}) is set but bc_steps is 0, so the demos"
                " would be ignored; give bc_steps > 0 (e.g. 2000) or drop bc_demo_path"
            )
