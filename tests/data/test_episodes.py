"""Episode dataset format (C1): round trip, append, crash safety and every DatasetError case."""

import json
import os

import numpy as np
import pytest

from robojax.data.episodes import FORMAT, DatasetError, EpisodeWriter, load_episodes
from robojax.envs.core import ArraySpec

OBS = ArraySpec((3,), np.float32, name="observation")
ACT = ArraySpec((2,), np.float32, -1.0, 1.0, name="action")


def _episode(t, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(t, 3)).astype(np.float32), rng.uniform(-1, 1, (t, 2)).astype(np.float32)


def _write(path, lengths=(5, 7), **kw):
    with EpisodeWriter(
        path, OBS, ACT, env="toy", control_dt=0.05, discrete_action_dims=[1], metadata={"expert": "test"}, **kw
    ) as w:
        for i, t in enumerate(lengths):
            obs, act = _episode(t, i)
            w.add_episode(
                obs,
                act,
                rewards=np.arange(t),
                success=i % 2 == 0,
                extras={"latency_ms": np.full(t, 1.5)},
                metadata={"seed": i, "mode": "left"},
            )
    return path


def test_round_trip(tmp_path):
    path = _write(tmp_path / "ds")
    ds = load_episodes(path, observation_spec=OBS, action_spec=ACT)
    header = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert header["format"] == FORMAT == "robojax.episodes/1"
    assert ds.env == "toy" and ds.control_dt == 0.05 and ds.discrete_action_dims == (1,)
    assert ds.metadata == {"expert": "test"}
    assert [len(e) for e in ds.episodes] == [5, 7] and ds.num_steps == 12
    for i, e in enumerate(ds.episodes):
        obs, act = _episode(len(e), i)
        np.testing.assert_array_equal(e.observations, obs)
        np.testing.assert_array_equal(e.actions, act)
        np.testing.assert_array_equal(e.rewards, np.arange(len(e)))
        np.testing.assert_array_equal(e.extras["latency_ms"], 1.5)
        assert e.success == (i % 2 == 0)
        assert e.metadata == {"seed": i, "mode": "left", "success": i % 2 == 0}
    assert not [f for f in os.listdir(path / "episodes") if f.endswith(".tmp")]


def test_append_continues_and_checks_specs(tmp_path):
    path = _write(tmp_path / "ds", lengths=(4,))
    with pytest.raises(DatasetError, match="append=True"):
        EpisodeWriter(path, OBS, ACT, env="toy", control_dt=0.05, discrete_action_dims=[1])
    with EpisodeWriter(path, OBS, ACT, env="toy", control_dt=0.05, discrete_action_dims=[1], append=True) as w:
        assert w.add_episode(*_episode(3)) == 1
    ds = load_episodes(path)
    assert [len(e) for e in ds.episodes] == [4, 3] and ds.metadata == {"expert": "test"}
    with pytest.raises(DatasetError, match="action_spec"):
        EpisodeWriter(
            path,
            OBS,
            ArraySpec((4,), np.float32, -1, 1),
            env="toy",
            control_dt=0.05,
            discrete_action_dims=[1],
            append=True,
        )
    with pytest.raises(DatasetError, match="env"):
        EpisodeWriter(path, OBS, ACT, env="other", control_dt=0.05, discrete_action_dims=[1], append=True)


def test_killed_writer_leaves_readable_dataset(tmp_path):
    path = _write(tmp_path / "ds", lengths=(4,))
    # A writer killed after the episode file landed but before dataset.json listed it.
    obs, act = _episode(6)
    np.savez(path / "episodes" / "episode_000001.npz", observations=obs, actions=act)
    assert len(load_episodes(path).episodes) == 1
    with EpisodeWriter(path, OBS, ACT, env="toy", control_dt=0.05, discrete_action_dims=[1], append=True) as w:
        assert w.add_episode(*_episode(2)) == 1  # the orphan is overwritten
    assert [len(e) for e in load_episodes(path).episodes] == [4, 2]


def test_writer_rejects_bad_episodes(tmp_path):
    with EpisodeWriter(tmp_path / "ds", OBS, ACT) as w:
        obs, act = _episode(4)
        with pytest.raises(DatasetError, match="pair up"):
            w.add_episode(obs[:3], act)
        with pytest.raises(DatasetError, match="shape"):
            w.add_episode(obs, act[:, :1])
        act[2, 0] = np.nan
        with pytest.raises(DatasetError, match="NaN"):
            w.add_episode(obs, act)
        with pytest.raises(DatasetError, match="per-step"):
            w.add_episode(obs, np.zeros((4, 2)), extras={"x": np.zeros(3)})
        assert w.num_episodes == 0


def _edit_header(path, **changes):
    header = json.loads((path / "dataset.json").read_text())
    header.update(changes)
    (path / "dataset.json").write_text(json.dumps(header))


def _rewrite_episode(path, index=0, **arrays):
    file = path / "episodes" / f"episode_{index:06d}.npz"
    with np.load(file) as z:
        data = {k: z[k] for k in z.files}
    data.update(arrays)
    np.savez(file, **data)


def test_missing_dataset_json(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"dataset\.json is missing.*collect_demos"):
        load_episodes(tmp_path / "empty")
    with pytest.raises(DatasetError, match="does not exist"):
        load_episodes(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "fmt, match",
    [
        ("robojax.episodes/2", "different robojax version"),
        ("something/else", "not a robojax episode dataset"),
        (None, "unknown format"),
    ],
)
def test_wrong_format_version(tmp_path, fmt, match):
    path = _write(tmp_path / "ds")
    _edit_header(path, format=fmt)
    with pytest.raises(DatasetError, match=match):
        load_episodes(path)


def test_corrupt_dataset_json(tmp_path):
    path = _write(tmp_path / "ds")
    (path / "dataset.json").write_text('{"format": "robojax.episodes/1", ')
    with pytest.raises(DatasetError, match="not readable JSON"):
        load_episodes(path)


def test_missing_episode_file(tmp_path):
    path = _write(tmp_path / "ds")
    os.remove(path / "episodes" / "episode_000001.npz")
    with pytest.raises(DatasetError, match=r"episode_000001\.npz is missing"):
        load_episodes(path)


def test_length_mismatch(tmp_path):
    path = _write(tmp_path / "ds")
    obs, act = _episode(5)
    _rewrite_episode(path, observations=obs[:4])
    with pytest.raises(DatasetError, match=r"episode_000000\.npz: lengths .*observations"):
        load_episodes(path)


def test_extra_length_mismatch(tmp_path):
    path = _write(tmp_path / "ds")
    _rewrite_episode(path, latency_ms=np.zeros(2))
    with pytest.raises(DatasetError, match="latency_ms"):
        load_episodes(path)


@pytest.mark.parametrize(
    "name, value", [("observations", np.zeros((5, 4), np.float32)), ("actions", np.zeros((5, 2), np.float64))]
)
def test_shape_dtype_mismatch(tmp_path, name, value):
    path = _write(tmp_path / "ds")
    _rewrite_episode(path, **{name: value})
    with pytest.raises(DatasetError, match=f"{name} are .*declares"):
        load_episodes(path)


def test_nan_actions(tmp_path):
    path = _write(tmp_path / "ds")
    act = _episode(5)[1]
    act[3, 1] = np.nan
    _rewrite_episode(path, actions=act)
    with pytest.raises(DatasetError, match=r"NaN/inf at steps \[3\]"):
        load_episodes(path)


def test_expected_spec_mismatch(tmp_path):
    path = _write(tmp_path / "ds")
    with pytest.raises(DatasetError, match="action spec .*recorded on env 'toy'"):
        load_episodes(path, action_spec=ArraySpec((4,), np.float32, -1.0, 1.0))
    with pytest.raises(DatasetError, match="observation spec"):
        load_episodes(path, observation_spec=ArraySpec((38,), np.float32))


@pytest.mark.parametrize("cut", [0.5, 0.0])
def test_truncated_npz(tmp_path, cut):
    path = _write(tmp_path / "ds")
    file = path / "episodes" / "episode_000001.npz"
    data = file.read_bytes()
    file.write_bytes(data[: int(len(data) * cut)] if cut else b"not a zip at all")
    with pytest.raises(DatasetError, match=r"episode_000001\.npz is truncated or corrupt"):
        load_episodes(path)
