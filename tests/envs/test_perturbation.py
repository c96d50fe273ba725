"""The Perturbation wrapper (robojax.envs.perturbation): semantics on a tiny pure-JAX env, the
named perturbations through `make`, and one MJX rollout of arm_push_cube's "cube_shift"."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.experts import expert_action
from robojax.envs import (
    ArraySpec,
    AutoResetWrapper,
    Env,
    EnvState,
    EpisodeStatistics,
    Perturbation,
    TimeLimit,
    VmapWrapper,
    perturbation_names,
    registry,
)

JUMP = 100.0


class Line(Env):
    """x starts at 0 (or uniform in [0, 1) with `random_start`); each step adds `gain * action`;
    obs = [x]. Terminates once x >= `goal`. Named perturbation "jump": once x >= 2, x jumps by
    100 plus a uniform [0, 1) draw from the perturbation's key."""

    perturbation_names = ("jump",)

    def __init__(self, goal: float = np.inf, random_start: bool = False):
        self.goal = goal
        self.random_start = random_start

    observation_spec = property(lambda self: ArraySpec((1,)))
    action_spec = property(lambda self: ArraySpec((1,), low=-1.0, high=1.0))

    def reset(self, key):
        return self.reset_with_parameters(key, {"gain": jnp.ones(())})

    def reset_with_parameters(self, key, params):
        x = jax.random.uniform(key, ()) if self.random_start else jnp.zeros(())
        return EnvState(
            physics=x,
            obs=x[None],
            reward=jnp.zeros(()),
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            dynamics={"gain": jnp.asarray(params["gain"], jnp.float32)},
            info={"success": jnp.zeros((), bool)},
            rng=key,
        )

    def step(self, state, action):
        x = state.physics + state.dynamics["gain"] * action[0]
        done = x >= self.goal
        return state.replace(
            physics=x, obs=x[None], reward=jnp.ones(()), terminated=done, truncated=jnp.zeros((), bool)
        )

    def perturbation(self, name, threshold=2.0):
        def trigger(state):
            return state.physics >= threshold

        def apply(state, key):
            x = state.physics + JUMP + jax.random.uniform(key, ())
            return state.replace(physics=x, obs=x[None])

        return trigger, apply


def _line_perturbation(env, delay=0):
    trigger, apply = env.perturbation("jump")
    return Perturbation(env, trigger, apply, delay=delay, name="jump")


def _scan(env, state, actions):
    @jax.jit
    def run(state, actions):
        def body(s, a):
            s = env.step(s, a)
            return s, (s.obs, s.info, s.episode)

        return jax.lax.scan(body, state, actions)[1]

    return jax.device_get(run(state, actions))


@pytest.fixture
def line_task(monkeypatch):
    monkeypatch.setattr(registry, "_TASKS", dict(registry._TASKS))
    registry.register("perturbation_test_line", Line)
    return "perturbation_test_line"


@pytest.mark.parametrize("delay", [0, 3])
def test_fires_once_delay_after_the_trigger(delay):
    env = _line_perturbation(Line(), delay)
    state = env.reset(jax.random.key(0))
    assert not bool(state.info["perturbed"]) and int(state.info["perturbed_step"]) == -1
    obs, info, _ = _scan(env, state, jnp.ones((10, 1)))
    x = obs[:, 0]
    fired = 2 + delay  # x = t after t steps: the trigger holds from step 2 on
    steps = np.arange(1, 11)
    np.testing.assert_array_equal(info["perturbed"], steps >= fired)
    np.testing.assert_array_equal(info["perturbed_step"], np.where(steps >= fired, fired, -1))
    np.testing.assert_allclose(x[: fired - 1], steps[: fired - 1])
    assert JUMP <= x[fired - 1] - fired < JUMP + 1  # the returned obs already shows the jump
    np.testing.assert_allclose(np.diff(x[fired - 1 :]), 1.0, atol=1e-5)  # once, though the trigger still holds


def test_flags_reset_on_autoreset_and_the_final_step_reports_the_episode():
    env = AutoResetWrapper(EpisodeStatistics(TimeLimit(_line_perturbation(Line()), 4)))
    _, info, episode = _scan(env, env.reset(jax.random.key(0)), jnp.ones((12, 1)))
    # Every episode fires at its own step 2; the done step (4) still reports its episode's flags.
    np.testing.assert_array_equal(info["perturbed_step"], [-1, 2, 2, 2] * 3)
    np.testing.assert_array_equal(info["episode_done"], [False, False, False, True] * 3)
    # The carried flags start afresh after each done step.
    np.testing.assert_array_equal(episode["perturbed_step"], [-1, 2, 2, -1] * 3)
    np.testing.assert_array_equal(episode["perturbation_t"], [1, 2, 3, 0] * 3)
    # Each episode draws its own perturbation (its key comes from its reset key).
    jumps = info["final_obs"][[1, 5, 9], 0]
    assert len(np.unique(jumps)) == 3


def test_make_batched_envs_fire_independently_and_reset_with_parameters(line_task):
    env = envs.make(line_task, num_envs=3, episode_length=20, perturbation="jump", perturbation_delay=1)
    layers = [env]
    while hasattr(layers[-1], "env"):
        layers.append(layers[-1].env)
    # Directly on the task, below TimeLimit.
    assert [type(w).__name__ for w in layers[-3:]] == ["TimeLimit", "Perturbation", "Line"]
    assert perturbation_names(env) == ("jump",)
    # Same x trajectories two ways: different actions, or different gains on equal actions.
    actions = jnp.broadcast_to(jnp.array([[1.0], [0.5], [0.0]]), (8, 3, 1))
    _, by_action, _ = _scan(env, env.reset(jax.random.key(0)), actions)
    state = env.reset_with_parameters(jax.random.key(0), {"gain": jnp.array([1.0, 0.5, 0.0])})
    assert state.info["perturbed_step"].shape == (3,)
    _, by_gain, _ = _scan(env, state, jnp.ones((8, 3, 1)))
    for info in (by_action, by_gain):
        # Triggered at x >= 2 (steps 2, 4, never), applied one step later.
        np.testing.assert_array_equal(info["perturbed_step"][-1], [3, 5, -1])
        np.testing.assert_array_equal(info["perturbed"][:, 0], np.arange(1, 9) >= 3)
        np.testing.assert_array_equal(info["perturbed"][:, 1], np.arange(1, 9) >= 5)
        assert not info["perturbed"][:, 2].any()


def test_never_fires_on_the_step_that_ends_the_episode():
    env = _line_perturbation(Line(goal=2.0))
    _, info, _ = _scan(env, env.reset(jax.random.key(0)), jnp.ones((2, 1)))
    assert not info["perturbed"].any()


def test_same_reset_key_same_initial_state_as_the_unwrapped_env():
    task = Line(random_start=True)
    env = _line_perturbation(task)
    for seed in range(3):
        key = jax.random.key(seed)
        np.testing.assert_array_equal(env.reset(key).obs, task.reset(key).obs)


def test_wrapper_validates_its_arguments():
    trigger, apply = Line().perturbation("jump")
    with pytest.raises(ValueError, match="non-negative integer"):
        Perturbation(Line(), trigger, apply, delay=-1)
    with pytest.raises(ValueError, match="inside the vmap"):
        Perturbation(VmapWrapper(Line(), 2), trigger, apply)
    with pytest.raises(TypeError, match="callables"):
        Perturbation(Line(), trigger, None)
    with pytest.raises(ValueError, match="one Perturbation"):
        Perturbation(_line_perturbation(Line()), trigger, apply).reset(jax.random.key(0))


def test_make_rejects_unknown_and_missing_perturbations(line_task):
    with pytest.raises(ValueError, match=r"unknown perturbation 'jmp'.*Did you mean 'jump'.*Available: 'jump'"):
        envs.make(line_task, perturbation="jmp")
    with pytest.raises(ValueError, match="without perturbation"):
        envs.make(line_task, perturbation_kwargs={"threshold": 1.0})
    with pytest.raises(TypeError, match="unexpected keyword"):
        envs.make(line_task, perturbation="jump", perturbation_kwargs={"height": 1.0})
    # Arm tasks: names listed; a task without any says so and names the tasks that have some.
    with pytest.raises(ValueError, match=r"unknown perturbation 'cube_drop'.*Available: 'cube_shift'"):
        envs.make("arm_push_cube", perturbation="cube_drop")
    with pytest.raises(ValueError, match="Did you mean 'cube_drop'"):
        envs.make("arm_pick_place", perturbation="cube_dorp")
    with pytest.raises(ValueError, match=r"'arm_reach' has no named perturbations.*arm_push_cube"):
        envs.make("arm_reach", perturbation="cube_shift")


# ---- one MJX rollout: arm_push_cube's cube_shift under the expert ------------------------------
NUM_ENVS = 4
STEPS = 40


def test_push_cube_shift_moves_the_cube_3_to_5_cm_right_after_first_contact():
    env = envs.make("arm_push_cube", num_envs=NUM_ENVS, autoreset=False, perturbation="cube_shift")
    task = env.unwrapped
    assert perturbation_names(env) == ("cube_shift",)

    @jax.jit
    def run(key):
        pairs = jax.vmap(jax.random.split)(jax.random.split(key, NUM_ENVS))
        state = env.reset(pairs[:, 0])
        act = jax.vmap(lambda s, k: expert_action(env, s, k))

        def body(s, _):
            s = env.step(s, act(s, pairs[:, 1]))
            phys = s.physics
            cube = jax.vmap(task.cube_pos)(phys)
            return s, (cube, s.obs, s.info, jax.vmap(task.fingertip_gaps)(phys), jax.vmap(task.touching)(phys))

        return jax.vmap(task.cube_pos)(state.physics), jax.lax.scan(body, state, None, length=STEPS)[1]

    start, (cube, obs, info, gaps, touching) = jax.device_get(run(jax.random.key(3)))
    goal_low, goal_high = task.goal_low, task.goal_high
    for b in range(NUM_ENVS):
        p = int(info["perturbed_step"][-1, b])
        assert 1 < p <= STEPS, f"env {b}: no contact-triggered perturbation in {STEPS} steps (step {p})"
        i = p - 1  # index of the perturbing step's output
        np.testing.assert_array_equal(info["perturbed"][:, b], np.arange(1, STEPS + 1) >= p)
        np.testing.assert_array_equal(info["perturbed_step"][:i, b], -1)
        # First contact: the step before was not touching yet and the cube had not moved.
        assert not touching[:i, b].any()
        assert np.linalg.norm(cube[i - 1, b, :2] - start[b, :2]) < 0.003
        moved = np.linalg.norm(cube[i, b, :2] - cube[i - 1, b, :2])
        assert 0.03 - 0.003 <= moved <= 0.05 + 0.003, f"env {b}: cube moved {moved:.4f} m"
        # Consistent observation: the moved cube, at rest, upright on the table, clear of the fingers.
        np.testing.assert_allclose(obs[i, b, 18:21], cube[i, b], atol=1e-6)
        np.testing.assert_array_equal(obs[i, b, 25:31], 0.0)
        np.testing.assert_allclose(cube[i, b, 2], 0.025, atol=1e-6)
        assert np.all(cube[i, b, :2] >= goal_low) and np.all(cube[i, b, :2] <= goal_high)
        assert gaps[i, b].min() > task.shift_clearance
    assert np.all(np.isfinite(obs))
