"""The gymnasium bridge, both ways.

Real tasks are checked with gymnasium's own `check_env`; the autoreset and error paths run on a
tiny pure-JAX probe env that compiles in well under a second. Repeated `gymnasium.make` calls with
the same kwargs share one robojax env object (and so its compiled functions), which keeps the
real-task tests to one compile per task.
"""

import functools
import importlib

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

import envs
from robojax.envs import (
    ArraySpec,
    AutoResetWrapper,
    Env,
    EnvState,
    EpisodeStatistics,
    HostEnv,
    TimeLimit,
    VmapWrapper,
)
from robojax.envs.gym_bridge import (
    FromGymnasium,
    GymnasiumEnv,
    GymnasiumVectorEnv,
    make_gymnasium_env,
)

STEP_SIZE = 0.1

# robojax observations are unbounded, and the probe env has no gymnasium spec: check_env warns.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*Box observation space (minimum|maximum) value"),
    pytest.mark.filterwarnings("ignore:.*Not able to test alternative render modes"),
]


class DriftEnv(Env):
    """obs = position (2,), moved by STEP_SIZE * action; terminates after a random 2..4 steps."""

    @property
    def observation_spec(self):
        return ArraySpec((2,), np.float32, name="observation")

    @property
    def action_spec(self):
        return ArraySpec((2,), np.float32, -1.0, 1.0, name="action")

    @property
    def dt(self):
        return 0.1

    def reset(self, key):
        k_pos, k_len, rng = jax.random.split(key, 3)
        pos = jax.random.uniform(k_pos, (2,), jnp.float32, -1.0, 1.0)
        return EnvState(
            physics=pos,
            obs=pos,
            reward=jnp.zeros((), jnp.float32),
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            episode={"t": jnp.zeros((), jnp.int32), "horizon": jax.random.randint(k_len, (), 2, 5)},
            info={"success": jnp.zeros((), bool)},
            metrics={"distance": jnp.linalg.norm(pos)},
            rng=rng,
        )

    def step(self, state, action):
        pos = state.physics + STEP_SIZE * action
        t = state.episode["t"] + 1
        dist = jnp.linalg.norm(pos)
        return state.replace(
            physics=pos,
            obs=pos,
            reward=-dist,
            terminated=t >= state.episode["horizon"],
            info={"success": dist < 0.5},
            metrics={"distance": dist},
            episode={**state.episode, "t": t},
        )


@functools.cache
def drift_stack(num_envs=None, episode_length=100):
    """The probe env in the standard wrapper stack; cached so tests share its compiled functions."""
    env = EpisodeStatistics(TimeLimit(DriftEnv(), episode_length))
    if num_envs is not None:
        env = AutoResetWrapper(VmapWrapper(env, num_envs))
    return env


def _task_or_skip(name):
    """Skip a registered task whose module is not written yet (tasks land concurrently)."""
    try:
        envs.task_class(name)
    except ModuleNotFoundError as e:
        if e.name is not None and e.name.startswith("envs."):
            pytest.skip(f"{e.name} does not exist yet")
        raise


# ---- robojax -> gymnasium: single env -----------------------------------------------------------
@pytest.mark.parametrize("name", envs.names())
def test_check_env_passes_for_every_registered_task(name):
    _task_or_skip(name)
    env = gymnasium.make(envs.gymnasium_id(name))
    assert isinstance(env.unwrapped, GymnasiumEnv)
    check_env(env.unwrapped)  # also re-makes it from its spec for the close check
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs in env.observation_space
    assert isinstance(info["success"], np.bool_)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert isinstance(reward, float) and type(terminated) is bool and type(truncated) is bool
    assert obs.dtype == np.float32 and obs.flags.writeable
    env.close()


def test_check_env_on_probe_env():
    check_env(GymnasiumEnv(drift_stack()))


def test_gymnasium_make_goes_through_checkers_and_shares_compiled_env():
    env = gymnasium.make("robojax/CartpoleBalance-v0")
    assert isinstance(env, gymnasium.wrappers.OrderEnforcing)
    again = gymnasium.make("robojax/CartpoleBalance-v0")
    assert again.unwrapped.robojax_env is env.unwrapped.robojax_env
    assert again.unwrapped._step_fn is env.unwrapped._step_fn  # compiled once
    with pytest.raises(gymnasium.error.ResetNeeded):
        env.step(env.action_space.sample())  # OrderEnforcing: reset first
    obs, _ = env.reset(seed=3)
    assert env.observation_space.shape == (5,) and env.action_space.shape == (1,)
    assert np.all(env.action_space.low == -1.0) and np.all(env.action_space.high == 1.0)
    assert np.all(np.isinf(env.observation_space.low))
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert info["episode_length"] == 3 and not terminated and not truncated
    assert set(info["metrics"]) >= {"upright"}


def test_seeded_reset_is_deterministic_and_unseeded_resets_are_fresh():
    env = GymnasiumEnv(drift_stack())
    a, _ = env.reset(seed=7)
    b, _ = env.reset()
    c, _ = env.reset(seed=7)
    d, _ = env.reset()
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(b, d)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize(
    "action, match",
    [
        (np.zeros(3, np.float32), r"shape \(3,\), expected \(2,\)"),
        (np.zeros((1, 2), np.float32), r"shape \(1, 2\), expected \(2,\)"),
        (np.array([0.0, np.nan], np.float32), "NaN"),
        (np.array([np.inf, 0.0], np.float32), "NaN or inf"),
    ],
    ids=["too-long", "batched", "nan", "inf"],
)
def test_bad_action_raises_before_stepping(action, match):
    env = GymnasiumEnv(drift_stack())
    obs, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        env.step(action)
    # The state was not touched: a good step continues from the reset observation.
    nxt, *_ = env.step(np.ones(2, np.float32))
    np.testing.assert_allclose(nxt, obs + STEP_SIZE, rtol=1e-6)


def test_step_after_done_without_reset_raises():
    env = GymnasiumEnv(drift_stack(episode_length=1))
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(np.zeros(2, np.float32))
    env.reset(seed=0)
    *_, terminated, truncated, _ = env.step(np.zeros(2, np.float32))
    assert truncated and not terminated
    with pytest.raises(RuntimeError, match="call env.reset"):
        env.step(np.zeros(2, np.float32))
    env.reset()
    env.step(np.zeros(2, np.float32))


def test_single_env_rejects_batched_or_autoreset_envs():
    with pytest.raises(ValueError, match="unbatched"):
        GymnasiumEnv(drift_stack(num_envs=2))
    with pytest.raises(ValueError, match="autoreset=False"):
        GymnasiumEnv(AutoResetWrapper(drift_stack()))
    with pytest.raises(ValueError, match="render_mode"):
        GymnasiumEnv(drift_stack(), render_mode="rgb_array")


def test_make_rejects_num_envs():
    with pytest.raises(ValueError, match="make_vec"):
        make_gymnasium_env("cartpole_balance", num_envs=2)


# ---- robojax -> gymnasium: vector env -----------------------------------------------------------
def test_vector_env_same_step_autoreset_final_obs_and_masks():
    n = 4
    venv = GymnasiumVectorEnv(drift_stack(num_envs=n))
    assert venv.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    assert venv.single_observation_space.shape == (2,) and venv.observation_space.shape == (n, 2)
    assert venv.single_action_space.shape == (2,) and venv.action_space.shape == (n, 2)
    obs, infos = venv.reset(seed=0)
    assert obs.shape == (n, 2) and obs.dtype == np.float32 and infos["_success"].all()
    venv.action_space.seed(0)
    lengths = np.zeros(n, int)
    seen_done = np.zeros(n, bool)
    for _ in range(9):
        actions = venv.action_space.sample()
        expected = obs + STEP_SIZE * actions
        obs, rewards, terminated, truncated, infos = venv.step(actions)
        assert rewards.shape == (n,) and terminated.dtype == np.bool_ and not truncated.any()
        lengths += 1
        done = terminated | truncated
        np.testing.assert_allclose(obs[~done], expected[~done], rtol=1e-5)
        np.testing.assert_array_equal(infos["_success"], ~done)
        if not done.any():
            assert "final_obs" not in infos and "final_info" not in infos
            continue
        np.testing.assert_array_equal(infos["_final_obs"], done)
        np.testing.assert_array_equal(infos["_final_info"], done)
        assert infos["final_obs"].dtype == object
        for i in range(n):
            if done[i]:
                np.testing.assert_allclose(infos["final_obs"][i], expected[i], rtol=1e-5)
                assert not np.allclose(obs[i], expected[i])  # a fresh episode started
                assert infos["final_info"]["episode_done"][i]
                assert infos["final_info"]["episode_length"][i] == lengths[i]
                assert 2 <= lengths[i] <= 4
            else:
                assert infos["final_obs"][i] is None
        lengths[done] = 0
        seen_done |= done
    assert seen_done.all()
    venv.close()


def test_vector_env_rejects_bad_actions():
    venv = GymnasiumVectorEnv(drift_stack(num_envs=3))
    venv.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(2,\), expected \(3, 2\)"):
        venv.step(np.zeros(2, np.float32))
    bad = np.zeros((3, 2), np.float32)
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf \(envs \[1\]\)"):
        venv.step(bad)


def test_vector_env_needs_batched_autoreset_env():
    with pytest.raises(ValueError, match="batched"):
        GymnasiumVectorEnv(drift_stack())
    with pytest.raises(ValueError, match="autoreset"):
        GymnasiumVectorEnv(VmapWrapper(drift_stack(), 2))
    with pytest.raises(ValueError, match="num_envs=3"):
        GymnasiumVectorEnv(drift_stack(num_envs=2), num_envs=3)


def test_make_vec_vector_entry_point_truncates_with_final_obs():
    venv = gymnasium.make_vec(
        "robojax/CartpoleBalance-v0",
        num_envs=2,
        vectorization_mode="vector_entry_point",
        episode_length=3,
    )
    assert isinstance(venv, GymnasiumVectorEnv) and venv.num_envs == 2
    assert venv.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    obs, _ = venv.reset(seed=0)
    for t in range(3):
        prev = obs
        obs, rewards, terminated, truncated, infos = venv.step(np.zeros((2, 1), np.float32))
    assert truncated.all() and not terminated.any()
    assert infos["_final_obs"].all()
    for i in range(2):
        final = infos["final_obs"][i]
        assert final.shape == (5,) and final.dtype == np.float32
        assert np.abs(final - prev[i]).max() < 0.5  # continues the old episode ...
        assert not np.array_equal(final, obs[i])  # ... while obs starts a new one
    np.testing.assert_array_equal(infos["final_info"]["episode_length"], [3, 3])
    assert np.all(infos["final_info"]["episode_return"] > 0)
    venv.close()


# ---- gymnasium -> robojax -----------------------------------------------------------------------
def test_from_gymnasium_pendulum_round_trip():
    env = FromGymnasium("Pendulum-v1")
    assert isinstance(env, HostEnv)
    assert env.observation_spec.shape == (3,) and env.action_spec.shape == (1,)
    np.testing.assert_array_equal(env.action_spec.high, [2.0])
    assert env.dt == pytest.approx(0.05)
    s0 = env.reset(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(s0.obs, env.reset(jax.random.PRNGKey(0)).obs)
    np.testing.assert_array_equal(s0.obs, env.reset(jax.random.key(0)).obs)  # typed keys too
    assert not np.array_equal(s0.obs, env.reset(jax.random.PRNGKey(1)).obs)
    np.testing.assert_array_equal(env.reset(5).obs, env.reset(5).obs)
    assert s0.physics is None and s0.episode == {}
    assert set(s0.info) >= {
        "success",
        "final_obs",
        "episode_done",
        "episode_return",
        "episode_length",
        "episode_success",
    }
    assert s0.obs.dtype == np.float32

    state, total = s0, 0.0
    for t in range(200):  # Pendulum-v1 truncates at 200 steps (gymnasium's TimeLimit)
        state = env.step(state, np.array([1.0], np.float32))
        total += float(state.reward)
        assert bool(state.info["episode_done"]) == (t == 199)
    assert state.truncated and not state.terminated
    assert state.info["episode_length"] == 200
    assert state.info["episode_return"] == pytest.approx(total, rel=1e-5)
    assert not state.info["success"]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(state, np.zeros(1, np.float32))
    env.close()


def test_from_gymnasium_autoreset_keeps_final_obs():
    env = FromGymnasium(gymnasium.make("Pendulum-v1", max_episode_steps=3), autoreset=True)
    state = env.reset(0)
    for t in range(7):
        state = env.step(state, np.zeros(1, np.float32))
        if t == 2 or t == 5:
            assert state.truncated and state.info["episode_done"]
            assert state.info["episode_length"] == 3
            assert not np.array_equal(state.obs, state.info["final_obs"])
        else:
            assert not state.info["episode_done"]
            np.testing.assert_array_equal(state.obs, state.info["final_obs"])
    assert state.info["episode_length"] == 1


def test_from_gymnasium_validates_actions():
    env = FromGymnasium("Pendulum-v1")
    state = env.reset(0)
    with pytest.raises(ValueError, match=r"shape \(2,\), expected \(1,\)"):
        env.step(state, np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        env.step(state, np.array([np.nan], np.float32))


def test_from_gymnasium_rejects_non_box_spaces_naming_the_fix():
    with pytest.raises(TypeError, match="Box action space.*Discrete"):
        FromGymnasium("CartPole-v1")

    class DictObs(gymnasium.Env):
        observation_space = gymnasium.spaces.Dict({"x": gymnasium.spaces.Box(-1, 1, (2,))})
        action_space = gymnasium.spaces.Box(-1, 1, (1,))

    with pytest.raises(TypeError, match="FlattenObservation"):
        FromGymnasium(DictObs())


class SuccessAfterTwo(gymnasium.Env):
    """Reports gym's `is_success` from the second step on; terminates on the third."""

    observation_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        info = {"is_success": self.t >= 2, "distance": 1.0 / self.t}
        return np.full(1, self.t / 10, np.float32), 1.0, self.t >= 3, False, info


def test_from_gymnasium_reports_success_and_metrics():
    env = FromGymnasium(SuccessAfterTwo())
    state = env.reset()
    successes = []
    for _ in range(3):
        state = env.step(state, np.zeros(1, np.float32))
        successes.append(bool(state.info["success"]))
    assert successes == [False, True, True]
    assert state.terminated and state.info["episode_success"] and state.info["episode_return"] == 3.0
    assert set(state.metrics) == {"distance"}
    assert float(state.metrics["distance"]) == pytest.approx(1 / 3)
    with pytest.raises(NotImplementedError, match="dt"):
        env.dt


def test_robojax_to_gymnasium_to_robojax_round_trip():
    """A robojax task seen through gymnasium and back keeps its specs and episode bookkeeping."""
    env = FromGymnasium(gymnasium.make("robojax/CartpoleBalance-v0"))
    inner = env.gym_env.unwrapped.robojax_env
    assert env.observation_spec.shape == inner.observation_spec.shape
    np.testing.assert_array_equal(env.action_spec.low, inner.action_spec.low)
    assert env.dt == pytest.approx(inner.dt)
    state = env.reset(jax.random.PRNGKey(0))
    for _ in range(4):
        state = env.step(state, np.zeros(1, np.float32))
    assert state.info["episode_length"] == 4 and state.info["episode_return"] > 0


def test_from_gymnasium_mujoco_inverted_pendulum():
    try:
        importlib.import_module("gymnasium.envs.mujoco")
    except ImportError as e:  # gymnasium[mujoco] also needs imageio
        pytest.skip(f"gymnasium MuJoCo envs do not import: {e}")
    env = FromGymnasium("InvertedPendulum-v5", autoreset=True)
    assert env.observation_spec.shape == (4,) and env.action_spec.shape == (1,)
    assert env.dt == pytest.approx(0.04)
    state = env.reset(jax.random.PRNGKey(0))
    episodes = 0
    for _ in range(60):  # full push one way: the pole falls within a few dozen steps
        state = env.step(state, np.array([3.0], np.float32))
        episodes += int(state.info["episode_done"])
        if state.info["episode_done"]:
            assert state.terminated and state.info["episode_length"] >= 1
    assert episodes >= 1
    env.close()
