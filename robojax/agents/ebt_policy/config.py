"""EBT-Policy configuration: the energy model and its training unroll, and energy-descent inference.

Frozen dataclasses, validated on construction; every field's `help` becomes an absl flag of the
same name in the experiments. `EBTPolicyConfig()` is the authors' EBT-Policy recipe (their
released robomimic code, `shared/research/next_learners.md` §1) with widths and depths scaled to
this CPU; `EBTPolicyConfig.authors()` restores their widths; `.s1()` and `.s2()` are EBT's two
training recipes (Gladstone et al.: S1 stops the gradient between descent steps and learns the
step size; S2 keeps the graph, back-propagates through the last step only, and trains on the last
step's loss), with step sizes scaled to our mean-over-chunk energy.
"""

from __future__ import annotations

import dataclasses

from robojax.config_utils import check_choice, check_int, check_number, field
from robojax.imitation.config import ChunkTrainConfig

GRADIENT_MODES = ("full", "stop_between", "last_step")
LOSS_STEPS = ("all", "last")
OBS_NORMALIZATIONS = ("mean_std", "min_max", "none")


@dataclasses.dataclass(frozen=True)
class EBTPolicyConfig:
    """The energy model E(o_{t-To+1..t}, a_{t..t+Tp-1}) -> scalar, its unrolled-descent training and optimiser."""

    obs_horizon: int = field(2, "To: observation frames the energy conditions on.")
    action_horizon: int = field(8, "Ta: actions executed per plan before replanning.")
    pred_horizon: int = field(16, "Tp: actions per chunk (one token each).")
    width: int = field(64, "Token width of both transformers (the authors': 256).")
    obs_layers: int = field(2, "Causal transformer blocks over observation tokens (the authors': 8).")
    action_layers: int = field(
        2, "Action blocks: self-attention, cross-attention to observations, MLP (the authors': 8)."
    )
    num_heads: int = field(4, "Attention heads (width must divide by it).")
    mlp_ratio: float = field(4.0, "Hidden width of each block's MLP, as a multiple of width.")
    qk_norm: bool = field(
        True, "RMS-normalise queries and keys per head (bounded logits under second-order gradients)."
    )
    attention_dropout: float = field(0.0, "Dropout on attention weights in training (the authors': 0.3).")
    train_steps_min: int = field(6, "Fewest energy-descent steps of a training unroll (drawn per batch).")
    train_steps_max: int = field(10, "Most energy-descent steps of a training unroll (the scan's static length).")
    step_size: float = field(
        1000.0,
        "alpha: the descent step multiplies grad_a E by alpha * exp(E) / temperature (large because E is a"
        " mean over Tp x action_dim, so each element's gradient is ~1/(Tp*A)).",
    )
    step_size_scale: float = field(1.5, "s: training multiplies alpha by U(1/s, s) per sample (1: off).")
    learnable_step_size: bool = field(False, "Learn log(alpha) with the network (EBT's S1).")
    step_size_lr_multiplier: float = field(3.0, "Learning-rate multiple for log(alpha) when it is learned.")
    temperature: float = field(1.0, "Divides the step size.")
    energy_factor_max: float = field(
        10.0, "exp(E) in the step size is clamped to [1/max, max] so an early, large energy cannot blow a step up."
    )
    momentum: float = field(0.9, "mu of the Nesterov look-ahead (0: plain gradient descent).")
    langevin_noise_start: float = field(0.2, "Std of the Langevin noise at the first training step (cosine-annealed).")
    langevin_noise_end: float = field(0.002, "Std of the Langevin noise at the last training step.")
    rms_normalize: bool = field(True, "RMS-normalise each sample's chunk before every descent step (per sample).")
    gradient: str = field(
        "full",
        "full: back-propagate through every step (second order); stop_between: stop the gradient"
        " between steps (EBT's S1); last_step: through the last executed step only (truncation, EBT's S2).",
    )
    loss_steps: str = field(
        "all", "all: the mean over executed steps of MSE to the expert chunk; last: the last step's."
    )
    train_samples: int = field(
        1,
        "M initial chunks descended per window in training; the loss keeps each window's best one"
        " (winner-takes-all, so different starts can settle on different modes; 1: the authors' recipe).",
    )
    contrastive_weight: float = field(
        0.0,
        "Weight of a contrastive term softplus(E(expert) - E(descended)) that puts energy minima at the"
        " demonstrations (EBT's optional NLP term; 0: the authors' EBT-Policy, MSE only, which averages modes).",
    )
    learning_rate: float = field(1e-3, "AdamW peak learning rate (the authors': 1e-4, for their longer runs).")
    weight_decay: float = field(1e-6, "AdamW weight decay.")
    warmup_steps: int = field(500, "Linear learning-rate warm-up, then cosine decay to 0.")
    total_grad_steps: int = field(8_000, "Gradient steps of the run (length of the cosine schedule).")
    batch_size: int = field(64, "Windows per gradient step (the authors': 64).")
    grad_clip_norm: float = field(1.0, "Clip gradients to this global norm (0: off).")
    ema_power: float = field(0.75, "EMA decay 1 - (1 + step)^-power.")
    ema_max_decay: float = field(0.9999, "Upper bound of the EMA decay.")
    obs_normalization: str = field(
        "min_max", "Observation normalisation fitted on the dataset: min_max (to [-1, 1]), mean_std, or none."
    )

    @classmethod
    def authors(cls, **overrides) -> EBTPolicyConfig:
        """The released EBT-Policy's sizes and optimiser: width 256, 8 + 8 layers, lr 1e-4, dropout 0.3."""
        base = dict(width=256, obs_layers=8, action_layers=8, attention_dropout=0.3, learning_rate=1e-4)
        return cls(**{**base, **overrides})

    @classmethod
    def s1(cls, **overrides) -> EBTPolicyConfig:
        """EBT's S1 (stable): gradient stopped between steps, loss at every step, learned alpha, 2 steps, no noise."""
        base = dict(
            gradient="stop_between",
            loss_steps="all",
            learnable_step_size=True,
            train_steps_min=2,
            train_steps_max=2,
            langevin_noise_start=0.0,
            langevin_noise_end=0.0,
        )
        return cls(**{**base, **overrides})

    @classmethod
    def s2(cls, **overrides) -> EBTPolicyConfig:
        """EBT's S2: the graph kept, gradient through the last step, its loss only, alpha x/÷ 2, 2-3 steps, noise."""
        base = dict(
            gradient="last_step",
            loss_steps="last",
            learnable_step_size=False,
            step_size_scale=2.0,
            train_steps_min=2,
            train_steps_max=3,
        )
        return cls(**{**base, **overrides})

    def __post_init__(self):
        check_choice(self, "gradient", GRADIENT_MODES)
        check_choice(self, "loss_steps", LOSS_STEPS)
        check_choice(self, "obs_normalization", OBS_NORMALIZATIONS)
        check_int(
            self,
            "obs_horizon",
            "action_horizon",
            "pred_horizon",
            "width",
            "obs_layers",
            "action_layers",
            "num_heads",
            "train_steps_min",
            "train_steps_max",
            "train_samples",
            "total_grad_steps",
            "batch_size",
        )
        check_int(self, "warmup_steps", minimum=0)
        for name in ("mlp_ratio", "step_size", "step_size_scale", "temperature", "energy_factor_max"):
            check_number(self, name)
        for name in ("step_size_lr_multiplier", "learning_rate", "ema_power"):
            check_number(self, name)
        for name in (
            "contrastive_weight",
            "momentum",
            "langevin_noise_start",
            "langevin_noise_end",
            "weight_decay",
            "grad_clip_norm",
        ):
            check_number(self, name, allow_zero=True)
        check_number(self, "attention_dropout", allow_zero=True)
        if self.width % self.num_heads:
            raise ValueError(
                f"EBTPolicyConfig.width ({self.width}) must divide into num_heads ({self.num_heads}) equal heads;"
                " pick a width that is a multiple of num_heads"
            )
        if self.width % 2:
            raise ValueError(f"EBTPolicyConfig.width must be even (sin-cos embedding), got {self.width}")
        if self.action_horizon > self.pred_horizon:
            raise ValueError(
                f"EBTPolicyConfig.action_horizon ({self.action_horizon}) cannot exceed pred_horizon"
                f" ({self.pred_horizon}): the executed actions come from the predicted chunk"
            )
        if self.train_steps_min > self.train_steps_max:
            raise ValueError(
                f"EBTPolicyConfig.train_steps_min ({self.train_steps_min}) exceeds train_steps_max"
                f" ({self.train_steps_max}); set min <= max"
            )
        if self.step_size_scale < 1.0:
            raise ValueError(f"EBTPolicyConfig.step_size_scale must be >= 1 (U(1/s, s)), got {self.step_size_scale}")
        if self.momentum >= 1.0:
            raise ValueError(f"EBTPolicyConfig.momentum must be in [0, 1), got {self.momentum}")
        if self.attention_dropout >= 1.0:
            raise ValueError(f"EBTPolicyConfig.attention_dropout must be in [0, 1), got {self.attention_dropout}")
        if self.energy_factor_max < 1.0:
            raise ValueError(f"EBTPolicyConfig.energy_factor_max must be >= 1, got {self.energy_factor_max}")
        if not 0.0 <= self.ema_max_decay < 1.0:
            raise ValueError(f"EBTPolicyConfig.ema_max_decay must be in [0, 1), got {self.ema_max_decay}")


@dataclasses.dataclass(frozen=True)
class InferenceConfig:
    """Energy-descent inference: fixed or adaptive step count, best-of-N, receding horizon."""

    inference_steps: int = field(2, "K: descent steps per plan when not adaptive (the authors': 2).")
    adaptive: bool = field(False, "Descend while ||grad_a E|| > grad_tol, up to max_steps (one step at least).")
    grad_tol: float = field(1e-3, "Adaptive stop: a sample stops once its ||grad_a E|| falls to this.")
    max_steps: int = field(8, "K_max: the most steps of an adaptive descent (the static scan length).")
    num_samples: int = field(1, "N: initial chunks descended in parallel; the lowest-energy one is kept (best-of-N).")
    langevin_noise: float = field(0.0, "Std of Langevin noise added at each inference step (0: deterministic).")
    action_steps: int = field(0, "Actions executed per plan (0: the policy's action_horizon Ta).")
    warm_start: bool = field(
        False, "Start later plans from the previous chunk shifted by the executed actions instead of from noise."
    )
    warm_steps: int = field(0, "Descent steps of a warm-started plan when not adaptive (0: inference_steps).")
    escalate: bool = field(
        False, "Adaptive compute: when a plan's energy exceeds energy_threshold, plan again with more compute."
    )
    energy_threshold: float = field(
        0.0, "Plan energy above which the policy escalates (calibrate on held-out demo windows)."
    )
    escalate_steps: int = field(8, "Descent steps of the escalated plan (the cap on extra steps).")
    escalate_samples: int = field(8, "Initial chunks of the escalated plan (best-of-N; the cap on extra samples).")

    def __post_init__(self):
        check_int(self, "inference_steps", "max_steps", "num_samples", "escalate_steps", "escalate_samples")
        check_int(self, "action_steps", "warm_steps", minimum=0)
        check_number(self, "grad_tol", allow_zero=True)
        check_number(self, "langevin_noise", allow_zero=True)
        if not isinstance(self.energy_threshold, (int, float)) or self.energy_threshold != self.energy_threshold:
            raise ValueError(f"InferenceConfig.energy_threshold must be a number, got {self.energy_threshold!r}")

    def check_against(self, policy: EBTPolicyConfig) -> None:
        """Raise if these settings cannot run with a policy trained with `policy`."""
        if self.action_steps > policy.pred_horizon:
            raise ValueError(
                f"action_steps ({self.action_steps}) cannot exceed the policy's pred_horizon ({policy.pred_horizon})"
            )

    def resolved_action_steps(self, policy: EBTPolicyConfig) -> int:
        return self.action_steps or policy.action_horizon

    def descent_length(self) -> int:
        """The static number of descent iterations: max_steps when adaptive, else inference_steps."""
        return self.max_steps if self.adaptive else self.inference_steps

    def warm(self) -> InferenceConfig:
        """The settings of a warm-started plan (warm_steps replaces inference_steps when set)."""
        return dataclasses.replace(self, inference_steps=self.warm_steps or self.inference_steps)

    def escalated(self) -> InferenceConfig:
        """The settings of an escalated plan: a cold, fixed-length best-of-N descent."""
        return dataclasses.replace(
            self,
            inference_steps=self.escalate_steps,
            num_samples=self.escalate_samples,
            adaptive=False,
            warm_start=False,
            escalate=False,
        )


@dataclasses.dataclass(frozen=True)
class TrainConfig(ChunkTrainConfig):
    """The training loop (`robojax.imitation.config.ChunkTrainConfig`) and the learner's config."""

    policy: EBTPolicyConfig = dataclasses.field(default_factory=EBTPolicyConfig)
    inference: InferenceConfig = dataclasses.field(default_factory=InferenceConfig)
