"""Replay buffer, demo files and the running observation normaliser."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robojax.data import load_demos, normalizer, replay, save_demos
from robojax.data.normalizer import RunningMeanStd
from robojax.data.replay import Transition

_insert = replay.insert  # eager: a jit would recompile for every capacity and batch size drawn


def _batch(values):
    values = np.asarray(values, np.float32)
    n = len(values)
    return Transition(
        obs=np.stack([values, -values], 1),
        action=values[:, None],
        reward=values,
        next_obs=np.stack([values + 1, -values], 1),
        terminated=values > 100,
        truncated=np.zeros(n, bool),
        intervention=np.zeros(n, bool),
    )


@settings(max_examples=30, deadline=None)
@given(capacity=st.integers(1, 9), sizes=st.lists(st.integers(1, 4), min_size=1, max_size=8))
def test_ring_buffer_matches_a_deque(capacity, sizes):
    sizes = [min(s, capacity) for s in sizes]
    buffer = replay.init(Transition.example((2,), (1,)), capacity)
    model = collections.deque(maxlen=capacity)
    counter = 0
    for n in sizes:
        values = list(range(counter, counter + n))
        counter += n
        buffer = _insert(buffer, _batch(values))
        model.extend(values)
    assert int(buffer.size) == len(model)
    stored = replay.contents(buffer)
    np.testing.assert_array_equal(stored.reward, np.asarray(model, np.float32))
    np.testing.assert_array_equal(stored.next_obs[:, 0], np.asarray(model, np.float32) + 1)


def test_sample_draws_only_valid_entries():
    buffer = replay.init(Transition.example((2,), (1,)), 100)
    buffer = replay.insert(buffer, _batch(np.arange(7)))
    batch = jax.jit(replay.sample, static_argnums=2)(buffer, jax.random.PRNGKey(0), 512)
    assert batch.obs.shape == (512, 2)
    assert set(np.asarray(batch.reward).tolist()) == set(range(7))


def test_symmetric_sampling_is_half_demo():
    online = replay.insert(replay.init(Transition.example((2,), (1,)), 50), _batch(np.arange(10)))
    demo = replay.insert(replay.init(Transition.example((2,), (1,)), 50), _batch(np.arange(1000, 1005)))
    batch = replay.sample_symmetric(online, demo, jax.random.PRNGKey(1), 64)
    rewards = np.asarray(batch.reward)
    assert (rewards[:32] < 10).all() and (rewards[32:] >= 1000).all()
    with pytest.raises(ValueError, match="even"):
        replay.sample_symmetric(online, demo, jax.random.PRNGKey(1), 7)


def test_host_numpy_batches_insert_and_mismatches_are_named():
    buffer = replay.init(Transition.example((2,), (1,)), 4)
    buffer = replay.insert(buffer, _batch([1.0]))  # a host loop's single transition, as numpy
    assert int(buffer.size) == 1
    with pytest.raises(ValueError, match="capacity 4"):
        replay.insert(buffer, _batch(np.arange(5)))
    bad = _batch([1.0]).replace(obs=np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        replay.insert(buffer, bad)
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        replay.init(Transition.example((2,), (1,)), 0)


def test_demo_file_round_trip_and_errors(tmp_path):
    path = tmp_path / "demos.npz"
    save_demos(path, _batch(np.arange(6)))
    demos = load_demos(path, (2,), (1,))
    np.testing.assert_array_equal(demos.reward, np.arange(6))
    assert demos.intervention.dtype == bool
    with pytest.raises(ValueError, match=r"obs has shape \(6, 2\), expected \(6, 3\)"):
        load_demos(path, (3,), (1,))
    with pytest.raises(FileNotFoundError, match="demo file not found"):
        load_demos(tmp_path / "missing.npz", (2,), (1,))
    (tmp_path / "junk.npz").write_text("not an archive")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_demos(tmp_path / "junk.npz", (2,), (1,))
    np.savez(tmp_path / "partial.npz", obs=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="lacks fields"):
        load_demos(tmp_path / "partial.npz", (2,), (1,))


@settings(max_examples=25, deadline=None)
@given(chunks=st.lists(st.integers(1, 20), min_size=1, max_size=6), seed=st.integers(0, 1000))
def test_running_statistics_match_numpy(chunks, seed):
    rng = np.random.default_rng(seed)
    data = rng.normal(3.0, 2.0, size=(sum(chunks), 3)).astype(np.float32)
    stats = RunningMeanStd.create((3,))
    start = 0
    for n in chunks:
        stats = normalizer.update(stats, data[start : start + n])
        start += n
    np.testing.assert_allclose(stats.mean, data.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(stats.var, data.var(0), rtol=1e-3, atol=1e-4)
    assert float(stats.count) == len(data)


def test_normalize_is_identity_before_any_sample_then_standardises():
    stats = RunningMeanStd.create((2,))
    x = jnp.array([[30.0, -4.0]])
    np.testing.assert_array_equal(normalizer.normalize(stats, x), x)
    stats = normalizer.update(stats, jnp.array([[1.0, 0.0], [3.0, 0.0]]))
    np.testing.assert_allclose(normalizer.normalize(stats, jnp.array([[3.0, 0.0]])), [[1.0, 0.0]], atol=1e-5)
    assert float(normalizer.normalize(stats, x)[0, 0]) == 10.0  # clipped
