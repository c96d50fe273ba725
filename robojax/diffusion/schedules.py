"""DDPM noise schedules as a pytree, the forward process, and diffusers `scheduler_config.json` I/O.

Notation follows Ho et al. 2020 (DDPM): beta_t, alpha_t = 1 - beta_t, alpha_bar_t = prod_{s<=t} alpha_s,
with t in 0 .. T-1 (diffusers' zero-based indexing: t = 0 is the least noisy step).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

BETA_SCHEDULES = ("squaredcos_cap_v2", "linear", "scaled_linear")
PREDICTION_TYPES = ("epsilon", "sample")
# Scheduler classes whose config we read: all share the DDPM forward process defined here.
DIFFUSERS_CLASS_NAMES = ("DDPMScheduler", "DDIMScheduler", "FlaxDDPMScheduler", "FlaxDDIMScheduler")
# The config format written here is the one diffusers 0.39 (the last release with Flax schedulers) reads.
DIFFUSERS_CONFIG_VERSION = "0.39.0"
SCHEDULER_CONFIG_NAME = "scheduler_config.json"

# Config keys that only matter at one value for the samplers in robojax.diffusion.samplers:
# key -> (the supported value, what that value means).
_FIXED_KEYS: dict[str, tuple[Any, str]] = {
    "variance_type": ("fixed_small", "DDPM posterior variance beta~_t, DDPM Eq. 7"),
    "set_alpha_to_one": (True, "DDIM's final step goes to alpha_bar = 1"),
    "steps_offset": (0, "no offset on inference timesteps"),
    "timestep_spacing": ("leading", "DDIM timesteps arange(k) * (T // k)"),
    "thresholding": (False, "no dynamic thresholding"),
    "rescale_betas_zero_snr": (False, "betas not rescaled to zero terminal SNR"),
    "trained_betas": (None, "betas computed from beta_schedule"),
}
# Keys diffusers writes that carry no meaning for us once thresholding is off.
_IGNORED_KEYS = ("dynamic_thresholding_ratio", "sample_max_value", "dtype")


@struct.dataclass
class NoiseSchedule:
    """A DDPM noise schedule: arrays of shape [T] plus static sampler settings."""

    betas: jax.Array
    alphas: jax.Array
    alphas_cumprod: jax.Array
    num_train_timesteps: int = struct.field(pytree_node=False)
    beta_schedule: str = struct.field(pytree_node=False)
    beta_start: float = struct.field(pytree_node=False)
    beta_end: float = struct.field(pytree_node=False)
    prediction_type: str = struct.field(pytree_node=False)
    clip_sample: bool = struct.field(pytree_node=False)
    clip_sample_range: float = struct.field(pytree_node=False)


def _choice_error(field: str, value: Any, supported: tuple) -> ValueError:
    return ValueError(f"unsupported {field}={value!r}; supported values: {', '.join(map(repr, supported))}")


def _squaredcos_cap_v2_betas(num_train_timesteps: int, max_beta: float = 0.999) -> np.ndarray:
    """iDDPM (Nichol & Dhariwal 2021) Eq. 17: alpha_bar(t) = cos^2((t/T + s)/(1 + s) pi/2), s = 0.008; capped betas."""

    def alpha_bar(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    T = num_train_timesteps
    return np.array([min(1.0 - alpha_bar((i + 1) / T) / alpha_bar(i / T), max_beta) for i in range(T)])


def make_schedule(
    num_train_timesteps: int = 100,
    beta_schedule: str = "squaredcos_cap_v2",
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    prediction_type: str = "epsilon",
    clip_sample: bool = True,
    clip_sample_range: float = 1.0,
) -> NoiseSchedule:
    """Build a schedule with diffusers' definitions (Diffusion Policy defaults: 100 steps, squared cosine)."""
    if not isinstance(num_train_timesteps, (int, np.integer)) or num_train_timesteps < 1:
        raise ValueError(f"num_train_timesteps must be a positive int, got {num_train_timesteps!r}")
    if beta_schedule not in BETA_SCHEDULES:
        raise _choice_error("beta_schedule", beta_schedule, BETA_SCHEDULES)
    if prediction_type not in PREDICTION_TYPES:
        raise _choice_error("prediction_type", prediction_type, PREDICTION_TYPES)
    if not clip_sample_range > 0:
        raise ValueError(f"clip_sample_range must be > 0, got {clip_sample_range!r}")
    T = int(num_train_timesteps)
    if beta_schedule == "linear":  # DDPM Sec. 4: linear from beta_1 to beta_T
        betas = np.linspace(beta_start, beta_end, T, dtype=np.float64)
    elif beta_schedule == "scaled_linear":  # linear in sqrt(beta) (latent diffusion)
        betas = np.linspace(beta_start**0.5, beta_end**0.5, T, dtype=np.float64) ** 2
    else:
        betas = _squaredcos_cap_v2_betas(T)
    if not (np.all(betas > 0) and np.all(betas < 1)):
        raise ValueError(f"betas must lie in (0, 1); got beta_start={beta_start}, beta_end={beta_end}")
    alphas = 1.0 - betas
    alphas_cumprod = np.cumprod(alphas)
    return NoiseSchedule(
        betas=jnp.asarray(betas, jnp.float32),
        alphas=jnp.asarray(alphas, jnp.float32),
        alphas_cumprod=jnp.asarray(alphas_cumprod, jnp.float32),
        num_train_timesteps=T,
        beta_schedule=beta_schedule,
        beta_start=float(beta_start),
        beta_end=float(beta_end),
        prediction_type=prediction_type,
        clip_sample=bool(clip_sample),
        clip_sample_range=float(clip_sample_range),
    )


def _per_example(values: jax.Array, t: jax.Array, ndim: int) -> jax.Array:
    """values[t] with trailing singleton axes so it broadcasts against an array of rank ndim."""
    v = values[jnp.asarray(t)]
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def q_sample(schedule: NoiseSchedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """Forward process x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise (DDPM Eq. 4)."""
    abar = _per_example(schedule.alphas_cumprod, t, x0.ndim)
    return jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * noise


def training_target(schedule: NoiseSchedule, x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
    """Regression target of the denoiser: the noise (DDPM Eq. 14, L_simple) or x0 for sample prediction."""
    del t  # both supported targets are independent of t
    return noise if schedule.prediction_type == "epsilon" else x0


def predict_x0(schedule: NoiseSchedule, model_output: jax.Array, x_t: jax.Array, t: jax.Array) -> jax.Array:
    """Unclipped x0 estimate: (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t) (DDPM Eq. 15)."""
    if schedule.prediction_type == "sample":
        return model_output
    abar = _per_example(schedule.alphas_cumprod, t, x_t.ndim)
    return (x_t - jnp.sqrt(1.0 - abar) * model_output) / jnp.sqrt(abar)


def predict_epsilon(schedule: NoiseSchedule, model_output: jax.Array, x_t: jax.Array, t: jax.Array) -> jax.Array:
    """Noise estimate from the model output (inverse of DDPM Eq. 4 for sample prediction)."""
    if schedule.prediction_type == "epsilon":
        return model_output
    abar = _per_example(schedule.alphas_cumprod, t, x_t.ndim)
    return (x_t - jnp.sqrt(abar) * model_output) / jnp.sqrt(1.0 - abar)


# --------------------------------------------------------------------------------------------- diffusers config I/O


def to_diffusers_config(schedule: NoiseSchedule, class_name: str = "DDPMScheduler") -> dict[str, Any]:
    """The schedule as the dict diffusers' `save_config` writes (loadable by DDPM/DDIM schedulers, Flax or torch)."""
    if class_name not in DIFFUSERS_CLASS_NAMES:
        raise _choice_error("class_name", class_name, DIFFUSERS_CLASS_NAMES)
    config: dict[str, Any] = {
        "_class_name": class_name,
        "_diffusers_version": DIFFUSERS_CONFIG_VERSION,
        "beta_end": schedule.beta_end,
        "beta_schedule": schedule.beta_schedule,
        "beta_start": schedule.beta_start,
        "clip_sample": schedule.clip_sample,
        "clip_sample_range": schedule.clip_sample_range,
        "num_train_timesteps": schedule.num_train_timesteps,
        "prediction_type": schedule.prediction_type,
        "trained_betas": None,
    }
    if "DDIM" in class_name:
        config.update(set_alpha_to_one=True, steps_offset=0)
    else:
        config.update(variance_type="fixed_small")
    if not class_name.startswith("Flax"):  # keys only the torch schedulers know
        config.update(thresholding=False, timestep_spacing="leading", rescale_betas_zero_snr=False)
        if "DDIM" not in class_name:
            config.update(steps_offset=0)
    return dict(sorted(config.items()))


def from_diffusers_config(config: Mapping[str, Any]) -> NoiseSchedule:
    """Build a schedule from a diffusers scheduler config dict; unsupported settings raise ValueError."""
    if not isinstance(config, Mapping):
        raise ValueError(f"a diffusers scheduler config must be a dict, got {type(config).__name__}")
    class_name = config.get("_class_name", "DDPMScheduler")
    if class_name not in DIFFUSERS_CLASS_NAMES:
        raise _choice_error("_class_name", class_name, DIFFUSERS_CLASS_NAMES)
    for key, (supported, meaning) in _FIXED_KEYS.items():
        if key in config and config[key] != supported:
            raise ValueError(
                f"unsupported {key}={config[key]!r} in the scheduler config; robojax supports only "
                f"{key}={supported!r} ({meaning})"
            )
    known = {
        "num_train_timesteps",
        "beta_start",
        "beta_end",
        "beta_schedule",
        "prediction_type",
        "clip_sample",
        "clip_sample_range",
        *_FIXED_KEYS,
        *_IGNORED_KEYS,
    }
    unknown = sorted(k for k in config if not k.startswith("_") and k not in known)
    if unknown:
        warnings.warn(f"ignoring unknown scheduler config keys {unknown}", stacklevel=2)
    # Defaults are diffusers' constructor defaults, which apply when a key is absent.
    return make_schedule(
        num_train_timesteps=int(config.get("num_train_timesteps", 1000)),
        beta_schedule=config.get("beta_schedule", "linear"),
        beta_start=float(config.get("beta_start", 1e-4)),
        beta_end=float(config.get("beta_end", 0.02)),
        prediction_type=config.get("prediction_type", "epsilon"),
        clip_sample=bool(config.get("clip_sample", True)),
        clip_sample_range=float(config.get("clip_sample_range", 1.0)),
    )


def save_scheduler_config(
    schedule: NoiseSchedule, directory: str | os.PathLike, class_name: str = "DDPMScheduler"
) -> str:
    """Write directory/scheduler_config.json (written aside, then renamed); returns its path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, SCHEDULER_CONFIG_NAME)
    text = json.dumps(to_diffusers_config(schedule, class_name), indent=2, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".scheduler_config.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def load_scheduler_config(directory: str | os.PathLike) -> NoiseSchedule:
    """Read directory/scheduler_config.json (or a path to the json file itself) written by robojax or diffusers."""
    path = os.fspath(directory)
    if os.path.isdir(path):
        path = os.path.join(path, SCHEDULER_CONFIG_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no scheduler config at {path}; write one with save_scheduler_config(schedule, dir)")
    try:
        with open(path) as f:
            config = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); rewrite it with save_scheduler_config") from None
    try:
        return from_diffusers_config(config)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
