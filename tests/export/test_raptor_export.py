"""RAPTOR student -> artifact: parity with `student_step` over a sequence (GRU state carried by the
artifact), reset, the sidecar's recurrent-state record, every source layout, and the CLI's kind detection."""

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
from robojax.agents.raptor import networks as S
from robojax.agents.raptor.export import (
    RaptorSource,
    export_raptor_student,
    load_raptor_source,
    save_student_npz,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOL = dict(rtol=1e-5, atol=1e-5)
STEPS = 20


@pytest.fixture(scope="module")
def params():
    p = S.init_student(jax.random.PRNGKey(0))
    # Random everything, including the stored h0 and the biases (zeros at init), so none is skipped unseen.
    leaves, treedef = jax.tree.flatten(p)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    leaves = [x + 0.5 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    return jax.tree.unflatten(treedef, leaves)


def _observations(n=STEPS):
    return np.random.default_rng(0).normal(size=(n, S.OBS_SIZE)).astype(np.float32)


def _reference(params, obs):
    """The learner's own step: student_step from the stored h0, hidden state carried across calls."""
    step = jax.jit(S.student_step)
    h, actions = S.initial_carry((), params), []
    for o in obs:
        a, h = step(params, h, o)
        actions.append(np.asarray(a))
    return np.stack(actions), np.asarray(h)


def test_gru_parity_state_and_reset(params, tmp_path):
    out = export_raptor_student(RaptorSource(params, env="quadrotor_hover"), tmp_path / "a", control_dt=0.01)
    policy = deploy.load(out)
    obs = _observations()
    expected, h_final = _reference(params, obs)
    got = np.stack([policy(o) for o in obs])
    np.testing.assert_allclose(got, expected, **TOL)
    np.testing.assert_allclose(policy.carry[0], h_final, **TOL)
    # The hidden state matters: from h0 again, the last observation gives another action.
    a_fresh, _ = S.student_step(params, S.initial_carry((), params), obs[-1])
    assert np.abs(np.asarray(a_fresh) - got[-1]).max() > 1e-3

    policy.reset()
    np.testing.assert_allclose(policy.carry[0], np.asarray(params["params"]["initial_hidden_state"]), rtol=0, atol=0)
    np.testing.assert_allclose(np.stack([policy(o) for o in obs[:5]]), expected[:5], **TOL)

    side = policy.metadata
    assert side["carry"] == [{"name": "", "shape": [S.HIDDEN_SIZE], "dtype": "float32"}]
    assert side["metadata"]["recurrent_state"]["shape"] == [S.HIDDEN_SIZE]
    assert side["metadata"]["parameters"] == S.PAPER_PARAMETER_COUNT
    assert side["metadata"]["learner"] == "raptor" and not side["stochastic"]
    assert side["observation_spec"]["shape"] == [S.OBS_SIZE] and side["action_spec"]["high"] == [1.0] * 4
    assert side["control_rate_hz"] == pytest.approx(100.0)


def test_sources_npz_checkpoint_and_cli(params, tmp_path):
    from robojax.agents.raptor import learner
    from robojax.agents.raptor.config import DistillConfig, RaptorConfig
    from robojax.config_utils import to_dict

    obs = _observations()
    expected, _ = _reference(params, obs)

    # A numpy weights file (networks.numpy_parameters layout) with its metadata.
    npz = save_student_npz(params, tmp_path / "student.npz", {"env": "quadrotor_hover", "control_dt": 0.01})
    source = load_raptor_source(npz)
    assert source.env == "quadrotor_hover" and source.control_dt == 0.01
    policy = deploy.load(export_raptor_student(source, tmp_path / "npz"))
    np.testing.assert_allclose(np.stack([policy(o) for o in obs]), expected, **TOL)
    assert policy.metadata["source_checkpoint"]["sha256"] == deploy.sha256_tree(npz)["sha256"]

    # A RAPTOR run's layout: config.json and checkpoints/student/<epoch> holding a DistillState.
    run = tmp_path / "run"
    metadata = {"format": "robojax.raptor/1", "config": to_dict(RaptorConfig(num_teachers=2))}
    state = learner.init_distill(jax.random.PRNGKey(3), DistillConfig())
    state = state.replace(params=params, epoch=np.int32(7))
    with ckpt.Checkpointer(run / "checkpoints" / "student") as c:
        c.save(7, state, metadata=metadata)
    with open(run / "config.json", "w") as f:
        json.dump(metadata, f)
    for path in (run, run / "checkpoints" / "student", run / "checkpoints" / "student" / "7"):
        source = load_raptor_source(path)
        assert source.kind == "gru" and source.step == 7 and source.env == "quadrotor_track"
        assert source.path == str(run / "checkpoints" / "student" / "7")
    with pytest.raises(FileNotFoundError, match="no checkpoint for step 3"):
        load_raptor_source(run, step=3)

    # The command line: detected as RAPTOR from config.json, control period from the quadrotor task.
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "experiments.export_policy", f"--checkpoint={run}", f"--out={out}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "raptor_student" in proc.stdout
    policy = deploy.load(out)
    np.testing.assert_allclose(np.stack([policy(o) for o in obs]), expected, **TOL)
    side = policy.metadata
    assert side["control_dt"] == pytest.approx(0.01) and side["metadata"]["checkpoint_step"] == 7
    assert side["source_checkpoint"]["items"] == ["state", "metadata"]

    # Anything else is refused with the list of accepted kinds; DP flags are refused for a student.
    other = tmp_path / "other"
    other.mkdir()
    with open(other / "policy.json", "w") as f:
        json.dump({"format": "robojax.world_model/1"}, f)
    bad = [sys.executable, "-m", "experiments.export_policy", f"--out={tmp_path / 'bad'}"]
    proc = subprocess.run(bad + [f"--checkpoint={other}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "robojax.world_model/1" in proc.stderr and "sac:" in proc.stderr and "diffusion_policy:" in proc.stderr
    assert "ebt_policy:" in proc.stderr
    assert "raptor:" in proc.stderr
    proc = subprocess.run(
        bad + [f"--checkpoint={npz}", "--inference=rti"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode != 0 and "apply to Diffusion Policy only" in proc.stderr
    assert not (tmp_path / "bad").exists()
