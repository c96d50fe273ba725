"""EBT-Policy learns: a tiny model fits a 1-D bimodal chunk distribution, both modes appear across
initial samples, and the energy falls along the descent; configs and data fail clearly."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robojax.agents.ebt_policy import learner
from robojax.agents.ebt_policy.config import EBTPolicyConfig, InferenceConfig
from tests.agents.ebt_policy.small import tiny_batch, tiny_config, tiny_state

MODE = 0.7  # the demonstrations' chunk is (+MODE, -MODE) or (-MODE, +MODE), half each, same observation


@functools.cache
def _bimodal(train_samples: int):
    config = EBTPolicyConfig(
        width=16,
        obs_layers=1,
        action_layers=1,
        num_heads=2,
        obs_horizon=1,
        pred_horizon=2,
        action_horizon=1,
        train_steps_min=2,
        train_steps_max=3,
        warmup_steps=20,
        total_grad_steps=400,
        batch_size=64,
        step_size=100.0,
        train_samples=train_samples,
    )
    n = 2000
    modes = np.where(np.random.default_rng(0).random(n) < 0.5, MODE, -MODE).astype(np.float32)
    actions = jnp.asarray(np.stack([modes, -modes], 1)[:, :, None])
    obs = jnp.zeros((config.batch_size, 1, 1))
    # Normalisers fitted on [-1, 1] so the model's space is the data's.
    normalizers = learner.fit_normalizers(np.array([[0.0], [1.0]]), np.array([[-1.0], [1.0]]), config)
    state = learner.init(jax.random.key(0), 1, 1, config, normalizers)

    @jax.jit
    def train(state):
        def one(s, _):
            idx = jax.random.randint(jax.random.fold_in(s.rng, 1), (config.batch_size,), 0, n)
            return learner.update(s, {"obs": obs, "actions": actions[idx]})

        return jax.lax.scan(one, state, None, length=config.total_grad_steps)

    state, metrics = train(state)
    plans = learner.plan(
        state.ema_params,
        normalizers,
        config,
        InferenceConfig(inference_steps=4),
        1,
        jnp.zeros((64, 1, 1)),
        jax.random.key(3),
    )
    return state, jax.device_get(metrics), jax.device_get(plans)


def test_winner_takes_all_keeps_both_modes():
    _, metrics, plans = _bimodal(4)
    loss = metrics["loss"]
    assert loss[-50:].mean() < 0.25 * loss[:20].mean()
    first = plans.chunk[:, 0, 0]
    near_mode = np.minimum(np.abs(first - MODE), np.abs(first + MODE))
    assert np.mean(near_mode < 0.2) > 0.9, np.round(np.sort(first), 2)
    frac_up = np.mean(first > 0)
    assert 0.15 < frac_up < 0.85, frac_up  # both modes, from different initial samples
    # The second action of each plan is its mode's partner (the chunk is a coherent sample, not a mix).
    np.testing.assert_allclose(plans.chunk[:, 1, 0], -first, atol=0.3)


def test_energy_falls_along_the_descent():
    _, _, plans = _bimodal(4)
    # The look-ahead energies of 4 steps, then the plan's: mostly downhill.
    assert np.mean(plans.energy < plans.energies[0]) > 0.8


def test_authors_recipe_averages_the_modes():
    """Plain MSE through the unroll (train_samples 1) regresses to the mean chunk: a known property
    of reconstruction losses on multimodal targets, kept as a test so a change to it is noticed."""
    _, metrics, plans = _bimodal(1)
    first = plans.chunk[:, 0, 0]
    assert np.mean(np.abs(first) < 0.35) > 0.8, np.round(np.sort(first), 2)


def test_update_records_its_metrics_and_counts_steps():
    config = tiny_config(train_steps_min=2, train_steps_max=4)
    state = tiny_state(config)
    new, metrics = jax.jit(learner.update)(state, tiny_batch(config, batch=config.batch_size))
    assert set(metrics) == set(learner.metric_names())
    assert 2 <= float(metrics["descent_steps"]) <= 4
    assert int(new.step) == 1 and np.isfinite(float(metrics["loss"]))
    # log(alpha) is frozen unless learnable (S1), when it moves with the network.
    assert float(new.params["log_alpha"]) == pytest.approx(float(state.params["log_alpha"]))
    s1 = tiny_config(learnable_step_size=True, warmup_steps=0)
    s1_state = tiny_state(s1)
    moved, _ = jax.jit(learner.update)(s1_state, tiny_batch(s1, batch=s1.batch_size))
    assert float(moved.params["log_alpha"]) != pytest.approx(float(s1_state.params["log_alpha"]), abs=1e-7)


def test_dataset_actions_outside_the_box_are_refused():
    learner.check_model_actions(np.array([[-1.0, 0.5, 1.0]]))
    with pytest.raises(ValueError, match=r"outside \[-1, 1\].*refit the normaliser"):
        learner.check_model_actions(np.array([[1.3, 0.0]]))
    with pytest.raises(ValueError, match="NaN"):
        learner.check_model_actions(np.array([[np.nan]]))


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(width=18, num_heads=4), "num_heads"),
        (dict(train_steps_min=5, train_steps_max=3), "train_steps_min"),
        (dict(action_horizon=20), "action_horizon"),
        (dict(gradient="second"), "gradient"),
        (dict(step_size_scale=0.5), "step_size_scale"),
        (dict(momentum=1.0), "momentum"),
        (dict(train_samples=0), "train_samples"),
    ],
)
def test_bad_configs_name_the_field(overrides, match):
    with pytest.raises(ValueError, match=match):
        EBTPolicyConfig(**overrides)


def test_presets():
    assert EBTPolicyConfig.authors().width == 256 and EBTPolicyConfig.authors().obs_layers == 8
    s1, s2 = EBTPolicyConfig.s1(), EBTPolicyConfig.s2()
    assert s1.gradient == "stop_between" and s1.learnable_step_size and s1.train_steps_max == 2
    assert s2.gradient == "last_step" and s2.loss_steps == "last" and s2.step_size_scale == 2.0
    with pytest.raises(ValueError, match="action_steps"):
        InferenceConfig(action_steps=40).check_against(EBTPolicyConfig())
