"""Noise schedules and samplers shared by Diffusion Policy and World4RL (DDPM / DDIM in jnp)."""

from robojax.diffusion.samplers import (
    SAMPLING_METHODS,
    ddim_step,
    ddim_timesteps,
    ddpm_posterior,
    ddpm_step,
    ddpm_timesteps,
    sample,
    validate_timesteps,
)
from robojax.diffusion.schedules import (
    BETA_SCHEDULES,
    PREDICTION_TYPES,
    NoiseSchedule,
    from_diffusers_config,
    load_scheduler_config,
    make_schedule,
    predict_epsilon,
    predict_x0,
    q_sample,
    save_scheduler_config,
    to_diffusers_config,
    training_target,
)

__all__ = [
    "BETA_SCHEDULES",
    "PREDICTION_TYPES",
    "SAMPLING_METHODS",
    "NoiseSchedule",
    "ddim_step",
    "ddim_timesteps",
    "ddpm_posterior",
    "ddpm_step",
    "ddpm_timesteps",
    "from_diffusers_config",
    "load_scheduler_config",
    "make_schedule",
    "predict_epsilon",
    "predict_x0",
    "q_sample",
    "sample",
    "save_scheduler_config",
    "to_diffusers_config",
    "training_target",
    "validate_timesteps",
]
