"""Noise schedules and diffusers config I/O, checked against diffusers' Flax schedulers (diffusers<0.40)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import robojax  # noqa: F401  (sets XLA flags first)
from robojax.diffusion import (
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

diffusers = pytest.importorskip("diffusers")
from diffusers import FlaxDDIMScheduler, FlaxDDPMScheduler  # noqa: E402
from diffusers.utils import logging as diffusers_logging  # noqa: E402

diffusers_logging.set_verbosity_error()  # silence the Flax deprecation notice

SCHEDULES = [
    ("squaredcos_cap_v2", 100),
    ("linear", 100),
    ("scaled_linear", 100),
    ("squaredcos_cap_v2", 1000),
    ("linear", 1000),
]


def _diffusers_state(cls, **kwargs):
    scheduler = cls(**kwargs)
    return scheduler, scheduler.create_state()


@pytest.mark.parametrize("beta_schedule,T", SCHEDULES)
def test_betas_and_alphas_cumprod_match_diffusers(beta_schedule, T):
    ours = make_schedule(T, beta_schedule=beta_schedule)
    _, state = _diffusers_state(FlaxDDPMScheduler, num_train_timesteps=T, beta_schedule=beta_schedule)
    assert ours.betas.shape == ours.alphas_cumprod.shape == (T,)
    np.testing.assert_allclose(ours.betas, state.common.betas, atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours.alphas, state.common.alphas, atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours.alphas_cumprod, state.common.alphas_cumprod, atol=1e-5, rtol=0)
    assert np.all(np.diff(np.asarray(ours.alphas_cumprod)) < 0)


def test_squaredcos_endpoint_values():
    s = make_schedule(100)
    # iDDPM Eq. 17 at t = 1/T: 1 - cos^2((0.01 + 0.008)/1.008 * pi/2) / cos^2(0.008/1.008 * pi/2)
    f = lambda u: np.cos((u + 0.008) / 1.008 * np.pi / 2) ** 2  # noqa: E731
    assert float(s.betas[0]) == pytest.approx(1 - f(0.01) / f(0.0), rel=1e-5)
    assert float(s.betas[-1]) == pytest.approx(0.999)  # the cap binds on the last step


@settings(max_examples=12, deadline=None)
@given(
    t=st.integers(0, 99),
    batch=st.integers(1, 4),
    tail=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    seed=st.integers(0, 2**16),
    beta_schedule=st.sampled_from(["squaredcos_cap_v2", "linear"]),
)
def test_q_sample_matches_diffusers_add_noise(t, batch, tail, seed, beta_schedule):
    ours = make_schedule(100, beta_schedule=beta_schedule)
    scheduler, state = _diffusers_state(FlaxDDPMScheduler, num_train_timesteps=100, beta_schedule=beta_schedule)
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    shape = (batch, *tail)
    x0 = jax.random.uniform(k1, shape, minval=-1, maxval=1)
    noise = jax.random.normal(k2, shape)
    ts = jax.random.randint(k3, (batch,), 0, 100).at[0].set(t)
    np.testing.assert_allclose(
        q_sample(ours, x0, ts, noise), scheduler.add_noise(state, x0, noise, ts), atol=1e-5, rtol=0
    )


@settings(max_examples=25, deadline=None)
@given(t=st.integers(0, 99), seed=st.integers(0, 2**16), prediction_type=st.sampled_from(["epsilon", "sample"]))
def test_q_sample_then_predict_x0_with_true_noise_recovers_x0(t, seed, prediction_type):
    s = make_schedule(100, prediction_type=prediction_type)
    k1, k2 = jax.random.split(jax.random.key(seed))
    x0 = jax.random.uniform(k1, (3, 16, 2), minval=-1, maxval=1)
    noise = jax.random.normal(k2, x0.shape)
    ts = jnp.full((3,), t)
    x_t = q_sample(s, x0, ts, noise)
    target = training_target(s, x0, noise, ts)
    np.testing.assert_array_equal(target, noise if prediction_type == "epsilon" else x0)
    # The true target as model output recovers x0 and the noise (x0 from eps loses precision where alpha_bar -> 0).
    abar = float(s.alphas_cumprod[t])
    np.testing.assert_allclose(predict_x0(s, target, x_t, ts), x0, atol=2e-5 / np.sqrt(abar))
    np.testing.assert_allclose(predict_epsilon(s, target, x_t, ts), noise, atol=2e-5 / np.sqrt(1 - abar))


def test_q_sample_accepts_scalar_t_and_is_jittable():
    s = make_schedule()
    x0 = jnp.ones((4, 3))
    noise = jnp.zeros((4, 3))
    out = jax.jit(q_sample)(s, x0, jnp.int32(0), noise)
    np.testing.assert_allclose(out, np.sqrt(float(s.alphas_cumprod[0])) * np.ones((4, 3)), rtol=1e-6)


def test_schedule_is_a_pytree_with_static_settings():
    s = make_schedule(50, beta_schedule="linear", prediction_type="sample", clip_sample=False)
    leaves = jax.tree_util.tree_leaves(s)
    assert len(leaves) == 3
    doubled = jax.tree_util.tree_map(lambda x: 2 * x, s)
    assert doubled.num_train_timesteps == 50 and doubled.prediction_type == "sample" and not doubled.clip_sample


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(beta_schedule="sigmoid"), "beta_schedule"),
        (dict(prediction_type="v_prediction"), "prediction_type"),
        (dict(num_train_timesteps=0), "num_train_timesteps"),
        (dict(clip_sample_range=0.0), "clip_sample_range"),
        (dict(beta_schedule="linear", beta_end=1.5), "betas"),
    ],
)
def test_make_schedule_rejects_bad_arguments(kwargs, field):
    with pytest.raises(ValueError, match=field):
        make_schedule(**kwargs)


# ------------------------------------------------------------------------------------------------ config round trips


@pytest.mark.parametrize(
    "class_name,cls",
    [
        ("DDPMScheduler", FlaxDDPMScheduler),
        ("DDIMScheduler", FlaxDDIMScheduler),
        ("FlaxDDPMScheduler", FlaxDDPMScheduler),
    ],
)
@pytest.mark.parametrize("beta_schedule", ["squaredcos_cap_v2", "linear"])
def test_our_config_loads_into_diffusers(tmp_path, class_name, cls, beta_schedule):
    ours = make_schedule(100, beta_schedule=beta_schedule, prediction_type="sample", clip_sample=False)
    path = save_scheduler_config(ours, tmp_path, class_name=class_name)
    assert path == os.path.join(tmp_path, "scheduler_config.json")
    assert sorted(os.listdir(tmp_path)) == ["scheduler_config.json"]  # no temp file left behind
    written = json.loads(open(path).read())
    assert written["_class_name"] == class_name and "_diffusers_version" in written
    scheduler, state = cls.from_pretrained(str(tmp_path))
    assert scheduler.config.prediction_type == "sample"
    assert scheduler.config.clip_sample is False
    assert scheduler.config.num_train_timesteps == 100
    np.testing.assert_allclose(state.common.alphas_cumprod, ours.alphas_cumprod, atol=1e-5, rtol=0)
    # And the dict form goes through from_config too.
    from_dict = cls.from_config(to_diffusers_config(ours, class_name))
    np.testing.assert_allclose(from_dict.create_state().common.betas, ours.betas, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cls", [FlaxDDPMScheduler, FlaxDDIMScheduler])
def test_diffusers_written_config_loads_into_ours(tmp_path, cls):
    scheduler = cls(
        num_train_timesteps=100, beta_schedule="squaredcos_cap_v2", prediction_type="sample", clip_sample=False
    )
    scheduler.save_config(str(tmp_path))
    ours = load_scheduler_config(tmp_path)
    assert (ours.num_train_timesteps, ours.beta_schedule, ours.prediction_type, ours.clip_sample) == (
        100,
        "squaredcos_cap_v2",
        "sample",
        False,
    )
    np.testing.assert_allclose(ours.alphas_cumprod, scheduler.create_state().common.alphas_cumprod, atol=1e-5, rtol=0)
    again = from_diffusers_config(to_diffusers_config(ours))
    np.testing.assert_array_equal(again.alphas_cumprod, ours.alphas_cumprod)
    # The json file path itself works too.
    assert load_scheduler_config(tmp_path / "scheduler_config.json").num_train_timesteps == 100


def test_torch_diffusers_style_config_loads():
    # Every key diffusers' (torch) DDPMScheduler.save_config writes, as in Diffusion Policy's DDPM setting.
    config = {
        "_class_name": "DDPMScheduler",
        "_diffusers_version": "0.39.0",
        "beta_end": 0.02,
        "beta_schedule": "squaredcos_cap_v2",
        "beta_start": 0.0001,
        "clip_sample": True,
        "clip_sample_range": 1.0,
        "dynamic_thresholding_ratio": 0.995,
        "num_train_timesteps": 100,
        "prediction_type": "epsilon",
        "rescale_betas_zero_snr": False,
        "sample_max_value": 1.0,
        "steps_offset": 0,
        "thresholding": False,
        "timestep_spacing": "leading",
        "trained_betas": None,
        "variance_type": "fixed_small",
    }
    s = from_diffusers_config(config)
    np.testing.assert_array_equal(s.alphas_cumprod, make_schedule().alphas_cumprod)


@pytest.mark.parametrize(
    "key,value",
    [
        ("beta_schedule", "sigmoid"),
        ("prediction_type", "v_prediction"),
        ("variance_type", "fixed_large"),
        ("timestep_spacing", "trailing"),
        ("steps_offset", 1),
        ("set_alpha_to_one", False),
        ("thresholding", True),
        ("trained_betas", [0.1, 0.2]),
        ("_class_name", "EulerDiscreteScheduler"),
    ],
)
def test_unsupported_config_values_raise_naming_the_field(tmp_path, key, value):
    config = to_diffusers_config(make_schedule())
    config[key] = value
    with pytest.raises(ValueError, match=key) as info:
        from_diffusers_config(config)
    assert "support" in str(info.value)
    (tmp_path / "scheduler_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="scheduler_config.json"):
        load_scheduler_config(tmp_path)


def test_missing_or_corrupt_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="save_scheduler_config"):
        load_scheduler_config(tmp_path)
    (tmp_path / "scheduler_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_scheduler_config(tmp_path)


def test_unknown_config_keys_warn_but_load():
    config = to_diffusers_config(make_schedule())
    config["some_future_option"] = 3
    with pytest.warns(UserWarning, match="some_future_option"):
        from_diffusers_config(config)
