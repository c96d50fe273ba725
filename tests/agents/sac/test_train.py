"""The on-device loop on probe envs: bootstrapping, learning, exact resume, checkpoint errors."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robojax.agents.sac import learner
from robojax.agents.sac import train as sac_train
from robojax.agents.sac.config import SACConfig, TrainConfig
from robojax.checkpoint import CheckpointMismatchError, load_policy
from tests.agents.sac.probe_envs import make_probe

TINY = SACConfig(
    actor_hidden_dims=(16, 16),
    critic_hidden_dims=(16, 16),
    critic_ensemble_size=4,
    batch_size=64,
    actor_lr=3e-3,
    critic_lr=3e-3,
    temperature_lr=3e-3,
    tau=0.05,
)


def _q_values(state: learner.TrainState, obs: np.ndarray) -> np.ndarray:
    """Mean-over-ensemble Q of the deterministic action at each observation."""
    obs = jnp.asarray(obs)
    action = learner.act_deterministic(state, obs)
    q = state.networks.critic.apply(state.critic_params, learner.normalize_obs(state, obs), action)
    return np.asarray(q.mean(0))


def test_truncation_bootstraps_and_termination_does_not():
    config = TrainConfig(
        env="bootstrap_probe",
        num_envs=8,
        total_env_steps=4000,
        learning_starts=256,
        steps_per_iteration=100,
        eval_interval=4000,
        eval_episodes=2,
        progress_bar=False,
        sac=dataclasses.replace(TINY, discount=0.5, backup_entropy=False, utd_ratio=2),
    )
    result = sac_train.train(config, env_factory=make_probe)
    q_terminate, q_truncate = _q_values(result.state.learner, np.eye(2, dtype=np.float32))
    # Right: 1 and 1 / (1 - 0.5) = 2. Truncation as termination gives 1; bootstrapping from the
    # post-reset observation gives 5/3; ignoring termination gives about 1.9.
    assert q_terminate == pytest.approx(1.0, abs=0.1)
    assert q_truncate == pytest.approx(2.0, abs=0.1)


@pytest.fixture(scope="module")
def reach_config():
    return TrainConfig(
        env="reach_origin",
        num_envs=4,
        total_env_steps=1200,
        learning_starts=100,
        steps_per_iteration=25,
        eval_interval=200,
        eval_episodes=4,
        checkpoint_interval=300,
        progress_bar=False,
        sac=dataclasses.replace(TINY, utd_ratio=2),
    )


@pytest.fixture(scope="module")
def uninterrupted(reach_config, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    return sac_train.train(dataclasses.replace(reach_config, workdir=str(workdir)), env_factory=make_probe)


def test_learns_to_reach_the_origin(reach_config, uninterrupted):
    untrained = jax.jit(lambda k: learner.init(k, *_specs(reach_config), reach_config.sac))(jax.random.PRNGKey(0))
    evaluate = sac_train.make_evaluator(make_probe(reach_config.env, reach_config.eval_episodes))
    before = float(evaluate(untrained, jax.random.PRNGKey(1))["eval/return"])
    history = [e["eval/return"] for e in uninterrupted.eval_history]
    assert before < 16.0  # about the do-nothing return, 12.5
    assert uninterrupted.final_return > 22.0, history


def _specs(config):
    env = make_probe(config.env, 1)
    return env.observation_spec, env.action_spec


def test_run_directory_holds_logs_plot_and_policy(uninterrupted):
    workdir = uninterrupted.workdir
    for name in ("metrics.jsonl", "learning_curve.png", "config.json", "policy/policy.json", "tensorboard"):
        assert os.path.exists(os.path.join(workdir, name)), name
    params, metadata = load_policy(os.path.join(workdir, "policy"))
    assert metadata["env"] == "reach_origin"
    np.testing.assert_array_equal(
        params["actor_params"]["params"]["Dense_0"]["kernel"],
        np.asarray(uninterrupted.state.learner.actor_params["params"]["Dense_0"]["kernel"]),
    )


class _Killed(Exception):
    pass


def test_resume_after_a_kill_equals_the_uninterrupted_run(reach_config, uninterrupted, tmp_path, monkeypatch):
    config = dataclasses.replace(reach_config, workdir=str(tmp_path))
    real_update = sac_train.rlog.ProgressBar.update

    def kill_at_700(self, env_steps):
        real_update(self, env_steps)
        if env_steps == 700:  # after the 600-step checkpoint, before the next: work is lost
            raise _Killed()

    monkeypatch.setattr(sac_train.rlog.ProgressBar, "update", kill_at_700)
    with pytest.raises(_Killed):
        sac_train.train(config, env_factory=make_probe)
    monkeypatch.undo()
    assert sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()) == [300, 600]

    resumed = sac_train.train(dataclasses.replace(config, resume=True), env_factory=make_probe)
    expected = [(e["env_steps"], e["eval/return"]) for e in uninterrupted.eval_history]
    assert [(e["env_steps"], e["eval/return"]) for e in resumed.eval_history] == expected
    for a, b in zip(jax.tree.leaves(resumed.state.learner), jax.tree.leaves(uninterrupted.state.learner)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(resumed.state.replay.data.obs, uninterrupted.state.replay.data.obs)
    # The log has each step once: the killed run's steps past 600 were dropped on resume.
    steps = [r["step"] for r in map(json.loads, open(tmp_path / "metrics.jsonl")) if "eval/return" not in r]
    assert steps == sorted(set(steps)) == list(range(100, 1300, 100))


def test_resume_refuses_a_different_config_or_env(reach_config, uninterrupted):
    base = dataclasses.replace(reach_config, workdir=uninterrupted.workdir, resume=True)
    wider = dataclasses.replace(base, sac=dataclasses.replace(base.sac, critic_hidden_dims=(32, 32)))
    mismatch = r"config\.sac\.critic_hidden_dims: the checkpoint has \[16, 16\]"
    with pytest.raises(CheckpointMismatchError, match=mismatch):
        sac_train.train(wider, env_factory=make_probe)
    mismatch = r"(?s)env: the checkpoint has 'reach_origin'.*observation_spec\.shape"
    with pytest.raises(CheckpointMismatchError, match=mismatch):
        sac_train.train(dataclasses.replace(base, env="reach_origin_3d_obs"), env_factory=make_probe)


def test_bad_run_directories_give_clear_errors(reach_config, uninterrupted, tmp_path):
    with pytest.raises(FileExistsError, match="already holds checkpoints.*resume"):
        sac_train.train(dataclasses.replace(reach_config, workdir=uninterrupted.workdir), env_factory=make_probe)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        empty = dataclasses.replace(reach_config, workdir=str(tmp_path / "empty"), resume=True)
        sac_train.train(empty, env_factory=make_probe)
    (tmp_path / "file").write_text("x")
    os.makedirs(tmp_path / "run")
    (tmp_path / "run" / "checkpoints").write_text("not a directory")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        sac_train.train(dataclasses.replace(reach_config, workdir=str(tmp_path / "run")), env_factory=make_probe)


def test_resume_without_saved_buffers_keeps_the_learner(reach_config, tmp_path):
    config = dataclasses.replace(reach_config, workdir=str(tmp_path), total_env_steps=300, checkpoint_replay=False)
    first = sac_train.train(config, env_factory=make_probe)
    assert not os.path.exists(tmp_path / "checkpoints" / "300" / "buffers")
    resumed = sac_train.train(dataclasses.replace(config, resume=True, total_env_steps=400), env_factory=make_probe)
    assert int(resumed.state.replay.size) == 100  # only what was collected after the resume
    assert int(resumed.state.learner.critic_steps) > int(first.state.learner.critic_steps)


def test_demos_fill_half_of_every_batch(reach_config, tmp_path):
    from robojax.data import save_demos
    from robojax.data.replay import Transition

    n = 50
    demos = Transition(
        obs=np.full((n, 1), 0.5, np.float32),
        action=-np.ones((n, 1), np.float32),
        reward=np.ones(n, np.float32),
        next_obs=np.full((n, 1), 0.3, np.float32),
        terminated=np.zeros(n, bool),
        truncated=np.zeros(n, bool),
        intervention=np.zeros(n, bool),
    )
    save_demos(tmp_path / "demos.npz", demos)
    config = dataclasses.replace(
        reach_config, demo_path=str(tmp_path / "demos.npz"), total_env_steps=200, demo_capacity=64
    )
    env = make_probe(config.env, config.num_envs)
    state = sac_train.init_loop_state(jax.random.PRNGKey(0), env, config, demos)
    assert int(state.demo.size) == n and state.demo.capacity == 64
    batches = sac_train.sample_update_batches(jax.random.PRNGKey(1), state.replay, state.demo, config.sac)
    assert batches.reward.shape == (2, 64)
    np.testing.assert_array_equal(batches.reward[:, 32:], 1.0)  # the demo half
    result = sac_train.train(config, env_factory=make_probe)
    assert int(result.state.demo.size) == n
    with pytest.raises(ValueError, match="demo_capacity"):
        sac_train.init_loop_state(jax.random.PRNGKey(0), env, dataclasses.replace(config, demo_capacity=10), demos)
