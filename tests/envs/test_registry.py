"""The task registry (robojax.envs.registry): register, make with the standard wrappers, errors."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import robojax.envs
from robojax.envs import (
    AutoResetWrapper,
    EpisodeStatistics,
    TimeLimit,
    VmapWrapper,
    registry,
)
from robojax.envs.core import ArraySpec, Env, EnvState


class Counter(Env):
    """x counts steps; `reset_with_parameters` puts `gain` in dynamics (the reward scale)."""

    episode_length = 4

    def __init__(self, start: float = 0.0):
        self.start = start

    observation_spec = property(lambda self: ArraySpec((1,)))
    action_spec = property(lambda self: ArraySpec((1,), low=-1.0, high=1.0))

    def reset(self, key):
        return self.reset_with_parameters(key, {"gain": jnp.ones(())})

    def reset_with_parameters(self, key, params):
        x = jnp.full((1,), self.start, jnp.float32)
        return EnvState(
            physics=x,
            obs=x,
            reward=jnp.zeros(()),
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            dynamics={"gain": jnp.asarray(params["gain"], jnp.float32)},
            info={"success": jnp.zeros((), bool)},
            rng=key,
        )

    def step(self, state, action):
        x = state.physics + 1.0
        return state.replace(physics=x, obs=x, reward=state.dynamics["gain"] * 1.0)


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry, "_TASKS", dict(registry._TASKS))


def test_builtin_tasks_found_without_importing_envs():
    """robojax finds the built-in tasks through the `robojax.envs` entry point, not by importing envs."""
    import subprocess

    code = (
        "import sys, robojax.envs as E; assert 'envs' not in sys.modules;"
        " n = E.names(); assert 'cartpole_balance' in n and 'quadrotor_hover' in n, n;"
        " print(E.gymnasium_id('reacher'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "robojax/Reacher-v0"


def test_envs_package_re_exports_the_registry():
    import envs

    assert envs.make is robojax.envs.make and envs.names is robojax.envs.names
    assert envs.task_class("reacher").__name__ == "Reacher"


def test_register_class_and_make_builds_the_standard_stack(clean_registry):
    robojax.envs.register("counter", Counter)
    assert "counter" in robojax.envs.names()
    env = robojax.envs.make("counter", num_envs=3, start=2.0)
    assert isinstance(env, AutoResetWrapper) and isinstance(env.env, VmapWrapper)
    assert isinstance(env.env.env, EpisodeStatistics) and isinstance(env.env.env.env, TimeLimit)
    assert env.env.env.env.max_steps == 4  # the task's own episode_length
    state = env.reset(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(state.obs, np.full((3, 1), 2.0))
    for _ in range(4):
        state = env.step(state, jnp.zeros((3, 1)))
    assert state.truncated.all()
    np.testing.assert_array_equal(state.obs, np.full((3, 1), 2.0))  # autoreset
    assert not isinstance(robojax.envs.make("counter"), AutoResetWrapper)


def test_register_lazy_string_entry_and_gymnasium_id(clean_registry):
    import gymnasium

    robojax.envs.register("lazy_counter", "tests.envs.test_registry:Counter", gymnasium_id="robojax_test/Counter-v0")
    assert robojax.envs.task_class("lazy_counter") is Counter
    assert registry.gymnasium_id("lazy_counter") == "robojax_test/Counter-v0"
    assert "robojax_test/Counter-v0" in gymnasium.registry
    robojax.envs.register("lazy_counter", "tests.envs.test_registry:Counter", gymnasium_id="robojax_test/Counter-v0")
    with pytest.raises(ValueError, match="already registered"):
        robojax.envs.register("lazy_counter", Counter)
    with pytest.raises(ValueError, match="module:Attr"):
        robojax.envs.register("bad", "no_colon_here")
    with pytest.raises(ValueError, match="playground:"):
        robojax.envs.register("playground:Mine", Counter)
    with pytest.raises(TypeError, match="class, a callable"):
        robojax.envs.register("bad", 3)


def test_unknown_name_and_overrides_raise_clear_errors(clean_registry):
    robojax.envs.register("counter", Counter)
    with pytest.raises(ValueError, match=r"unknown env 'cartpole_balanse'. Did you mean 'cartpole_balance'"):
        robojax.envs.make("cartpole_balanse")
    with pytest.raises(ValueError, match="playground:<Name>"):
        registry.check_name("nothing_like_it")
    with pytest.raises(TypeError, match=r"unknown overrides \['stat'\]; valid: \['start'\]"):
        robojax.envs.make("counter", stat=1.0)
    assert registry.is_known("counter") and registry.is_known("playground:Anything")
    assert not registry.is_known("CartPole-v1")


def test_reset_with_parameters_through_the_whole_stack(clean_registry):
    robojax.envs.register("counter", Counter)
    env = robojax.envs.make("counter", num_envs=2, action_repeat=2)
    state = env.reset_with_parameters(jax.random.PRNGKey(0), {"gain": jnp.array([2.0, 3.0])})
    assert set(state.episode) >= {"steps", "return", "length"} and "final_obs" in state.info
    state = env.step(state, jnp.zeros((2, 1)))
    np.testing.assert_allclose(state.reward, [4.0, 6.0])  # two repeats x gain
    with pytest.raises(ValueError, match="leading axis of 2"):
        env.reset_with_parameters(jax.random.PRNGKey(0), {"gain": jnp.array(2.0)})


def test_wrapper_that_changes_reset_must_forward_reset_with_parameters():
    from robojax.envs.core import Wrapper

    class Shift(Wrapper):
        def reset(self, key):
            return self.env.reset(key)

    with pytest.raises(NotImplementedError, match="Shift overrides reset but not reset_with_parameters"):
        Shift(Counter()).reset_with_parameters(jax.random.PRNGKey(0), {"gain": 1.0})
    with pytest.raises(NotImplementedError, match="does not implement reset_with_parameters"):
        TimeLimit(PlainEnv(), 3).reset_with_parameters(jax.random.PRNGKey(0), {})


class PlainEnv(Counter):
    reset_with_parameters = Env.reset_with_parameters

    def reset(self, key):
        return Counter.reset_with_parameters(self, key, {"gain": 1.0})
