"""The threaded host actor/learner loop on a numpy probe env: learning, shutdown, errors,
interventions, and resume without losing stored transitions."""

import dataclasses
import threading

import numpy as np
import pytest

from robojax import checkpoint as ckpt
from robojax.agents.sac import host_loop
from robojax.agents.sac.config import HostTrainConfig, SACConfig
from robojax.agents.sac.host_loop import HostLoopError
from robojax.agents.sac.interventions import KeyboardIntervention, ScriptedIntervention, SpaceMouseIntervention
from robojax.data import replay
from robojax.envs import host as host_envs
from robojax.envs.core import ArraySpec, EnvState, HostEnv

TINY = SACConfig(
    actor_hidden_dims=(16, 16),
    critic_hidden_dims=(16, 16),
    critic_ensemble_size=4,
    batch_size=64,
    utd_ratio=1,
    discount=0.5,
    actor_lr=3e-3,
    critic_lr=3e-3,
    temperature_lr=3e-3,
)
EPISODE = 10


class TargetProbe(HostEnv):
    """Numpy contextual bandit: obs is a target c in [-1, 1], reward 1 - |a - c|, 10-step episodes.

    Uniform random actions earn about 10 * (1 - 2/3) = 3.3 per episode, the optimum 10.
    `fail_at` raises inside `step` on that step (counted over the env's life).
    """

    def __init__(self, seed: int = 0, fail_at: int | None = None):
        self.rng = np.random.default_rng(seed)
        self.fail_at, self.steps = fail_at, 0
        self._t = self._return = 0

    @property
    def observation_spec(self):
        return ArraySpec((1,), np.float32)

    @property
    def action_spec(self):
        return ArraySpec((1,), np.float32, -np.ones(1, np.float32), np.ones(1, np.float32))

    def _state(self, obs, reward, truncated, final_obs, done):
        info = {
            "final_obs": final_obs,
            "episode_done": np.bool_(done),
            "episode_return": np.float32(self._return),
            "episode_success": np.bool_(False),
            "success": np.bool_(False),
        }
        return EnvState(
            physics=None,
            obs=obs,
            reward=np.float32(reward),
            terminated=np.bool_(False),
            truncated=np.bool_(truncated),
            info=info,
        )

    def _target(self):
        return self.rng.uniform(-1, 1, 1).astype(np.float32)

    def reset(self, key=None):
        if key is not None:
            self.rng = np.random.default_rng(int(np.asarray(key).sum()))
        self._t, self._return = 0, 0.0
        obs = self._target()
        return self._state(obs, 0.0, False, obs, False)

    def step(self, state, action):
        self.steps += 1
        if self.fail_at is not None and self.steps == self.fail_at:
            raise RuntimeError("boom: the robot's e-stop was pressed")
        reward = 1.0 - float(np.abs(np.asarray(action) - state.obs).sum())
        self._t += 1
        self._return += reward
        final_obs = self._target()
        done = self._t >= EPISODE
        state = self._state(final_obs, reward, done, final_obs, done)
        if done:  # autoreset: the returned obs starts a new episode, the info keeps the finished one's
            self._t, self._return = 0, 0.0
            state = state.replace(obs=self._target())
        return state


def _config(**kw):
    base = dict(
        env="target_probe",
        total_env_steps=1500,
        learning_starts=200,
        eval_interval=10_000,
        eval_episodes=5,
        log_interval=500,
        progress_bar=False,
        checkpoint_interval=10_000,
        sac=TINY,
    )
    return HostTrainConfig(**{**base, **kw})


def _loop_threads():
    return [t for t in threading.enumerate() if t.name.startswith("robojax-sac-")]


def test_learns_probe_and_shuts_down():
    result = host_loop.train(_config(), env_factory=TargetProbe)
    assert result.steps == 1500
    assert result.updates > 1000
    # Random actions earn ~3.3; the learned deterministic policy gets close to 10.
    assert result.final_return > 8.0, result.eval_history
    assert int(result.replay.size) == 1500
    assert not _loop_threads()


def test_env_exception_surfaces_and_threads_stop():
    with pytest.raises(HostLoopError, match="actor thread failed with RuntimeError: boom") as info:
        host_loop.train(_config(), env_factory=lambda: TargetProbe(fail_at=300))
    assert isinstance(info.value.__cause__, RuntimeError)
    assert not _loop_threads()


class WrongSpecProbe(TargetProbe):
    """Declares 2-D observations but emits 1-D ones: the learner's buffer insert refuses them."""

    @property
    def observation_spec(self):
        return ArraySpec((2,), np.float32)


def test_learner_exception_surfaces_and_threads_stop():
    with pytest.raises(HostLoopError, match="learner thread failed with ValueError: inserted item shape"):
        host_loop.train(_config(), env_factory=WrongSpecProbe)
    assert not _loop_threads()


def test_interventions_replace_action_and_go_to_both_buffers():
    source = ScriptedIntervention([(10, 20), (300, 310)], policy=lambda obs: np.array([0.5], np.float32))
    result = host_loop.train(_config(total_env_steps=400), env_factory=TargetProbe, intervention=source)
    stored = replay.contents(result.replay)
    flags = np.asarray(stored.intervention)
    expected = np.zeros(400, bool)
    expected[10:20] = expected[300:310] = True
    np.testing.assert_array_equal(flags, expected)
    np.testing.assert_array_equal(stored.action[expected], 0.5)  # the policy's action was replaced
    assert np.all(stored.action[~expected] != 0.5)
    assert result.interventions == 20
    demo = replay.contents(result.demo)
    assert int(result.demo.size) == 20 and np.all(demo.intervention)
    np.testing.assert_array_equal(demo.obs, stored.obs[expected])
    np.testing.assert_array_equal(demo.action, 0.5)


def test_resume_loses_no_transition(tmp_path):
    workdir = str(tmp_path / "run")
    # The env fails after 450 steps: the learner drains the queue and checkpoints what it stored.
    with pytest.raises(HostLoopError, match="checkpoint saved"):
        host_loop.train(
            _config(total_env_steps=900, checkpoint_interval=250, workdir=workdir),
            env_factory=lambda: TargetProbe(fail_at=451),
        )
    directory = f"{workdir}/checkpoints"
    with ckpt.Checkpointer(directory, create=False) as cp:
        latest = cp.latest_step()
    assert latest == 450  # 450 transitions stepped before the failure, every one stored
    saved_state = ckpt.restore_numpy(directory, latest)
    saved_buffers = ckpt.restore_numpy(directory, latest, item="buffers")
    assert int(saved_state["counters"]["env_steps"]) == 450
    assert int(saved_buffers["replay"]["size"]) == 450

    result = host_loop.train(
        _config(total_env_steps=900, checkpoint_interval=250, workdir=workdir, resume=True), env_factory=TargetProbe
    )
    assert result.steps == 900 and int(result.replay.size) == 900
    stored = replay.contents(result.replay)
    np.testing.assert_array_equal(stored.obs[:450], saved_buffers["replay"]["data"]["obs"][:450])

    with pytest.raises(ckpt.CheckpointMismatchError, match="discount"):
        host_loop.train(
            _config(total_env_steps=1000, workdir=workdir, resume=True, sac=dataclasses.replace(TINY, discount=0.9)),
            env_factory=TargetProbe,
        )


def test_keyboard_needs_a_tty():
    class NotATty:
        def isatty(self):
            return False

    with pytest.raises(RuntimeError, match="not a TTY"):
        KeyboardIntervention(1, stream=NotATty())


def test_spacemouse_without_pyspacemouse_is_a_clear_error():
    try:
        import pyspacemouse  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="pyspacemouse"):
            SpaceMouseIntervention(2)
    else:
        pytest.skip("pyspacemouse is installed")


def test_rescale_actions_maps_unit_box_onto_env_bounds():
    env = host_envs.make_gym_env("InvertedPendulum-v5")
    assert isinstance(env, host_envs.RescaleActions)
    assert np.all(env.action_spec.low == -1) and np.all(env.action_spec.high == 1)
    assert np.all(env.env.action_spec.high == 3)
    env.close()


def test_keyboard_reads_keys_without_blocking():
    import os
    import pty
    import time

    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "rb", buffering=0) as stream:
            keyboard = KeyboardIntervention(2, stream=stream, hold_s=30.0)
            assert keyboard.poll(None) is None  # nothing typed: the policy acts, and poll did not block
            os.write(master, b"dw")
            time.sleep(0.05)
            np.testing.assert_array_equal(keyboard.poll(None), [1.0, 1.0])
            os.write(master, b"a")
            time.sleep(0.05)
            np.testing.assert_array_equal(keyboard.poll(None), [-1.0, 0.0])  # new keys replace the held action
            keyboard.close()
    finally:
        os.close(master)
