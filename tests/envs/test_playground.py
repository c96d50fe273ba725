"""The MuJoCo Playground adapter: its logic on a tiny fake Playground-style env (always runs), and
the real `playground:CartpoleBalance` when the `playground` extra is installed."""

import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

import envs
from robojax.envs import AutoResetWrapper, EpisodeStatistics, TimeLimit, VmapWrapper
from robojax.envs import playground as playground_module
from robojax.envs.playground import PlaygroundEnv


@struct.dataclass
class FakeState:
    """Same fields as mujoco_playground's State."""

    data: jax.Array
    obs: object
    reward: jax.Array
    done: jax.Array
    metrics: dict
    info: dict


class FakePlaygroundEnv:
    """A point that drifts by the action; `done` (a float, as in Playground) once |x| > 1."""

    def __init__(self, obs_kind="array", success_in="metrics"):
        self._config = types.SimpleNamespace(episode_length=7, ctrl_dt=0.05)
        self.obs_kind = obs_kind
        self.success_in = success_in
        self.dt = 0.05

    @property
    def action_size(self):
        return 2

    @property
    def observation_size(self):
        return 4

    def _obs(self, x):
        flat = jnp.concatenate([x, 2.0 * x])
        if self.obs_kind == "array":
            return flat
        if self.obs_kind == "dict":
            return {"state": flat.reshape(2, 2), "privileged_state": jnp.zeros(3)}
        return {"pixels": flat}

    def _extras(self, x):
        success = (jnp.linalg.norm(x) < 0.1).astype(jnp.float32)
        metrics = {"reward/distance": jnp.linalg.norm(x)}
        info = {"rng": jax.random.PRNGKey(0), "time_out": jnp.zeros(())}
        if self.success_in == "metrics":
            metrics["success"] = success
        elif self.success_in == "info":
            info["success"] = success
        return metrics, info

    def reset(self, rng):
        x = jax.random.uniform(rng, (2,), minval=-0.5, maxval=0.5)
        metrics, info = self._extras(x)
        return FakeState(x, self._obs(x), jnp.zeros(()), jnp.zeros(()), metrics, info)

    def step(self, state, action):
        x = state.data + 0.2 * action
        metrics, info = self._extras(x)
        done = (jnp.max(jnp.abs(x)) > 1.0).astype(jnp.float32)
        return FakeState(x, self._obs(x), -jnp.linalg.norm(x), done, metrics, info)


def test_adapter_specs_and_config():
    env = PlaygroundEnv(FakePlaygroundEnv())
    assert env.observation_spec.shape == (4,)
    assert env.action_spec.shape == (2,)
    np.testing.assert_array_equal(env.action_spec.low, [-1, -1])
    np.testing.assert_array_equal(env.action_spec.high, [1, 1])
    assert env.episode_length == 7 and env.dt == pytest.approx(0.05)


def test_adapter_maps_done_to_terminated_and_clips_actions():
    env = PlaygroundEnv(FakePlaygroundEnv())
    reset, step = jax.jit(env.reset), jax.jit(env.step)
    state = reset(jax.random.PRNGKey(0))
    assert state.info["success"].dtype == jnp.bool_ and set(state.metrics) == {"reward/distance", "success"}
    x0 = np.asarray(state.physics.data)
    state = step(state, jnp.array([5.0, -5.0]))  # clipped to [1, -1]
    np.testing.assert_allclose(state.physics.data, x0 + 0.2 * np.array([1.0, -1.0]), rtol=1e-6)
    np.testing.assert_allclose(state.obs, np.concatenate([state.physics.data, 2 * state.physics.data]))
    assert state.reward.dtype == jnp.float32 and not state.truncated
    for _ in range(10):
        state = step(state, jnp.ones(2))
        if state.terminated:
            break
    assert state.terminated and not state.truncated


def test_adapter_success_from_metrics_or_info_else_false():
    for where in ("metrics", "info"):
        env = PlaygroundEnv(FakePlaygroundEnv(success_in=where))
        state = env.reset(jax.random.PRNGKey(0))
        state = state.replace(physics=state.physics.replace(data=jnp.zeros(2)))
        state = env.step(state, jnp.zeros(2))
        assert bool(state.info["success"]), where
    env = PlaygroundEnv(FakePlaygroundEnv(success_in=None))
    assert not bool(env.step(env.reset(jax.random.PRNGKey(0)), jnp.zeros(2)).info["success"])


def test_adapter_dict_obs_uses_state_entry_else_clear_error():
    env = PlaygroundEnv(FakePlaygroundEnv(obs_kind="dict"))
    assert env.observation_spec.shape == (4,)
    assert env.reset(jax.random.PRNGKey(1)).obs.shape == (4,)
    with pytest.raises(ValueError, match=r"no 'state' entry"):
        PlaygroundEnv(FakePlaygroundEnv(obs_kind="pixels"))


def test_adapter_under_robojax_wrappers_jit_and_vmap():
    """The same stack envs.make builds: time limit from the Playground config, vmap, autoreset."""
    inner = PlaygroundEnv(FakePlaygroundEnv())
    env = AutoResetWrapper(VmapWrapper(EpisodeStatistics(TimeLimit(inner, inner.episode_length)), 3))
    state = jax.jit(env.reset)(jax.random.PRNGKey(0))
    step = jax.jit(env.step)
    for t in range(inner.episode_length):
        state = step(state, jnp.zeros((3, 2)))
    assert state.truncated.all() and not state.terminated.any()
    np.testing.assert_array_equal(state.info["episode_length"], [7, 7, 7])
    assert not np.array_equal(state.obs, state.info["final_obs"])  # fresh episodes, final obs kept


def test_adapter_rejects_non_playground_objects_and_domain_randomization():
    with pytest.raises(TypeError, match="not a Playground-style env"):
        PlaygroundEnv(object())
    with pytest.raises(TypeError, match="config overrides"):
        PlaygroundEnv(FakePlaygroundEnv(), impl="jax")
    with pytest.raises(NotImplementedError, match="get_domain_randomizer"):
        PlaygroundEnv(FakePlaygroundEnv()).nominal_dynamics()


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mujoco_playground", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install robojax\[playground\]"):
        envs.make("playground:CartpoleBalance")


def test_menagerie_clone_failure_is_explained(monkeypatch):
    class FakeRegistry:
        ALL_ENVS = ("Go1Getup",)

        @staticmethod
        def load(name, config_overrides=None):
            raise subprocess.CalledProcessError(128, ["git", "clone"])

    monkeypatch.setattr(playground_module, "_registry", lambda: FakeRegistry)
    with pytest.raises(RuntimeError, match="Menagerie"):
        PlaygroundEnv("Go1Getup")


# ---- the real package --------------------------------------------------------------------------
def test_unknown_playground_name_suggests_close_matches():
    pytest.importorskip("mujoco_playground")
    with pytest.raises(ValueError, match="Did you mean 'CartpoleBalance'"):
        envs.make("playground:CartpoleBalence")


def test_real_playground_cartpole_steps_under_jit_and_vmap():
    pytest.importorskip("mujoco_playground")
    # impl="jax": Playground defaults to MuJoCo Warp, whose CPU kernels take much longer to build.
    env = envs.make("playground:CartpoleBalance", num_envs=4, impl="jax", episode_length=3)
    assert env.observation_spec.shape == (5,) and env.action_spec.shape == (1,)
    assert env.unwrapped.episode_length == 1000  # from Playground's config
    state = jax.jit(env.reset)(jax.random.PRNGKey(0))
    step = jax.jit(env.step)
    for _ in range(3):
        state = step(state, jnp.zeros((4, 1)))
    assert state.obs.shape == (4, 5) and np.all(np.isfinite(state.obs))
    assert state.truncated.all() and not state.terminated.any()
    assert np.all(state.info["episode_return"] > 0)
    assert "reward/upright" in state.metrics
    assert not np.array_equal(state.obs, state.info["final_obs"])


def test_tree_where_keeps_batch_shared_leaves():
    """MuJoCo Warp keeps some mjx.Data leaves once for all worlds (no batch axis): they keep their
    shape, coming from on_true only where every element is selected."""
    from robojax.envs import tree_where

    a = {"per_env": jnp.ones((3, 2)), "shared": jnp.array([1]), "empty": jnp.zeros((0, 4))}
    b = {"per_env": jnp.zeros((3, 2)), "shared": jnp.array([2]), "empty": jnp.zeros((0, 4))}
    out = tree_where(jnp.array([True, False, True]), a, b)
    np.testing.assert_array_equal(out["per_env"], [[1, 1], [0, 0], [1, 1]])
    assert out["shared"].shape == (1,) and int(out["shared"][0]) == 2 and out["empty"].shape == (0, 4)
    assert int(tree_where(jnp.array([True, True, True]), a, b)["shared"][0]) == 1
    with pytest.raises(ValueError, match="leaf shapes differ"):
        tree_where(jnp.array([True, False, True]), a, {**b, "shared": jnp.array([1, 2])})


def _staggered(state, n):
    """Envs 0..n-1 start at different time-limit step counts, so they finish on different steps."""
    return state.replace(episode={**state.episode, "steps": jnp.arange(n, dtype=jnp.int32)})


@pytest.mark.parametrize("impl", ["warp", "jax"])
def test_real_playground_batched_autoreset_with_some_envs_done(impl):
    """The evaluation path that broke: a batch where only some envs finish, under jit and lax.cond,
    on Playground's default MuJoCo Warp backend (batch-shared Data leaves) and on MJX-JAX."""
    pytest.importorskip("mujoco_playground")
    n = 3
    env = envs.make("playground:CartpoleBalance", num_envs=n, impl=impl, episode_length=3)
    state = _staggered(jax.jit(env.reset)(jax.random.PRNGKey(0)), n)
    step = jax.jit(env.step)
    state = step(state, jnp.zeros((n, 1)))  # steps 1, 2, 3: only env 2 hits the limit
    np.testing.assert_array_equal(state.truncated, [False, False, True])
    assert not np.array_equal(state.obs[2], state.info["final_obs"][2])
    np.testing.assert_array_equal(state.obs[:2], state.info["final_obs"][:2])
    np.testing.assert_array_equal(state.episode["steps"], [1, 2, 0])
    state = step(state, jnp.zeros((n, 1)))
    np.testing.assert_array_equal(state.truncated, [False, True, False])
    assert np.all(np.isfinite(state.obs))


def test_real_playground_domain_randomization_changes_the_dynamics():
    """robojax's DomainRandomization on mjx.Model fields: each env steps its own sampled model."""
    pytest.importorskip("mujoco_playground")
    from robojax.envs import Uniform

    n = 2
    base = dict(num_envs=n, impl="jax", episode_length=50, autoreset=False)
    with pytest.raises(ValueError, match="randomisable parameters are"):
        envs.make("playground:CartpoleBalance", domain_randomization={"no_such_field": Uniform(0.5, 2.0)}, **base)
    env = envs.make("playground:CartpoleBalance", domain_randomization={"body_mass": Uniform(0.2, 5.0)}, **base)
    nominal = envs.make("playground:CartpoleBalance", **base)
    key = jax.random.PRNGKey(0)
    state, ref = jax.jit(env.reset)(key), jax.jit(nominal.reset)(key)
    assert state.dynamics["body_mass"].shape == (n,) + env.unwrapped.nominal_dynamics()["body_mass"].shape
    assert not np.allclose(state.dynamics["body_mass"][0], state.dynamics["body_mass"][1])
    # Same initial physics, different masses: the same push moves the carts differently.
    state = state.replace(physics=ref.physics, obs=ref.obs)
    push = jnp.ones((n, 1))
    s, r = state, ref
    for _ in range(5):
        s, r = jax.jit(env.step)(s, push), jax.jit(nominal.step)(r, push)
    assert not np.allclose(s.obs, r.obs, atol=1e-5)
    assert not np.allclose(s.obs[0], s.obs[1], atol=1e-5)
