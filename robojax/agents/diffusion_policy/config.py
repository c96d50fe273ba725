"""Diffusion Policy configuration: the learner, inference (DDPM / DDIM / RTI warm start), and the training loop.

Three frozen dataclasses, validated on construction. Every field carries a `help` string, which
`experiments/train_diffusion_policy.py` and `experiments/eval_policy.py` turn into absl flags of
the same name. Defaults follow Chi et al. (To=2, Ta=8, Tp=16, 100 squaredcos_cap_v2 steps, AdamW
1e-4 / wd 1e-6 / betas (0.95, 0.999), cosine schedule with 500 warm-up steps, EMA power 0.75) and
RTI-DP's most common warm-start list [3, 1, 0].
"""

from __future__ import annotations

import dataclasses

from robojax.config_utils import (
    check_choice,
    check_dims,
    check_int,
    check_number,
    field,
    renamed,
)
from robojax.imitation.config import ChunkTrainConfig

OBJECTIVES = ("diffusion", "mse")
DENOISERS = ("unet", "mlp")
OBS_NORMALIZATIONS = ("mean_std", "min_max", "none")
INFERENCE_MODES = ("ddpm", "ddim", "rti")
SAMPLER_METHODS = ("ddpm", "ddim")
DISCRETE_HANDLING = ("auto", "clip", "scale", "none")


@renamed(num_steps="total_grad_steps")
@dataclasses.dataclass(frozen=True)
class DiffusionPolicyConfig:
    """The learner: denoiser, diffusion schedule, optimiser, EMA and normalisation."""

    objective: str = field(
        "diffusion",
        "diffusion: DDPM noise-prediction training (Chi et al.); mse: the"
        " behaviour-cloning baseline, same backbone, regressing the chunk directly.",
    )
    denoiser: str = field(
        "mlp",
        "Backbone: mlp (MLPDenoiser; the benchmarked CPU default) or unet (ConditionalUnet1D,"
        " FiLM; Chi et al.'s, see DiffusionPolicyConfig.chi_unet()).",
    )
    obs_horizon: int = field(2, "To: observations the policy conditions on.")
    action_horizon: int = field(8, "Ta: actions executed per plan before replanning.")
    pred_horizon: int = field(16, "Tp: actions predicted per chunk.")
    down_dims: tuple[int, ...] = field((64, 128, 256), "U-Net channel widths per level.")
    kernel_size: int = field(5, "U-Net temporal convolution kernel size.")
    n_groups: int = field(8, "U-Net GroupNorm groups.")
    diffusion_step_embed_dim: int = field(128, "Sinusoidal diffusion-step embedding width.")
    mlp_hidden_dims: tuple[int, ...] = field((1024, 1024, 1024), "MLP denoiser hidden widths.")
    num_train_timesteps: int = field(100, "K: diffusion steps of the training schedule.")
    beta_schedule: str = field("squaredcos_cap_v2", "Noise schedule: squaredcos_cap_v2 or linear.")
    prediction_type: str = field("epsilon", "Denoiser target: epsilon or sample.")
    clip_sample: bool = field(True, "Clip x0 estimates to [-1, 1] while sampling (actions are normalised there).")
    learning_rate: float = field(1e-3, "AdamW peak learning rate (Chi et al.: 1e-4, for their longer runs).")
    weight_decay: float = field(1e-6, "AdamW weight decay.")
    adam_b1: float = field(0.95, "AdamW beta1.")
    adam_b2: float = field(0.999, "AdamW beta2.")
    warmup_steps: int = field(500, "Linear learning-rate warm-up steps, then cosine decay to 0.")
    total_grad_steps: int = field(8_000, "Gradient steps of the run (length of the cosine schedule).")
    batch_size: int = field(256, "Windows per gradient step.")
    grad_clip_norm: float = field(0.0, "Clip gradients to this global norm (0: off).")
    ema_power: float = field(0.75, "EMA decay 1 - (1 + step)^-power (Chi et al.'s EMAModel, inv_gamma 1).")
    ema_max_decay: float = field(0.9999, "Upper bound of the EMA decay.")
    obs_normalization: str = field(
        "min_max",
        "Observation normalisation fitted on the dataset: min_max"
        " (per-dim range to [-1, 1], Chi et al.), mean_std, or none.",
    )
    discrete_action_scale: float = field(
        1.0,
        "Divide discrete (gripper) action dims by this in the model's"
        " space (RTI-DP-scale trains with 10); 1 leaves them at +-1.",
    )

    @classmethod
    def chi_unet(cls, **overrides) -> DiffusionPolicyConfig:
        """Chi et al.'s setting, for GPUs: U-Net (64, 128, 256), lr 1e-4, 20,000 steps (the defaults
        are the benchmarked CPU setting: MLP (1024, 1024, 1024), lr 1e-3, 8000 steps)."""
        return cls(
            **{
                "denoiser": "unet",
                "down_dims": (64, 128, 256),
                "learning_rate": 1e-4,
                "total_grad_steps": 20_000,
                **overrides,
            }
        )

    def __post_init__(self):
        check_choice(self, "objective", OBJECTIVES)
        check_choice(self, "denoiser", DENOISERS)
        check_choice(self, "beta_schedule", ("squaredcos_cap_v2", "linear"))
        check_choice(self, "prediction_type", ("epsilon", "sample"))
        check_choice(self, "obs_normalization", OBS_NORMALIZATIONS)
        for name in (
            "obs_horizon",
            "action_horizon",
            "pred_horizon",
            "kernel_size",
            "n_groups",
            "diffusion_step_embed_dim",
            "num_train_timesteps",
            "total_grad_steps",
            "batch_size",
        ):
            check_int(self, name)
        check_int(self, "warmup_steps", minimum=0)
        check_dims(self, "down_dims")
        check_dims(self, "mlp_hidden_dims")
        if self.action_horizon > self.pred_horizon:
            raise ValueError(
                f"DiffusionPolicyConfig.action_horizon ({self.action_horizon}) cannot exceed pred_horizon"
                f" ({self.pred_horizon}): the executed actions come from the predicted chunk"
            )
        if self.denoiser == "unet" and self.pred_horizon % (2 ** (len(self.down_dims) - 1)):
            raise ValueError(
                f"DiffusionPolicyConfig.pred_horizon ({self.pred_horizon}) must be divisible by"
                f" 2^(len(down_dims) - 1) = {2 ** (len(self.down_dims) - 1)}: the U-Net halves the time axis"
                " at every level but the last; use fewer down_dims or a longer horizon"
            )
        if self.denoiser == "unet" and any(d % self.n_groups for d in self.down_dims):
            raise ValueError(
                f"DiffusionPolicyConfig.down_dims {self.down_dims} must all be divisible by n_groups"
                f" ({self.n_groups}) for GroupNorm"
            )
        for name in ("learning_rate", "adam_b1", "adam_b2", "ema_power", "discrete_action_scale"):
            check_number(self, name)
        for name in ("weight_decay", "grad_clip_norm"):
            check_number(self, name, allow_zero=True)
        if not 0.0 <= self.ema_max_decay < 1.0:
            raise ValueError(f"DiffusionPolicyConfig.ema_max_decay must be in [0, 1), got {self.ema_max_decay}")


@dataclasses.dataclass(frozen=True)
class InferenceConfig:
    """How actions are produced at evaluation / deployment time."""

    inference: str = field(
        "ddim",
        "ddpm: full reverse chain (num_train_timesteps steps); ddim: --ddim_steps"
        " deterministic steps; rti: first chunk cold (--rti_first), then the previous chunk"
        " shifted and denoised from step --rti_start_step in --rti_steps steps.",
    )
    ddim_steps: int = field(10, "DDIM steps (ddim mode, and rti's first chunk when rti_first=ddim).")
    rti_first: str = field("ddim", "RTI's cold start for the first chunk: ddim (ddim_steps) or ddpm (all steps).")
    rti_start_step: int = field(
        20, "K': the diffusion step at which the shifted previous chunk enters (RTI-DP's lowdim list uses 3 with Ta=8)."
    )
    rti_steps: int = field(2, "Denoiser calls per warm-started chunk (RTI-DP's [3, 1, 0] is K'=3, 3 steps).")
    rti_method: str = field(
        "ddpm",
        "RTI update rule over the step list: ddpm (ancestral DDPM posterior step from"
        " each listed step to the next, with posterior noise, as RTI-DP's DDPM scheduler) or"
        " ddim (deterministic step to the next listed step).",
    )
    rti_discrete: str = field(
        "auto",
        "Discrete (gripper) dims of the warm-start guess: clip (binarise to"
        " +-1/rti_clip_factor, RTI-DP-clip), scale (leave the scaled values as trained,"
        " RTI-DP-scale), none, or auto (scale if trained with discrete_action_scale > 1,"
        " else clip).",
    )
    rti_clip_factor: float = field(1.0, "RTI-DP-clip binarises the guess's discrete dims to +-1/factor.")
    action_steps: int = field(0, "Actions executed per plan (0: the policy's action_horizon Ta; RTI wants 1).")

    def __post_init__(self):
        check_choice(self, "inference", INFERENCE_MODES)
        check_choice(self, "rti_first", SAMPLER_METHODS)
        check_choice(self, "rti_method", SAMPLER_METHODS)
        check_choice(self, "rti_discrete", DISCRETE_HANDLING)
        check_int(self, "ddim_steps")
        check_int(self, "rti_start_step", minimum=0)
        check_int(self, "rti_steps")
        check_int(self, "action_steps", minimum=0)
        check_number(self, "rti_clip_factor")
        if self.rti_steps > self.rti_start_step + 1:
            raise ValueError(
                f"InferenceConfig.rti_steps ({self.rti_steps}) cannot exceed rti_start_step + 1"
                f" ({self.rti_start_step + 1}): the step list runs from K'={self.rti_start_step} down to 0"
            )

    def check_against(self, policy: DiffusionPolicyConfig) -> None:
        """Raise if these settings cannot run with a policy trained with `policy`."""
        if self.ddim_steps > policy.num_train_timesteps:
            raise ValueError(
                f"ddim_steps ({self.ddim_steps}) exceeds the policy's num_train_timesteps ({policy.num_train_timesteps})"
            )
        if self.inference == "rti" and self.rti_start_step >= policy.num_train_timesteps:
            raise ValueError(
                f"rti_start_step ({self.rti_start_step}) must be below num_train_timesteps ({policy.num_train_timesteps})"
            )
        if self.action_steps > policy.pred_horizon:
            raise ValueError(
                f"action_steps ({self.action_steps}) cannot exceed the policy's pred_horizon ({policy.pred_horizon})"
            )

    def resolved_action_steps(self, policy: DiffusionPolicyConfig) -> int:
        return self.action_steps or policy.action_horizon

    def resolved_discrete(self, policy: DiffusionPolicyConfig) -> str:
        if self.rti_discrete != "auto":
            return self.rti_discrete
        return "scale" if policy.discrete_action_scale > 1.0 else "clip"


@renamed(eval_every="eval_interval", checkpoint_every="checkpoint_interval")
@dataclasses.dataclass(frozen=True)
class TrainConfig(ChunkTrainConfig):
    """The training loop (`robojax.imitation.config.ChunkTrainConfig`) and the learner's config."""

    policy: DiffusionPolicyConfig = dataclasses.field(default_factory=DiffusionPolicyConfig)
    inference: InferenceConfig = dataclasses.field(default_factory=InferenceConfig)
