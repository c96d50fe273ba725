"""SAC -> artifact: parity with the learner's actions, every checkpoint layout, and the CLI."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import robojax  # noqa: F401
import robojax.deploy as deploy
from robojax import checkpoint as ckpt
from robojax.agents.sac import learner
from robojax.agents.sac.config import SACConfig, TrainConfig
from robojax.agents.sac.export import export_sac, load_sac_source, source_from_train_state
from robojax.config_utils import to_dict
from robojax.envs.core import ArraySpec

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# arm_reach's spaces: 24-d observation, 3-d Cartesian delta action.
OBS_SPEC = ArraySpec((24,), np.float32, name="observation")
ACT_SPEC = ArraySpec((3,), np.float32, -1.0, 1.0, name="action")
CONFIG = SACConfig(
    actor_hidden_dims=(32, 32), critic_hidden_dims=(16,), critic_ensemble_size=2, normalize_observations=True
)


@pytest.fixture(scope="module")
def state():
    s = learner.init(jax.random.PRNGKey(0), OBS_SPEC, ACT_SPEC, CONFIG)
    # Non-trivial statistics: means far from 0 and scales far from 1, so skipping normalisation shows.
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 5.0, size=(512, 24)).astype(np.float32) * np.linspace(0.1, 4, 24, dtype=np.float32)
    s = learner.update_observation_normalizer(s, data)
    assert float(s.obs_normalizer.count) == 512
    return s


def _observations(n=16):
    rng = np.random.default_rng(1)
    return (rng.normal(3.0, 5.0, size=(n, 24)) * np.linspace(0.1, 4, 24)).astype(np.float32)


def _metadata():
    return {
        "format": "robojax.sac.loop/1",
        "env": "arm_reach",
        "observation_spec": OBS_SPEC.to_dict(),
        "action_spec": ACT_SPEC.to_dict(),
        "config": to_dict(TrainConfig(env="arm_reach", sac=CONFIG)),
    }


def test_deterministic_parity_with_learner(state, tmp_path):
    out = export_sac(source_from_train_state(state, OBS_SPEC, ACT_SPEC, "arm_reach"), tmp_path / "det", control_dt=0.04)
    policy = deploy.load(out)
    obs = _observations()
    expected = np.asarray(learner.act_deterministic(state, obs))
    got = np.stack([policy(o) for o in obs])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # The normaliser is inside the artifact: without it the actions would differ.
    raw = np.asarray(
        learner.act_deterministic(
            state.replace(config=SACConfig(**{**CONFIG.__dict__, "normalize_observations": False})), obs
        )
    )
    assert np.abs(raw - expected).max() > 1e-2
    side = policy.metadata
    stats = side["normalization"]["observation"]
    np.testing.assert_allclose(stats["mean"], np.asarray(state.obs_normalizer.mean), rtol=1e-6)
    np.testing.assert_allclose(stats["std"], np.sqrt(np.asarray(state.obs_normalizer.var) + 1e-6), rtol=1e-6)
    assert stats["applied"] and side["carry"] == [] and not side["stochastic"]
    assert side["metadata"]["learner"] == "sac" and side["metadata"]["sac_config"]["actor_hidden_dims"] == [32, 32]


def test_stochastic_parity_with_learner(state, tmp_path):
    out = export_sac(
        source_from_train_state(state, OBS_SPEC, ACT_SPEC), tmp_path / "sto", control_dt=0.04, deterministic=False
    )
    policy = deploy.load(out, seed=7)
    obs = _observations(3)
    key = jax.random.PRNGKey(7)
    for o in obs:  # the artifact splits its key each step: (use, next) = split(key)
        use, key = jax.random.split(key)
        np.testing.assert_allclose(policy(o), np.asarray(learner.act(state, o, use)), rtol=1e-5, atol=1e-6)


def test_sources_policy_dir_checkpoint_and_cli(state, tmp_path):
    run = tmp_path / "run"
    ckpt.save_policy(
        run / "policy", {"actor_params": state.actor_params, "obs_normalizer": state.obs_normalizer}, _metadata()
    )
    with ckpt.Checkpointer(run / "checkpoints") as c:
        c.save(100, {"learner": state, "env_steps": np.int32(100)}, metadata=_metadata())
    obs = _observations(4)
    expected = np.asarray(learner.act_deterministic(state, obs))
    for path, step in (
        (run, None),
        (run / "policy", None),
        (run, 100),
        (run / "checkpoints", None),
        (run / "checkpoints" / "100", None),
    ):
        source = load_sac_source(path, step=step)
        assert source.env == "arm_reach" and source.config == CONFIG
        out = export_sac(source, tmp_path / "a", control_dt=0.04, overwrite=True)
        policy = deploy.load(out)
        np.testing.assert_allclose(np.stack([policy(o) for o in obs]), expected, rtol=1e-5, atol=1e-6)
        src = policy.metadata["source_checkpoint"]
        assert len(src["sha256"]) == 64 and src["num_files"] > 0
        assert policy.metadata["metadata"]["checkpoint_step"] == (None if src["path"].endswith("policy") else 100)
    with pytest.raises(FileNotFoundError):
        load_sac_source(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no checkpoint for step 5"):
        load_sac_source(run, step=5)

    # The command line, lowering for cuda too (it serialises on a CPU-only machine).
    out = tmp_path / "cli"
    cmd = [
        sys.executable,
        "-m",
        "experiments.export_policy",
        f"--checkpoint={run}",
        f"--out={out}",
        "--platforms=cpu,cuda",
        "--control_dt=0.04",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wrote" in proc.stdout
    with open(out / "artifact.json") as f:
        side = json.load(f)
    assert side["platforms"] == ["cpu", "cuda"]
    assert side["source_checkpoint"]["sha256"] == deploy.sha256_tree(run / "policy")["sha256"]
    policy = deploy.load(out)
    np.testing.assert_allclose(np.stack([policy(o) for o in obs]), expected, rtol=1e-5, atol=1e-6)
    # A second export to the same place is refused without --overwrite, with a clear message.
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "already exists" in proc.stderr
