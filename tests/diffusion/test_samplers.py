"""DDPM / DDIM steps and the scan sampler: diffusers parity, identities, jit/vmap, warm starts, a learning test."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import robojax  # noqa: F401  (sets XLA flags first)
from robojax.diffusion import (
    ddim_step,
    ddim_timesteps,
    ddpm_posterior,
    ddpm_step,
    ddpm_timesteps,
    make_schedule,
    predict_x0,
    q_sample,
    sample,
    training_target,
)
from robojax.nets.unet1d import MLPDenoiser

diffusers = pytest.importorskip("diffusers")
from diffusers import FlaxDDIMScheduler, FlaxDDPMScheduler  # noqa: E402
from diffusers.utils import logging as diffusers_logging  # noqa: E402

diffusers_logging.set_verbosity_error()  # silence the Flax deprecation notice


class _JnpWithClipAMin:
    """jax.numpy, except that clip also takes numpy's old a_min/a_max keywords."""

    def __getattr__(self, name):
        return getattr(jnp, name)

    @staticmethod
    def clip(x, a_min=None, a_max=None, **kwargs):
        return jnp.clip(x, a_min, a_max, **kwargs)


@pytest.fixture(autouse=True)
def _diffusers_jax_compat(monkeypatch):
    # diffusers 0.39's FlaxDDPMScheduler._get_variance calls jnp.clip(variance, a_min=1e-20), a keyword that
    # current JAX no longer accepts; shim only that call inside the diffusers module.
    from diffusers.schedulers import scheduling_ddpm_flax

    monkeypatch.setattr(scheduling_ddpm_flax, "jnp", _JnpWithClipAMin())


SHAPE = (2, 16, 3)
SETTINGS = [(p, c, b) for p in ("epsilon", "sample") for c in (True, False) for b in ("squaredcos_cap_v2", "linear")]


def _model_output(key, shape=SHAPE, scale=1.5):
    # Wide enough that clip_sample bites on the x0 estimate.
    return scale * jax.random.normal(key, shape)


def _fake_denoiser(x_t, t):
    """A fixed, nonlinear, t-dependent stand-in for a network."""
    return jnp.tanh(1.3 * x_t) * (0.5 + t.astype(jnp.float32) / 100.0) - 0.1 * x_t


@pytest.mark.parametrize("prediction_type,clip_sample,beta_schedule", SETTINGS)
def test_ddpm_step_matches_diffusers(prediction_type, clip_sample, beta_schedule):
    s = make_schedule(100, beta_schedule=beta_schedule, prediction_type=prediction_type, clip_sample=clip_sample)
    scheduler = FlaxDDPMScheduler(
        num_train_timesteps=100, beta_schedule=beta_schedule, prediction_type=prediction_type, clip_sample=clip_sample
    )
    state = scheduler.create_state()
    for i, t in enumerate([99, 60, 17, 1, 0]):
        k1, k2, k3 = jax.random.split(jax.random.key(i), 3)
        x_t = jax.random.normal(k1, SHAPE)
        out = _model_output(k2)
        theirs = scheduler.step(state, out, t, x_t, k3).prev_sample
        # diffusers draws its noise from split(key, 1)[0]; give ours that key so the noise is identical.
        ours = ddpm_step(s, out, jnp.int32(t), x_t, jax.random.split(k3, 1)[0])
        np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-5)
        # Deterministic part and variance separately.
        x0_hat = predict_x0(s, out, x_t, t)
        x0_hat = jnp.clip(x0_hat, -1, 1) if clip_sample else x0_hat
        mean, var = ddpm_posterior(s, x0_hat, x_t, t)
        np.testing.assert_allclose(var, scheduler._get_variance(state, t), rtol=1e-5, atol=1e-12)
        noise = jax.random.normal(jax.random.split(k3, 1)[0], SHAPE)
        np.testing.assert_allclose(mean + (t > 0) * jnp.sqrt(var) * noise, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("prediction_type,clip_sample,beta_schedule", SETTINGS)
@pytest.mark.parametrize("k", [1, 8, 10])
def test_ddim_matches_diffusers_step_by_step_and_full_loop(prediction_type, clip_sample, beta_schedule, k):
    s = make_schedule(100, beta_schedule=beta_schedule, prediction_type=prediction_type, clip_sample=clip_sample)
    scheduler = FlaxDDIMScheduler(
        num_train_timesteps=100, beta_schedule=beta_schedule, prediction_type=prediction_type, clip_sample=clip_sample
    )
    state = scheduler.set_timesteps(scheduler.create_state(), k)
    steps = ddim_timesteps(s, k)
    assert steps == tuple(int(t) for t in state.timesteps)
    x_theirs = x_ours = jax.random.normal(jax.random.key(k), SHAPE)
    for t, t_prev in zip(steps, steps[1:] + (-1,)):
        out = _fake_denoiser(x_theirs, jnp.int32(t))
        theirs = scheduler.step(state, out, t, x_theirs, eta=0.0).prev_sample
        np.testing.assert_allclose(ddim_step(s, out, t, t_prev, x_theirs), theirs, atol=1e-5, rtol=1e-5)
        x_theirs = theirs
    x_ours = jax.jit(functools.partial(sample, _fake_denoiser, timesteps=steps, method="ddim"))(s, x_ours, None)
    np.testing.assert_allclose(x_ours, x_theirs, atol=1e-5, rtol=1e-5)


def test_full_ddpm_loop_matches_step_by_step_with_diffusers_variance():
    # sample(method="ddpm") over T-1..0 equals diffusers' step chain when both see the same noise.
    s = make_schedule(100)
    scheduler = FlaxDDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2")
    state = scheduler.create_state()
    key = jax.random.key(3)
    x = x_start = jax.random.normal(jax.random.key(4), SHAPE)
    step_keys = jax.random.split(key, 100)  # the keys sample() hands to ddpm_step, in order
    for t, k in zip(ddpm_timesteps(s), step_keys):
        out = _fake_denoiser(x, jnp.int32(t))
        deterministic = scheduler.step(state, out, t, x, jax.random.key(0)).prev_sample - (t > 0) * jnp.sqrt(
            scheduler._get_variance(state, t)
        ) * jax.random.normal(jax.random.split(jax.random.key(0), 1)[0], SHAPE)
        x = deterministic + (t > 0) * jnp.sqrt(scheduler._get_variance(state, t)) * jax.random.normal(k, SHAPE)
    ours = sample(_fake_denoiser, s, x_start, key, timesteps=ddpm_timesteps(s), method="ddpm")
    np.testing.assert_allclose(ours, x, atol=1e-4, rtol=1e-4)


@settings(max_examples=30, deadline=None)
@given(t=st.integers(1, 99), gap=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_ddpm_posterior_identities(t, gap, seed):
    s = make_schedule(100)
    t_prev = max(t - gap, -1)
    abar = np.concatenate([[1.0], np.asarray(s.alphas_cumprod, np.float64)])  # abar[t+1] = alpha_bar_t
    x0 = jnp.ones(())
    # Posterior mean/variance are linear-Gaussian in (x0, x_t): check the coefficients through unit inputs.
    a = float(ddpm_posterior(s, x0, jnp.zeros(()), t, t_prev)[0])
    b, var = (float(v) for v in ddpm_posterior(s, jnp.zeros(()), jnp.ones(()), t, t_prev))
    # Marginalising x_t ~ q(x_t | x0) through q(x_{t_prev} | x_t, x0) must give q(x_{t_prev} | x0) (DDPM Eq. 4).
    assert a + b * np.sqrt(abar[t + 1]) == pytest.approx(np.sqrt(abar[t_prev + 1]), abs=1e-5)
    assert b**2 * (1 - abar[t + 1]) + var == pytest.approx(1 - abar[t_prev + 1], abs=1e-5)
    if t_prev == t - 1:  # DDPM Eq. 7 variance and the Eq. 11 form of the mean with eps
        beta = float(s.betas[t])
        assert var == pytest.approx((1 - abar[t]) / (1 - abar[t + 1]) * beta, rel=1e-5)
        eps = jax.random.normal(jax.random.key(seed), (4,))
        x_t = jax.random.normal(jax.random.key(seed + 1), (4,))
        x0_hat = predict_x0(s, eps, x_t, t)
        mean = ddpm_posterior(s, x0_hat, x_t, t)[0]
        eq11 = (x_t - beta / np.sqrt(1 - abar[t + 1]) * eps) / np.sqrt(1 - beta)
        np.testing.assert_allclose(mean, eq11, atol=1e-4, rtol=1e-4)


def _exact_denoiser(s, x0):
    """The model output a perfect network gives for a known x0."""

    def denoise(x_t, t):
        if s.prediction_type == "sample":
            return x0
        abar = s.alphas_cumprod[t]
        return (x_t - jnp.sqrt(abar) * x0) / jnp.sqrt(1 - abar)

    return denoise


@settings(max_examples=20, deadline=None)
@given(
    steps=st.lists(st.integers(0, 99), min_size=1, max_size=6, unique=True),
    method=st.sampled_from(["ddim", "ddpm"]),
    prediction_type=st.sampled_from(["epsilon", "sample"]),
    seed=st.integers(0, 2**16),
)
def test_exact_model_recovers_x0_from_any_warm_start_step_list(steps, method, prediction_type, seed):
    s = make_schedule(100, prediction_type=prediction_type)
    steps = tuple(sorted(steps, reverse=True))
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    x0 = jax.random.uniform(k1, (16, 2), minval=-0.9, maxval=0.9)
    x_start = q_sample(s, x0, steps[0], jax.random.normal(k2, x0.shape))
    out = sample(_exact_denoiser(s, x0), s, x_start, k3, timesteps=steps, method=method)
    np.testing.assert_allclose(out, x0, atol=2e-3)


def test_warm_start_uses_x_start_as_given_and_visits_the_step_list():
    s = make_schedule(100)
    x_start = jnp.linspace(-0.5, 0.5, 8).reshape(4, 2)
    seen = []

    def record(x_t, t):
        jax.debug.callback(lambda v: seen.append(int(v)), t)
        return jnp.zeros_like(x_t)

    out = sample(record, s, x_start, None, timesteps=(5, 3, 1), method="ddim")
    jax.effects_barrier()
    assert seen == [5, 3, 1]
    expected = x_start  # a zero eps keeps x on the ray sqrt(abar) x0: x_{t'} = sqrt(abar_t' / abar_t) x_t
    for t, t_prev in [(5, 3), (3, 1), (1, -1)]:
        expected = ddim_step(s, jnp.zeros_like(expected), t, t_prev, expected)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    np.testing.assert_allclose(out, x_start / np.sqrt(float(s.alphas_cumprod[5])), rtol=1e-5)


def test_sample_is_jittable_and_vmappable():
    s = make_schedule(100)
    steps = ddim_timesteps(s, 10)
    x = jax.random.normal(jax.random.key(0), (5, 16, 2))
    keys = jax.random.split(jax.random.key(1), 5)
    for method in ("ddim", "ddpm"):
        fn = jax.jit(jax.vmap(functools.partial(sample, _fake_denoiser, s, timesteps=steps, method=method)))
        batched = fn(x, keys)
        one_by_one = jnp.stack(
            [sample(_fake_denoiser, s, x[i], keys[i], timesteps=steps, method=method) for i in range(5)]
        )
        np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
        assert bool(jnp.all(jnp.isfinite(batched)))
    # DDPM noise differs per key; DDIM ignores it.
    assert not np.allclose(batched[0], sample(_fake_denoiser, s, x[0], keys[1], timesteps=steps, method="ddpm"))


def test_timestep_helpers():
    s = make_schedule(100)
    assert ddpm_timesteps(s) == tuple(range(99, -1, -1))
    assert ddim_timesteps(s, 8) == (84, 72, 60, 48, 36, 24, 12, 0)
    assert ddim_timesteps(s, 100) == ddpm_timesteps(s)
    for bad in (0, 101, 2.5):
        with pytest.raises(ValueError, match="num_inference_steps"):
            ddim_timesteps(s, bad)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(timesteps=()), "empty"),
        (dict(timesteps=(3, 3, 1)), "decreasing"),
        (dict(timesteps=(1, 2)), "decreasing"),
        (dict(timesteps=(100, 0)), r"\[0, 99\]"),
        (dict(timesteps=(-1,)), r"\[0, 99\]"),
        (dict(timesteps=(2, 1), method="euler"), "method"),
        (dict(timesteps=(2, 1), method="ddpm", key=None), "key"),
    ],
)
def test_sample_rejects_bad_arguments(kwargs, match):
    s = make_schedule(100)
    kwargs = dict(kwargs)
    key = kwargs.pop("key", jax.random.key(0))
    with pytest.raises(ValueError, match=match):
        sample(_fake_denoiser, s, jnp.zeros((3,)), key, **kwargs)


def test_traced_timesteps_give_a_clear_error():
    s = make_schedule(100)
    with pytest.raises(ValueError, match="static"):
        jax.jit(lambda ts: sample(_fake_denoiser, s, jnp.zeros((3,)), None, timesteps=ts))(jnp.array([2, 1]))


# --------------------------------------------------------------------------------------------------- learning test

MODE = 0.6


def _bimodal(key, n):
    k1, k2 = jax.random.split(key)
    sign = jnp.where(jax.random.bernoulli(k1, 0.5, (n, 1, 1)), 1.0, -1.0)
    return sign * MODE + 0.05 * jax.random.normal(k2, (n, 1, 1))


def _train(break_loss=False, num_updates=2000, hidden_dims=(128, 128), lr=3e-3):
    """Fit a tiny MLPDenoiser (epsilon prediction) to a 1-D two-mode action distribution."""
    s = make_schedule(100)
    model = MLPDenoiser(hidden_dims=hidden_dims, diffusion_step_embed_dim=16)
    cond = jnp.ones((1,))  # a constant observation
    params = model.init(jax.random.key(0), jnp.zeros((1, 1)), jnp.int32(0), cond)
    tx = optax.adam(optax.cosine_decay_schedule(lr, num_updates, alpha=0.05))
    batch = 256

    def loss_fn(params, key):
        k1, k2, k3 = jax.random.split(key, 3)
        x0 = _bimodal(k1, batch)
        noise = jax.random.normal(k2, x0.shape)
        t = jax.random.randint(k3, (batch,), 0, s.num_train_timesteps)
        x_t = q_sample(s, x0, t, noise)
        target = training_target(s, x0, noise, t)
        if break_loss:  # regress onto the noisy input instead: the denoiser learns nothing useful
            target = x_t
        pred = model.apply(params, x_t, t, jnp.broadcast_to(cond, (batch, 1)))
        return jnp.mean((pred - target) ** 2)

    @jax.jit
    def train(params, key):
        def step(carry, k):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params, k)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), jax.random.split(key, num_updates))
        return params, losses

    params, losses = train(params, jax.random.key(1))
    return s, (lambda x, t: model.apply(params, x, t, cond)), losses


def _draw(denoise, s, key, method, steps, n=1000):
    @jax.jit
    def draw(key):
        k1, k2 = jax.random.split(key)
        x_T = jax.random.normal(k1, (n, 1, 1))
        keys = jax.random.split(k2, n)
        return jax.vmap(lambda x, k: sample(denoise, s, x, k, timesteps=steps, method=method))(x_T, keys)

    return np.asarray(draw(key)).ravel()


def _modes_recovered(a):
    """Both modes held 30-70% each (within 0.2 of +-0.6, together >= 85%), under 10% in the gap |a| < 0.3."""
    left = np.mean(np.abs(a + MODE) < 0.2)
    right = np.mean(np.abs(a - MODE) < 0.2)
    gap = np.mean(np.abs(a) < 0.3)
    ok = 0.3 <= left <= 0.7 and 0.3 <= right <= 0.7 and left + right >= 0.85 and gap < 0.1
    return ok, (left, gap, right)


def test_tiny_denoiser_recovers_both_modes_and_fails_with_a_broken_sampler():
    s, denoise, losses = _train()
    assert float(losses[-100:].mean()) < 0.8 * float(losses[:100].mean())
    for method, steps in [("ddpm", ddpm_timesteps(s)), ("ddim", ddim_timesteps(s, 10))]:
        a = _draw(denoise, s, jax.random.key(2), method, steps)
        ok, fractions = _modes_recovered(a)
        assert ok, f"{method}: (left, gap, right) fractions {fractions}"
        assert np.all(np.abs(a) <= 1.0)  # clip_sample keeps x0 in [-1, 1]
    # The same network read with the wrong parameterisation (a broken sampler) must fail the check.
    wrong = s.replace(prediction_type="sample")
    assert not _modes_recovered(_draw(denoise, wrong, jax.random.key(2), "ddim", ddim_timesteps(s, 10)))[0]
    # So must a chain that skips denoising (one DDIM step from pure noise straight to x0 is not enough).
    assert not _modes_recovered(_draw(denoise, s, jax.random.key(2), "ddim", (99,)))[0]


def test_learning_test_fails_with_a_broken_loss():
    # Fewer updates than above only to save time: regressing onto x_t teaches nothing however long it runs.
    s, denoise, _ = _train(break_loss=True, num_updates=500)
    for method, steps in [("ddpm", ddpm_timesteps(s)), ("ddim", ddim_timesteps(s, 10))]:
        assert not _modes_recovered(_draw(denoise, s, jax.random.key(2), method, steps))[0]
