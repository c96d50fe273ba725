"""ppo.train on probe envs: run directory, learning, parity with make_train, vmapped seeds, exact resume, BC."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robojax import checkpoint as ckpt
from robojax.agents.ppo import learner
from robojax.agents.ppo import train as ppo_train
from robojax.agents.ppo.config import TrainConfig
from robojax.checkpoint import CheckpointMismatchError
from robojax.data import save_demos
from robojax.data.replay import Transition
from tests.agents.ppo.small import BATCH, SMALL
from tests.agents.sac.probe_envs import make_probe

CONFIG = TrainConfig(env="reach_origin", ppo=SMALL, checkpoint_interval=BATCH * 20, progress_bar=False)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    return ppo_train.train(dataclasses.replace(CONFIG, workdir=str(workdir)), env_factory=make_probe)


def test_learns_and_writes_the_run_directory(uninterrupted):
    workdir = uninterrupted.workdir
    for name in ("metrics.jsonl", "learning_curve.png", "config.json", "policy/policy.json", "tensorboard"):
        assert os.path.exists(os.path.join(workdir, name)), name
    assert sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit()) == [8000, 16000]
    # Evaluated after every call (10 iterations) with the deterministic policy; a good one returns
    # about 23.5 on reach_origin, doing nothing about 12.5.
    assert [e["env_steps"] for e in uninterrupted.eval_history] == [4000, 8000, 12000, 16000]
    assert uninterrupted.final_return > 21.0, [e["eval/return"] for e in uninterrupted.eval_history]
    assert uninterrupted.final_returns == [uninterrupted.final_return] and uninterrupted.seeds == [0]
    assert uninterrupted.steps == SMALL.total_env_steps
    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    train_steps = [r["step"] for r in records if "loss/total" in r]
    assert train_steps == list(range(BATCH, SMALL.total_env_steps + 1, BATCH))
    # The saved policy holds every seed (a leading seed axis) and the run's metadata.
    params, metadata = ckpt.load_policy(os.path.join(workdir, "policy"))
    assert metadata["format"] == "robojax.ppo/1" and metadata["seeds"] == [0] and metadata["env"] == "reach_origin"
    for saved, trained in zip(_leaves(params["policy_params"]), _leaves(uninterrupted.state.params["policy"])):
        np.testing.assert_array_equal(saved, trained)


def test_train_follows_make_train(uninterrupted):
    # The chunked host loop runs the same iterations as the whole run in one program.
    state, _ = jax.jit(learner.make_train(make_probe("reach_origin", 16), SMALL))(jax.random.PRNGKey(0))
    for a, b in zip(_leaves(state.params), _leaves(uninterrupted.state.params)):
        np.testing.assert_allclose(a, b[0], rtol=1e-4, atol=1e-5)


def test_vmapped_seeds_equal_single_seed_runs(uninterrupted):
    both = ppo_train.train(dataclasses.replace(CONFIG, ppo=dataclasses.replace(SMALL, num_seeds=2)), make_probe)
    second = ppo_train.train(dataclasses.replace(CONFIG, ppo=dataclasses.replace(SMALL, seed=1)), make_probe)
    assert both.seeds == [0, 1]
    for i, single in enumerate((uninterrupted, second)):
        for a, b in zip(_leaves(both.state.params), _leaves(single.state.params)):
            np.testing.assert_allclose(a[i], b[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(both.final_returns[i], single.final_return, rtol=1e-4)
        assert both.eval_history[-1][f"eval/return_seed{i}"] == pytest.approx(single.final_return, rel=1e-4)
    assert both.final_return == pytest.approx(np.mean(both.final_returns))
    assert not np.allclose(_leaves(both.state.params)[0][0], _leaves(both.state.params)[0][1])


class _Killed(Exception):
    pass


def test_resume_after_a_kill_equals_the_uninterrupted_run(uninterrupted, tmp_path, monkeypatch):
    config = dataclasses.replace(CONFIG, workdir=str(tmp_path))
    real_update = ppo_train.rlog.ProgressBar.update

    def kill_at_12000(self, env_steps):
        real_update(self, env_steps)
        if env_steps == 12000:  # after the 8000-step checkpoint, before the next: work is lost
            raise _Killed()

    monkeypatch.setattr(ppo_train.rlog.ProgressBar, "update", kill_at_12000)
    with pytest.raises(_Killed):
        ppo_train.train(config, env_factory=make_probe)
    monkeypatch.undo()
    assert sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()) == [8000]

    resumed = ppo_train.train(dataclasses.replace(config, resume=True), env_factory=make_probe)
    for a, b in zip(_leaves(resumed.state), _leaves(uninterrupted.state)):  # params, Adam, envs, rng
        np.testing.assert_array_equal(a, b)
    expected = [(e["env_steps"], e["eval/return"]) for e in uninterrupted.eval_history]
    assert [(e["env_steps"], e["eval/return"]) for e in resumed.eval_history] == expected
    steps = [r["step"] for r in map(json.loads, open(tmp_path / "metrics.jsonl")) if "loss/total" in r]
    assert steps == list(range(BATCH, SMALL.total_env_steps + 1, BATCH))  # each once


def test_resume_refuses_another_config_and_bad_directories(uninterrupted, tmp_path):
    base = dataclasses.replace(CONFIG, workdir=uninterrupted.workdir, resume=True)
    other = dataclasses.replace(base, ppo=dataclasses.replace(SMALL, learning_rate=1e-3))
    with pytest.raises(CheckpointMismatchError, match=r"config\.ppo\.learning_rate"):
        ppo_train.train(other, env_factory=make_probe)
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        ppo_train.train(dataclasses.replace(base, resume=False), env_factory=make_probe)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ppo_train.train(dataclasses.replace(base, workdir=str(tmp_path / "empty")), env_factory=make_probe)
    # A finished run resumed with a later evaluation interval only evaluates again.
    again = ppo_train.train(
        dataclasses.replace(base, ppo=dataclasses.replace(SMALL, eval_interval=BATCH * 20)), make_probe
    )
    assert again.steps == SMALL.total_env_steps and again.final_return == pytest.approx(uninterrupted.final_return)


def test_bc_init_and_value_warmup_through_train(tmp_path):
    # Demos of a proportional controller towards the origin, in a demo .npz.
    obs = np.asarray(jax.random.uniform(jax.random.PRNGKey(7), (2048, 1), minval=-1.0, maxval=1.0))
    actions = np.asarray(0.8 * jnp.tanh(-5.0 * obs))
    n = len(obs)
    save_demos(
        tmp_path / "demos.npz",
        Transition(
            obs=obs,
            action=actions,
            reward=np.zeros(n, np.float32),
            next_obs=obs,
            terminated=np.zeros(n, bool),
            truncated=np.zeros(n, bool),
            intervention=np.zeros(n, bool),
        ),
    )
    ppo = dataclasses.replace(
        SMALL,
        total_env_steps=BATCH * 3,
        eval_interval=BATCH * 2,
        bc_demo_path=str(tmp_path / "demos.npz"),
        bc_steps=400,
        value_warmup_iterations=2,
    )
    config = dataclasses.replace(CONFIG, ppo=ppo, checkpoint_interval=BATCH * 2, workdir=str(tmp_path / "run"))
    result = ppo_train.train(config, env_factory=make_probe)
    records = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    bc = [r for r in records if "bc/nll_first" in r]
    assert len(bc) == 1 and bc[0]["bc/nll_last"] < 0.5 * bc[0]["bc/nll_first"]
    # The cloned policy already reaches the origin: evaluated right after the two value-only iterations.
    assert result.eval_history[0]["env_steps"] == 2 * BATCH and result.eval_history[0]["eval/return"] > 21.0
    # Three iterations in calls of two: the second call's spare iteration leaves the state as it is.
    assert [e["env_steps"] for e in result.eval_history] == [2 * BATCH, 3 * BATCH]
    assert int(result.state.iteration[0]) == 3 and result.steps == int(result.state.env_steps[0]) == 3 * BATCH
    assert [r["step"] for r in records if "loss/total" in r] == [BATCH, 2 * BATCH, 3 * BATCH]
    # The warm-up kept the cloned policy exactly and trained the value; the policy moves afterwards.
    env = make_probe("reach_origin", 16)
    learning = ppo_train.learning_config(config)
    cloned, _ = ppo_train.make_bc(env, learning)(
        ppo_train.make_init(env, learning)(jax.random.PRNGKey(0)[None]), jnp.asarray(obs), jnp.asarray(actions)
    )
    after_warmup = ckpt.restore_numpy(tmp_path / "run" / "checkpoints", 2 * BATCH)
    for a, b in zip(_leaves(after_warmup["params"]["policy"]), _leaves(cloned.params["policy"])):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(_leaves(after_warmup["params"]["value"])[0], _leaves(cloned.params["value"])[0])
    assert not np.array_equal(_leaves(result.state.params["policy"])[0], _leaves(cloned.params["policy"])[0])


def test_bad_demo_paths_and_env_factories_raise_clear_errors(tmp_path):
    ppo = dataclasses.replace(SMALL, bc_demo_path=str(tmp_path / "missing.npz"), bc_steps=10)
    with pytest.raises(FileNotFoundError, match="demo file not found"):
        ppo_train.train(dataclasses.replace(CONFIG, ppo=ppo), env_factory=make_probe)
    with pytest.raises(ValueError, match="expected num_envs=16"):
        ppo_train.train(CONFIG, env_factory=lambda name, n: make_probe(name, 4))


def test_bc_demos_load_from_an_episode_dataset_and_check_the_spaces(tmp_path):
    from robojax.data.episodes import DatasetError, EpisodeWriter

    env = make_probe("reach_origin", 4)
    obs_spec, act_spec = env.observation_spec, env.action_spec
    rng = np.random.default_rng(0)
    episodes = [
        (rng.uniform(-1, 1, (t, 1)).astype(np.float32), rng.uniform(-1, 1, (t, 1)).astype(np.float32)) for t in (3, 5)
    ]
    with EpisodeWriter(tmp_path / "data", obs_spec, act_spec, env="reach_origin") as writer:
        for o, a in episodes:
            writer.add_episode(o, a)
    obs, actions = ppo_train.load_bc_demos(str(tmp_path / "data"), obs_spec, act_spec)
    np.testing.assert_array_equal(obs, np.concatenate([o for o, _ in episodes]))
    np.testing.assert_array_equal(actions, np.concatenate([a for _, a in episodes]))
    other = make_probe("reach_origin_3d_obs", 4).observation_spec
    with pytest.raises(DatasetError, match="observation spec"):
        ppo_train.load_bc_demos(str(tmp_path / "data"), other, act_spec)
