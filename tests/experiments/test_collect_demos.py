"""collect_demos end to end: writes a loadable C1 dataset and refuses to overwrite it."""

import pytest

from robojax.data.episodes import load_episodes
from tests.experiments.conftest import load_experiment

collect = load_experiment("collect_demos").collect


def test_collect_demos_writes_loadable_dataset(tmp_path):
    import envs

    out = str(tmp_path / "demos")
    summary = collect(
        "arm_pick_place", out, 3, num_envs=2, episode_length=12, only_successful=False, noise=0.05, progress=False
    )
    assert summary["written"] == 3 and summary["attempts"] == 4
    env = envs.make("arm_pick_place")
    ds = load_episodes(out, observation_spec=env.observation_spec, action_spec=env.action_spec)
    assert ds.env == "arm_pick_place" and ds.control_dt == pytest.approx(0.04)
    assert ds.discrete_action_dims == (3,) and len(ds) == 3
    for i, e in enumerate(ds.episodes):
        assert 1 <= len(e) <= 12 and e.success is False
        assert e.metadata["mode"] in ("left", "right") and e.metadata["key_index"] == i
        assert e.metadata["seed"] == 0 and e.metadata["noise"] == 0.05
    with pytest.raises(FileExistsError, match="--overwrite"):
        collect("arm_pick_place", out, 1, num_envs=2, episode_length=12, progress=False)
    # Not enough successes in 12 steps: a clear error, not a silent short dataset.
    with pytest.raises(RuntimeError, match="only 0/1 successful"):
        collect("arm_pick_place", out, 1, num_envs=2, episode_length=12, max_attempts=2, overwrite=True, progress=False)
