"""Diffusion Policy -> artifact: parity with the learner's receding-horizon step (RTI and DDIM), the
RTI warm start carried by the artifact, the sidecar's chunking record, and the CLI on a saved run."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import robojax  # noqa: F401
import robojax.deploy as deploy
from robojax.agents.diffusion_policy import learner, receding_horizon, rti
from robojax.agents.diffusion_policy import train as dp_train
from robojax.agents.diffusion_policy.config import DiffusionPolicyConfig, InferenceConfig, TrainConfig
from robojax.agents.diffusion_policy.export import (
    export_diffusion_policy,
    load_dp_source,
    make_policy,
    receding_horizon_policy,
    source_from_train_state,
)
from robojax.config_utils import to_dict
from robojax.envs import Env, EnvState, EpisodeStatistics, TimeLimit, VmapWrapper
from robojax.envs.core import ArraySpec
from robojax.evaluation import make_episode_evaluator
from robojax.policy import batch_policy

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OBS_DIM, ACT_DIM, GRIPPER = 5, 3, 2
OBS_SPEC = ArraySpec((OBS_DIM,), np.float32, name="observation")
ACT_SPEC = ArraySpec((ACT_DIM,), np.float32, [-0.5, -0.5, -1.0], [0.5, 0.5, 1.0], name="action")
# Chi et al.'s horizons (To=2, Ta=8, Tp=16) with a tiny MLP denoiser and a short schedule.
CONFIG = DiffusionPolicyConfig(
    denoiser="mlp",
    mlp_hidden_dims=(32, 32),
    diffusion_step_embed_dim=16,
    obs_horizon=2,
    action_horizon=8,
    pred_horizon=16,
    num_train_timesteps=20,
)
RTI = InferenceConfig(inference="rti", ddim_steps=5, rti_start_step=3, rti_steps=3, rti_method="ddpm")
DDIM = InferenceConfig(inference="ddim", ddim_steps=5)
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def state():
    rng = np.random.default_rng(0)
    obs = rng.normal(1.0, 3.0, size=(256, OBS_DIM)).astype(np.float32)
    actions = rng.uniform(-0.4, 0.4, size=(256, ACT_DIM)).astype(np.float32)
    actions[:, GRIPPER] = np.where(rng.random(256) > 0.5, 1.0, -1.0)
    normalizers = learner.fit_normalizers(obs, actions, CONFIG, (GRIPPER,))
    s = learner.init(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, CONFIG, normalizers)
    # Larger weights than the initialiser's, so that different inputs give clearly different chunks.
    leaves, treedef = jax.tree.flatten(s.ema_params)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    leaves = [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    return s.replace(ema_params=jax.tree.unflatten(treedef, leaves))


def _observations(n):
    return np.random.default_rng(2).normal(1.0, 3.0, size=(n, OBS_DIM)).astype(np.float32)


def _learner_policy(state, inference):
    return receding_horizon.make_policy(
        state.ema_params,
        state.normalizers,
        CONFIG,
        inference,
        OBS_DIM,
        ACT_DIM,
        action_low=ACT_SPEC.low,
        action_high=ACT_SPEC.high,
    )


def _reference(state, inference, obs, seed):
    """The learner's own step over the sequence, keyed like the artifact: (use, next) = split(key)."""
    policy = _learner_policy(state, inference)
    step = jax.jit(policy.step)
    carry, key, actions = policy.init_carry(), jax.random.PRNGKey(seed), []
    for o in obs:
        use, key = jax.random.split(key)
        action, carry = step(carry, o, use)
        actions.append(np.asarray(action))
    return np.stack(actions)


def _keys(seed, n):
    key, out = jax.random.PRNGKey(seed), []
    for _ in range(n):
        use, key = jax.random.split(key)
        out.append(use)
    return out


def _to_actions(state, chunk):
    """Model-space chunk [1, Tp, A] -> the executed actions [Tp, A], as the learner's step does."""
    x = learner.actions_from_model(chunk[0], state.normalizers, CONFIG)
    x = rti.binarize_discrete(x, (GRIPPER,))
    return np.asarray(jnp.clip(x, ACT_SPEC.low, ACT_SPEC.high))


def test_rti_parity_warm_start_and_reset(state, tmp_path):
    out = export_diffusion_policy(
        source_from_train_state(state, OBS_SPEC, ACT_SPEC, env="toy"), tmp_path / "rti", inference=RTI, control_dt=0.1
    )
    policy = deploy.load(out, seed=3)
    obs = _observations(24)  # three chunks: cold, warm, warm
    got = np.stack([policy(o) for o in obs])
    np.testing.assert_allclose(got, _reference(state, RTI, obs, seed=3), **TOL)
    assert np.abs(got[:, :2]).max() > 1e-2  # not a degenerate all-zero policy

    # The sidecar records the chunking and the cost of each plan.
    side = policy.metadata
    chunking = side["action_chunking"]
    assert chunking["chunk_length"] == 16 and chunking["executed_steps"] == 8 and chunking["obs_horizon"] == 2
    assert chunking["inference"] == "rti" and chunking["warm_start"] and chunking["warm_timesteps"] == [3, 1, 0]
    assert chunking["nfe_first_chunk"] == 5 and chunking["nfe_per_chunk"] == 3
    assert chunking["nfe_per_action"] == pytest.approx(3 / 8)
    names = [c["name"] for c in side["carry"]]
    assert names == ["obs_history", "chunk", "index", "has_chunk"]
    assert side["carry"][1]["shape"] == [1, 16, ACT_DIM] and side["stochastic"]
    assert side["metadata"]["inference_config"]["rti_steps"] == 3
    assert side["normalization"]["action"]["discrete_dims"] == [GRIPPER]

    # Steps 9..16 come from the previous chunk that the artifact's carry holds, shifted by Ta and
    # denoised from K'=3: rebuild that plan from the carry after step 8 and compare.
    policy.reset()
    first = np.stack([policy(o) for o in obs[:8]])
    history, chunk, index, has_chunk = (jnp.asarray(c) for c in policy.carry)
    assert int(index) == 8 and bool(has_chunk)
    np.testing.assert_allclose(first, got[:8], **TOL)  # reset() restarted the carry and the key stream
    learner_policy = _learner_policy(state, RTI)
    key9 = _keys(3, 9)[8]
    history9 = jnp.concatenate([history[:, 1:], jnp.asarray(obs[8])[None, None]], axis=1)
    warm = learner_policy.extras["plan"](history9, chunk, key9, True)
    np.testing.assert_allclose(got[8:16], _to_actions(state, warm)[:8], **TOL)
    policy(obs[8])
    np.testing.assert_allclose(policy.carry[1], np.asarray(warm), **TOL)  # the new plan is carried on
    # A warm start from any other chunk, or a cold plan, gives other actions: the carry's chunk matters.
    for other in (
        learner_policy.extras["plan"](history9, jnp.zeros_like(chunk), key9, True),
        learner_policy.extras["plan"](history9, chunk, key9, False),
    ):
        assert np.abs(_to_actions(state, other)[:8, :2] - got[8:16, :2]).max() > 1e-3

    policy.reset()
    assert all(np.array_equal(a, b) for a, b in zip(policy.carry, policy._initial_carry))
    assert policy.steps == 0


def test_ddim_parity(state, tmp_path):
    out = export_diffusion_policy(
        source_from_train_state(state, OBS_SPEC, ACT_SPEC), tmp_path / "ddim", inference=DDIM, control_dt=0.1
    )
    policy = deploy.load(out, seed=11)
    obs = _observations(20)
    np.testing.assert_allclose(np.stack([policy(o) for o in obs]), _reference(state, DDIM, obs, seed=11), **TOL)
    chunking = policy.metadata["action_chunking"]
    assert chunking["inference"] == "ddim" and not chunking["warm_start"]
    assert chunking["nfe_first_chunk"] == chunking["nfe_per_chunk"] == 5 and chunking["cold_method"] == "ddim"


def test_saved_run_and_cli(state, tmp_path):
    run = tmp_path / "run"
    metadata = {
        "format": dp_train.RUN_FORMAT,
        "env": None,
        "control_dt": 0.05,
        "observation_spec": OBS_SPEC.to_dict(),
        "action_spec": ACT_SPEC.to_dict(),
        "discrete_action_dims": [GRIPPER],
        "config": to_dict(TrainConfig(dataset="demos", policy=CONFIG, inference=DDIM)),
    }
    dp_train.save_policy(str(run / "policy"), state, metadata)

    # In process: the run's recorded inference settings (DDIM, 5 steps) and control period are the defaults.
    source = load_dp_source(run)
    assert source.config == CONFIG and source.inference == DDIM and source.path == str(run / "policy")
    out = export_diffusion_policy(source, tmp_path / "default")
    policy = deploy.load(out, seed=5)
    obs = _observations(10)
    np.testing.assert_allclose(np.stack([policy(o) for o in obs]), _reference(state, DDIM, obs, seed=5), **TOL)
    assert policy.control_dt == 0.05 and policy.metadata["action_chunking"]["inference"] == "ddim"
    with pytest.raises(ValueError, match="checkpoint steps are not supported"):
        load_dp_source(run, step=100)

    # The command line: kind detected from policy.json's format, --inference overrides the run's.
    out = tmp_path / "cli"
    cmd = [
        sys.executable,
        "-m",
        "experiments.export_policy",
        f"--checkpoint={run}",
        f"--out={out}",
        "--inference=ddpm",
        "--action_steps=4",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "diffusion_policy" in proc.stdout
    with open(out / "artifact.json") as f:
        side = json.load(f)
    chunking = side["action_chunking"]
    assert chunking["inference"] == "ddpm" and chunking["executed_steps"] == 4
    assert chunking["nfe_first_chunk"] == chunking["nfe_per_chunk"] == CONFIG.num_train_timesteps
    assert side["metadata"]["inference_config"]["inference"] == "ddpm"
    assert side["source_checkpoint"]["sha256"] == deploy.sha256_tree(run / "policy")["sha256"]
    ddpm = InferenceConfig(inference="ddpm", ddim_steps=5, action_steps=4)
    policy = deploy.load(out, seed=0)
    np.testing.assert_allclose(np.stack([policy(o) for o in obs]), _reference(state, ddpm, obs, seed=0), **TOL)


class Drift(Env):
    """obs' = 0.9 obs + (action, 0, 0): a cheap env of the toy policy's shapes."""

    @property
    def observation_spec(self):
        return OBS_SPEC

    @property
    def action_spec(self):
        return ACT_SPEC

    def reset(self, key):
        obs_key, rng = jax.random.split(key)
        obs = jax.random.normal(obs_key, (OBS_DIM,))
        return EnvState(
            physics=(),
            obs=obs,
            reward=jnp.zeros(()),
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            info={"success": jnp.zeros((), bool)},
            rng=rng,
        )

    def step(self, state, action):
        obs = 0.9 * state.obs + jnp.pad(action, (0, OBS_DIM - ACT_DIM))
        return state.replace(obs=obs, reward=-jnp.sum(obs**2), info={"success": jnp.sum(obs**2) < 1.0})


def test_policy_batches_on_one_replan_clock_and_runs_in_the_evaluator(state):
    """The exported Policy's batched form is the learner's shared-clock batch (not a vmap of the
    single-env step, whose per-env replan cond would run the denoiser every step)."""
    policy = make_policy(source_from_train_state(state, OBS_SPEC, ACT_SPEC, env="toy"), RTI)
    reference = batch_policy(
        receding_horizon.make_policy(
            state.ema_params,
            state.normalizers,
            CONFIG,
            RTI,
            OBS_DIM,
            ACT_DIM,
            action_low=ACT_SPEC.low,
            action_high=ACT_SPEC.high,
        ),
        3,
    )
    assert policy.evals_per_action == reference.extras["nfe"]["per_action"] == pytest.approx(3 / 8)
    assert policy.executed_steps == 8 and policy.extras["nfe"] == reference.extras["nfe"]
    batched = batch_policy(policy, 3)
    assert batched.batch_size == 3 and batched.name == policy.name
    carry, ref_carry = batched.init_carry(), reference.init_carry()
    assert carry.index.shape == ()  # one clock for the batch
    obs = jnp.asarray(_observations(3))
    for t, key in enumerate(_keys(4, 10)):  # through the cold plan, steps from the chunk, and a warm replan
        action, carry = jax.jit(batched.step)(carry, obs + t, key)
        want, ref_carry = jax.jit(reference.step)(ref_carry, obs + t, key)
        np.testing.assert_allclose(action, want, **TOL)
    assert int(carry.index) == 2  # replanned at call 8

    env = VmapWrapper(EpisodeStatistics(TimeLimit(Drift(), 12)), 3)

    def build(params):  # what a training loop evaluates: EMA parameters and normalisers as jit arguments
        ema, normalizers = params
        return receding_horizon_policy(ema, normalizers, CONFIG, RTI, OBS_SPEC, ACT_SPEC)

    run = make_episode_evaluator(env, build, episode_length=12)
    out = jax.device_get(run((state.ema_params, state.normalizers), jax.random.PRNGKey(0)))
    assert out["length"].tolist() == [12, 12, 12] and out["truncated"].all()
    assert np.isfinite(out["return"]).all() and (out["return"] < 0).all()
