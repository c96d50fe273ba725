"""Scripted experts solve their tasks; arm_pick_place is multimodal and enforces its keep-out box."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.experts import expert_action, expert_mode, make_rollout

NUM_ENVS = 4


def _final_success(traj):
    done, success, term = (np.asarray(traj[k]) for k in ("done", "success", "terminated"))
    out = []
    for b in range(done.shape[1]):
        n = int(np.argmax(done[:, b])) + 1 if done[:, b].any() else done.shape[0]
        out.append(bool(success[n - 1, b]) and not term[:n, b].any())
    return np.array(out)


@pytest.fixture(scope="module", params=["arm_push_cube", "arm_pick_place"])
def rollout(request):
    env = envs.make(request.param, num_envs=NUM_ENVS, autoreset=False)
    traj = make_rollout(env, env.episode_length, noise=0.05)(jax.random.split(jax.random.key(1), NUM_ENVS))
    return request.param, env, jax.device_get(traj)


def test_expert_succeeds(rollout):
    name, env, traj = rollout
    success = _final_success(traj)
    assert success.sum() >= NUM_ENVS - 1, f"{name}: expert solved {success.sum()}/{NUM_ENVS}"
    actions = traj["action"]
    assert np.all(np.abs(actions) <= 1.0) and np.all(np.isfinite(traj["obs"]))
    if name == "arm_pick_place":
        np.testing.assert_array_equal(np.abs(actions[..., 3]), 1.0)  # gripper stays discrete


def test_pick_place_modes_are_balanced_and_keyed():
    env = envs.make("arm_pick_place")
    modes = jax.vmap(lambda k: expert_mode(env, k))(jax.random.split(jax.random.key(0), 2000))
    assert 0.45 < float(modes.mean()) < 0.55
    key = jax.random.key(3)
    assert int(expert_mode(env, key)) == int(expert_mode(env, key))
    assert int(expert_mode(envs.make("arm_push_cube"), key)) == 0


def test_pick_place_carries_past_the_pillar_on_the_chosen_side(rollout):
    name, env, traj = rollout
    if name != "arm_pick_place":
        pytest.skip("pick-place only")
    task = env.unwrapped
    # ee y while the arm is level with the pillar: sign matches the mode (0 left = +y).
    ee = traj["obs"][..., 15:18]
    for b in range(NUM_ENVS):
        level = np.abs(ee[:, b, 0] - task.pillar_center[0]) < task.pillar_half[0]
        assert level.any(), "the carry never reached the pillar"
        side = np.sign(ee[level, b, 1])
        assert np.all(side == (1 if traj["mode"][b] == 0 else -1))


def test_pick_place_keep_out_terminates():
    from mujoco import mjx

    env = envs.make("arm_pick_place")
    task = env.unwrapped
    state = env.reset(jax.random.key(0))
    i = task._cube_qpos

    @jax.jit
    def check(cube_xy):
        qpos = state.physics.qpos.at[i : i + 2].set(cube_xy)
        data = mjx.forward(task.mjx_model, state.physics.replace(qpos=qpos))
        return task._terminated(data, state.episode), task.in_keep_out(data)

    terminated, inside = check(jnp.asarray(task.pillar_center))
    assert bool(terminated) and bool(inside)
    terminated, inside = check(jnp.array([0.40, 0.0]))
    assert not bool(terminated) and not bool(inside)
    # The expert's action is a valid 4-D action at reset.
    a = expert_action(env, state, jax.random.key(0))
    assert a.shape == (4,) and float(a[3]) in (-1.0, 1.0)
