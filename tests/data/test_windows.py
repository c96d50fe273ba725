"""Windows with Chi et al.'s edge padding, and the min/max action normaliser (C2)."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from robojax.data.episodes import Episode, EpisodeDataset
from robojax.data.normalizer import MinMaxNormalizer
from robojax.data.windows import make_windows
from robojax.envs.core import ArraySpec


def _dataset(lengths):
    episodes = []
    for i, n in enumerate(lengths):
        t = np.arange(n, dtype=np.float32)
        # obs = (episode, step); action = (step, -step): every value says where it came from.
        obs = np.stack([np.full(n, i, np.float32), t], -1)
        act = np.stack([t, -t], -1)
        episodes.append(Episode(obs, act, np.zeros(n, np.float32), True))
    return EpisodeDataset("mem", ArraySpec((2,)), ArraySpec((2,)), None, None, (), {}, episodes)


def test_windows_pad_at_episode_edges():
    w = make_windows(_dataset([5, 3]), obs_horizon=3, pred_horizon=4)
    assert w["obs"].shape == (8, 3, 2) and w["actions"].shape == (8, 4, 2)
    np.testing.assert_array_equal(w["episode"], [0, 0, 0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(w["t"], [0, 1, 2, 3, 4, 0, 1, 2])
    steps = lambda k: w["obs"][k, :, 1]  # noqa: E731
    # First window of each episode: history padded with obs[0]; the chunk is a[0..3].
    np.testing.assert_array_equal(steps(0), [0, 0, 0])
    np.testing.assert_array_equal(steps(1), [0, 0, 1])
    np.testing.assert_array_equal(steps(2), [0, 1, 2])
    np.testing.assert_array_equal(w["actions"][0, :, 0], [0, 1, 2, 3])
    np.testing.assert_array_equal(w["actions"][0, :, 1], [0, -1, -2, -3])
    # Last windows: the chunk is padded with the last action.
    np.testing.assert_array_equal(w["actions"][3, :, 0], [3, 4, 4, 4])
    np.testing.assert_array_equal(w["actions"][4, :, 0], [4, 4, 4, 4])
    np.testing.assert_array_equal(steps(4), [2, 3, 4])
    # Windows never mix episodes (episode 1 is shorter than both horizons).
    np.testing.assert_array_equal(w["obs"][5:, :, 0], 1)
    np.testing.assert_array_equal(steps(5), [0, 0, 0])
    np.testing.assert_array_equal(w["actions"][5, :, 0], [0, 1, 2, 2])
    np.testing.assert_array_equal(w["actions"][7, :, 0], [2, 2, 2, 2])
    np.testing.assert_array_equal(steps(7), [0, 1, 2])


def test_windows_default_horizons():
    w = make_windows(_dataset([20]))
    assert w["obs"].shape == (20, 2, 2) and w["actions"].shape == (20, 16, 2)
    np.testing.assert_array_equal(w["actions"][10, :, 0], [10, 11, 12, 13, 14, 15, 16, 17, 18, 19] + [19] * 6)


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 20), st.just(4)), elements=st.floats(-50, 50, width=32)))
def test_normalizer_round_trip(actions):
    actions[:, 3] = np.where(actions[:, 3] > 0, 1.0, -1.0)  # a gripper dim
    norm = MinMaxNormalizer.fit(actions, discrete_dims=[3])
    x = norm.normalize(actions)
    assert np.all(np.abs(x) <= 1.0 + 1e-5)
    np.testing.assert_array_equal(x[:, 3], actions[:, 3])  # discrete dim passed through
    assert np.all(np.abs(norm.unnormalize(x) - actions) <= 1e-5 * (1 + np.abs(actions).max()))
    again = MinMaxNormalizer.from_dict(norm.to_dict())
    np.testing.assert_allclose(again.normalize(actions), x, atol=1e-6)


def test_normalizer_maps_range_and_handles_constant_dims():
    actions = np.array([[0.0, 5.0, 2.0], [4.0, 5.0, 3.0], [2.0, 5.0, 2.5]], np.float32)
    norm = MinMaxNormalizer.fit(actions)
    x = norm.normalize(actions)
    np.testing.assert_allclose(x[:, 0], [-1, 1, 0])
    np.testing.assert_allclose(x[:, 2], [-1, 1, 0])
    np.testing.assert_array_equal(x[:, 1], 0.0)  # constant dim: shifted to 0, not divided by 0
    assert np.all(np.isfinite(x))
    np.testing.assert_allclose(norm.unnormalize(x), actions)


def test_normalizer_jax_any_leading_dims_and_jit():
    rng = np.random.default_rng(0)
    actions = rng.uniform(-3, 7, (50, 3)).astype(np.float32)
    norm = MinMaxNormalizer.fit(actions, discrete_dims=(2,))
    chunk = jnp.asarray(actions.reshape(5, 10, 3))
    y = jax.jit(lambda n, a: n.unnormalize(n.normalize(a)))(norm, chunk)
    assert isinstance(y, jax.Array) and y.shape == (5, 10, 3)
    np.testing.assert_allclose(np.asarray(y), actions.reshape(5, 10, 3), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(norm.normalize(chunk)), norm.normalize(actions.reshape(5, 10, 3)), atol=1e-6)
