"""A controller process loads and runs an artifact without any training-side package."""

import json
import os
import subprocess
import sys

import jax
import numpy as np

import robojax  # noqa: F401
from robojax.agents.sac import learner
from robojax.agents.sac.config import SACConfig
from robojax.agents.sac.export import export_sac, source_from_train_state
from robojax.envs.core import ArraySpec

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FORBIDDEN = (
    "flax",
    "optax",
    "orbax",
    "robojax.agents",
    "robojax.checkpoint",
    "robojax.envs",
    "robojax.data",
    "mujoco",
    "envs",
)

CHILD = """
import json, sys
import numpy as np
import robojax.deploy as deploy
policy = deploy.load(sys.argv[1])
action = policy(np.linspace(-1, 1, 24).astype(np.float32))
forbidden = json.loads(sys.argv[2])
loaded = sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in forbidden))
print(json.dumps({"action": action.tolist(), "loaded": loaded}))
"""


def test_load_and_call_import_no_training_code(tmp_path):
    obs_spec = ArraySpec((24,), np.float32, name="observation")
    act_spec = ArraySpec((3,), np.float32, -1.0, 1.0, name="action")
    config = SACConfig(
        actor_hidden_dims=(16, 16), critic_hidden_dims=(8,), critic_ensemble_size=2, normalize_observations=True
    )
    state = learner.init(jax.random.PRNGKey(0), obs_spec, act_spec, config)
    state = learner.update_observation_normalizer(state, np.random.default_rng(0).normal(2, 3, (64, 24)))
    out = export_sac(source_from_train_state(state, obs_spec, act_spec), tmp_path / "sac", control_dt=0.04)

    proc = subprocess.run(
        [sys.executable, "-c", CHILD, out, json.dumps(FORBIDDEN)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["loaded"] == [], f"robojax.deploy pulled in training-side modules: {result['loaded']}"
    expected = np.asarray(learner.act_deterministic(state, np.linspace(-1, 1, 24).astype(np.float32)))
    np.testing.assert_allclose(result["action"], expected, rtol=1e-5, atol=1e-6)
