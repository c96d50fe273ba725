"""EBT-Policy -> artifact: parity with the learner's energy-descent step (fixed K; adaptive while-loop
with warm start and escalation), the plan's energy carried by the artifact, the sidecar, and the CLI."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import robojax  # noqa: F401
import robojax.deploy as deploy
from robojax.agents.ebt_policy import learner, receding_horizon
from robojax.agents.ebt_policy import train as ebt_train
from robojax.agents.ebt_policy.config import EBTPolicyConfig, InferenceConfig, TrainConfig
from robojax.agents.ebt_policy.export import export_ebt_policy, load_ebt_source, source_from_train_state
from robojax.config_utils import to_dict
from robojax.envs.core import ArraySpec
from robojax.policy import spec_action_bounds

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OBS_DIM, ACT_DIM, GRIPPER = 5, 3, 2
OBS_SPEC = ArraySpec((OBS_DIM,), np.float32, name="observation")
ACT_SPEC = ArraySpec((ACT_DIM,), np.float32, [-0.5, -0.5, -1.0], [0.5, 0.5, 1.0], name="action")
CONFIG = EBTPolicyConfig(
    width=16, obs_layers=1, action_layers=1, num_heads=2, pred_horizon=4, action_horizon=2, step_size=100.0
)
FIXED = InferenceConfig(inference_steps=2)
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def state():
    rng = np.random.default_rng(0)
    obs = rng.normal(1.0, 3.0, size=(256, OBS_DIM)).astype(np.float32)
    actions = rng.uniform(-0.4, 0.4, size=(256, ACT_DIM)).astype(np.float32)
    actions[:, GRIPPER] = np.where(rng.random(256) > 0.5, 1.0, -1.0)
    normalizers = learner.fit_normalizers(obs, actions, CONFIG, (GRIPPER,))
    s = learner.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, CONFIG, normalizers)
    leaves, treedef = jax.tree.flatten(s.ema_params)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    leaves = [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    return s.replace(ema_params=jax.tree.unflatten(treedef, leaves))


def _observations(n):
    return np.random.default_rng(2).normal(1.0, 3.0, size=(n, OBS_DIM)).astype(np.float32)


def _reference(state, inference, obs, seed):
    """The learner's own step over the sequence, keyed like the artifact: (use, next) = split(key)."""
    policy = receding_horizon.make_policy(
        state.ema_params, state.normalizers, CONFIG, inference, OBS_DIM, ACT_DIM, **spec_action_bounds(ACT_SPEC)
    )
    step = jax.jit(policy.step)
    carry, key, actions, energies = policy.init_carry(), jax.random.PRNGKey(seed), [], []
    for o in obs:
        use, key = jax.random.split(key)
        action, carry = step(carry, o, use)
        actions.append(np.asarray(action))
        energies.append(float(carry.plan_info["energy"][0]))
    return np.stack(actions), energies


def test_fixed_step_parity_and_sidecar(state, tmp_path):
    out = export_ebt_policy(
        source_from_train_state(state, OBS_SPEC, ACT_SPEC, env="toy"), tmp_path / "k2", inference=FIXED, control_dt=0.1
    )
    policy = deploy.load(out, seed=3)
    obs = _observations(8)
    got = np.stack([policy(o) for o in obs])
    want, energies = _reference(state, FIXED, obs, seed=3)
    np.testing.assert_allclose(got, want, **TOL)
    assert np.abs(got[:, :2]).max() > 1e-2 and set(np.unique(got[:, GRIPPER])) <= {-1.0, 1.0}
    side = policy.metadata
    chunking = side["action_chunking"]
    assert chunking["inference"] == "ebt" and chunking["descent_steps"] == 2 and chunking["executed_steps"] == 2
    assert chunking["forward_equivalents_per_plan"] == 7 and side["stochastic"]
    assert side["metadata"]["learner"] == "ebt_policy" and side["normalization"]["action"]["discrete_dims"] == [2]
    names = [c["name"] for c in side["carry"]]
    assert names[:4] == ["obs_history", "chunk", "index", "has_chunk"] and len(names) == 8  # + plan_info
    # The carry holds the current plan's energy (the uncertainty a controller can read).
    carried = [np.asarray(c) for c in policy.carry]
    assert any(c.shape == (1,) and np.isclose(c[0], energies[-1], rtol=1e-5) for c in carried[4:])


def test_adaptive_warm_escalating_parity(state, tmp_path):
    # A threshold between the plans' energies so that some plans escalate and some do not.
    _, energies = _reference(
        state, InferenceConfig(adaptive=True, grad_tol=1e-3, warm_start=True), _observations(12), 5
    )
    threshold = float(np.median(energies))
    inference = InferenceConfig(
        adaptive=True,
        grad_tol=1e-3,
        max_steps=4,
        warm_start=True,
        escalate=True,
        energy_threshold=threshold,
        escalate_steps=2,
        escalate_samples=3,
    )
    out = export_ebt_policy(
        source_from_train_state(state, OBS_SPEC, ACT_SPEC), tmp_path / "adaptive", inference=inference, control_dt=0.1
    )
    policy = deploy.load(out, seed=5)
    obs = _observations(12)
    np.testing.assert_allclose(np.stack([policy(o) for o in obs]), _reference(state, inference, obs, 5)[0], **TOL)


def test_saved_run_and_cli(state, tmp_path):
    run = tmp_path / "run"
    metadata = {
        "format": ebt_train.RUN_FORMAT,
        "env": None,
        "control_dt": 0.05,
        "observation_spec": OBS_SPEC.to_dict(),
        "action_spec": ACT_SPEC.to_dict(),
        "discrete_action_dims": [GRIPPER],
        "config": to_dict(TrainConfig(dataset="demos", policy=CONFIG, inference=FIXED)),
    }
    ebt_train.save_policy(str(run / "policy"), state, metadata)
    source = load_ebt_source(run)
    assert source.config == CONFIG and source.inference == FIXED and source.path == str(run / "policy")
    with pytest.raises(ValueError, match="checkpoint steps are not supported"):
        load_ebt_source(run, step=100)
    out = tmp_path / "cli"
    cmd = [
        sys.executable,
        "-m",
        "experiments.export_policy",
        f"--checkpoint={run}",
        f"--out={out}",
        "--inference_steps=3",
        "--num_samples=2",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ebt_policy" in proc.stdout and "forward equivalents/plan=20" in proc.stdout
    with open(out / "artifact.json") as f:
        side = json.load(f)
    assert side["metadata"]["inference_config"]["inference_steps"] == 3 and side["control_dt"] == 0.05
    obs = _observations(6)
    policy = deploy.load(out, seed=0)
    want, _ = _reference(state, InferenceConfig(inference_steps=3, num_samples=2), obs, seed=0)
    np.testing.assert_allclose(np.stack([policy(o) for o in obs]), want, **TOL)
    # A Diffusion Policy flag on an EBT-Policy is refused.
    bad = subprocess.run(
        cmd[:4] + [f"--out={tmp_path / 'bad'}", "--ddim_steps=4"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert bad.returncode != 0 and "apply to Diffusion Policy only" in bad.stderr
