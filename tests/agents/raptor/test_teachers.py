"""Teachers: SAC vmapped over quadrotors is the SAC iteration per teacher, each on its own quadrotor."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import robojax  # noqa: F401  (XLA CPU flags before JAX initialises)
from envs import quadrotor
from robojax.agents.raptor import teachers
from robojax.agents.raptor.config import TeacherConfig
from robojax.agents.sac.config import SACConfig
from robojax.agents.sac.train import init_loop_state, make_iteration

CONFIG = TeacherConfig(
    num_envs=2,
    total_env_steps=60,
    learning_starts=10,
    steps_per_iteration=10,
    episode_length=20,
    sac=SACConfig(actor_hidden_dims=(16,), critic_hidden_dims=(16,), critic_ensemble_size=2, batch_size=8),
)


@pytest.fixture(scope="module")
def setup():
    env = teachers.make_teacher_env("hover", CONFIG.num_envs, CONFIG.episode_length)
    sac_config = teachers.sac_train_config(CONFIG, "hover")
    return env, sac_config


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_teacher_env_observes_the_privileged_observation(setup):
    env, _ = setup
    assert env.observation_spec.shape == (quadrotor.TEACHER_OBS_SIZE,)
    state = env.reset(jax.random.PRNGKey(0))
    assert state.obs.shape == (CONFIG.num_envs, quadrotor.TEACHER_OBS_SIZE)
    np.testing.assert_array_equal(state.obs, state.info["teacher_obs"])


@pytest.mark.parametrize("privileged,disturbance,size", [(True, True, 29), (True, False, 26), (False, False, 22)])
def test_teachers_see_the_prefix_their_config_names_and_are_labelled_with_it(privileged, disturbance, size):
    """The observation options pick a prefix of info["teacher_obs"]; labelling reads the teacher's own
    input size back from its learner, so any teacher is fed what it was trained on."""
    config = TeacherConfig(
        num_envs=2, episode_length=20, privileged=privileged, observe_disturbance=disturbance, sac=CONFIG.sac
    )
    assert config.observation_size == size
    env = teachers.make_teacher_env("hover", 2, 20, size)
    state = env.reset(jax.random.PRNGKey(0))
    assert env.observation_spec.shape == (size,) and state.obs.shape == (2, size)
    np.testing.assert_array_equal(state.obs, state.info["teacher_obs"][..., :size])
    if size == 29:  # the force draw is the last block, so a 26-value teacher sees no force
        np.testing.assert_array_equal(state.obs[..., 26:], state.physics["force_noise"])
    sac_config = teachers.sac_train_config(config, "hover")
    dynamics = jax.vmap(quadrotor.sample_parameters)(jax.random.split(jax.random.PRNGKey(1), 2))
    learners = teachers.init_teachers(jax.random.PRNGKey(2), env, sac_config, dynamics).learner
    full = jax.random.normal(jax.random.PRNGKey(3), (2, quadrotor.TEACHER_OBS_SIZE))
    from robojax.agents.sac import learner as sac_learner

    np.testing.assert_array_equal(
        jax.vmap(teachers.teacher_action)(learners, full),
        jax.vmap(sac_learner.act_deterministic)(learners, full[..., :size]),
    )


def test_observing_the_disturbance_needs_the_privileged_observation():
    with pytest.raises(ValueError, match="observe_disturbance needs privileged=True"):
        TeacherConfig(privileged=False)
    assert TeacherConfig(privileged=False, observe_disturbance=False).observation_size == 22


def test_each_teacher_flies_its_own_quadrotor_through_resets(setup):
    env, sac_config = setup
    dynamics = jax.vmap(quadrotor.sample_parameters)(jax.random.split(jax.random.PRNGKey(1), 2))
    state = teachers.init_teachers(jax.random.PRNGKey(2), env, sac_config, dynamics)
    finished = []
    state = teachers.train_teachers(  # 40 steps per env: past at least one episode end (20 steps) per env
        state,
        env,
        sac_config,
        until_env_steps=80,
        callback=lambda s, p: finished.append(np.asarray(p.metrics["train/episodes"])),
    )
    assert np.all(np.sum(finished, axis=0) >= CONFIG.num_envs)  # every teacher's envs were reset
    for name, value in dynamics.items():
        carried = np.asarray(state.env_state.dynamics[name])  # (teacher, env, ...)
        for t in range(2):
            for e in range(CONFIG.num_envs):
                np.testing.assert_allclose(carried[t, e], np.asarray(value[t]), rtol=1e-6, err_msg=name)
    # Different quadrotors and keys: the teachers learn different parameters.
    actor = jax.tree.leaves(state.learner.actor_params)
    assert all(not np.allclose(leaf[0], leaf[1]) for leaf in actor)
    assert int(np.min(state.env_steps)) >= 80 and np.all(
        np.isfinite(np.concatenate([x.ravel() for x in _leaves(actor)]))
    )


def test_a_vmapped_teacher_equals_the_sac_iteration(setup):
    env, sac_config = setup
    dynamics = jax.vmap(quadrotor.sample_parameters)(jax.random.split(jax.random.PRNGKey(3), 2))
    key = jax.random.PRNGKey(4)
    vmapped = teachers.init_teachers(key, env, sac_config, dynamics)
    # Teacher 0 built and stepped without vmap, by the plain SAC loop.
    single = jax.jit(lambda k: init_loop_state(k, env, sac_config))(jax.random.split(key, 2)[0])
    single_dyn = jax.tree.map(lambda x: jnp.broadcast_to(x[0], (CONFIG.num_envs,) + x.shape[1:]), dynamics)
    single = single.replace(env_state=single.env_state.replace(dynamics=single_dyn))
    iteration = make_iteration(env, sac_config)
    vmapped_iteration = teachers.make_teachers_iteration(env, sac_config)
    for _ in range(3):  # warm-up (random actions) and then learning updates
        single, metrics = iteration(single)
        vmapped, vmetrics = vmapped_iteration(vmapped)
    for a, b in zip(_leaves(single.learner), _leaves(jax.tree.map(lambda x: x[0], vmapped.learner))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(metrics["critic_loss"]), float(vmetrics["critic_loss"][0]), rtol=1e-4)
    assert float(metrics["update_steps"]) > 0  # updates ran, so the comparison covers learning


def test_teacher_action_is_deterministic_and_bounded(setup):
    env, sac_config = setup
    dynamics = jax.vmap(quadrotor.sample_parameters)(jax.random.split(jax.random.PRNGKey(5), 2))
    state = teachers.init_teachers(jax.random.PRNGKey(6), env, sac_config, dynamics)
    obs = jax.random.normal(jax.random.PRNGKey(7), (2, quadrotor.TEACHER_OBS_SIZE))
    act = jax.vmap(teachers.teacher_action)(state.learner, obs)
    assert act.shape == (2, 4) and float(jnp.max(jnp.abs(act))) <= 1.0
    np.testing.assert_array_equal(act, jax.vmap(teachers.teacher_action)(state.learner, obs))


def test_position_correction_shifts_only_the_students_position_input(setup):
    """Steady-state correction: the stored student observations move by exactly the offset; the
    flight (teacher acting), labels and recorded positions do not; the offsets are the teachers'
    mean tail position error over their non-crashed hover episodes."""
    from robojax.agents.raptor import learner, networks

    env, sac_config = setup
    dynamics = jax.vmap(quadrotor.sample_parameters)(jax.random.split(jax.random.PRNGKey(1), 2))
    state = teachers.init_teachers(jax.random.PRNGKey(2), env, sac_config, dynamics)
    task_env = teachers.make_task_env("hover", 30)
    student = networks.student_fns(True)
    params = student.init(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(5)
    offsets = jnp.array([[0.1, -0.2, 0.3], [0.0, 0.05, -0.4]], jnp.float32)
    run = jax.jit(lambda o: learner.collect(task_env, 30, 2, student, params, state.learner, dynamics, key, True, o))
    plain, shifted = run(jnp.zeros_like(offsets)), run(offsets)
    np.testing.assert_allclose(
        np.asarray(plain.obs[..., :3] - shifted.obs[..., :3]),
        np.broadcast_to(np.asarray(offsets)[:, None, None, :], plain.obs[..., :3].shape),
        atol=1e-6,
    )
    np.testing.assert_array_equal(np.asarray(plain.obs[..., 3:]), np.asarray(shifted.obs[..., 3:]))
    for name in ("label", "action", "position", "valid"):
        np.testing.assert_array_equal(np.asarray(getattr(plain, name)), np.asarray(getattr(shifted, name)))

    measured = learner.steady_state_offsets(
        task_env, state.learner, dynamics, key, length=30, episodes_per_quadrotor=2, tail=10
    )
    ok = ~np.asarray(plain.crashed)
    tail = np.asarray(plain.position - plain.reference)[..., -10:, :].mean(axis=-2)
    expected = np.stack([tail[q][ok[q]].mean(0) if ok[q].any() else np.zeros(3) for q in range(2)])
    np.testing.assert_allclose(np.asarray(measured), expected, atol=1e-5)


def test_evaluation_flies_the_episodes_of_the_distillation_rollout(setup):
    """`evaluate.fly` (robojax.evaluation over a quadrotor x episode batch) gives the same episodes as
    `learner.collect` for the oracle teachers (privileged observation) and for a student: same steps
    flown, crashes and observations; success is info["success"] at the end, i.e. no crash."""
    from robojax.agents.raptor import evaluate, learner, networks

    env, sac_config = setup
    dynamics = jax.vmap(quadrotor.sample_parameters)(jax.random.split(jax.random.PRNGKey(1), 2))
    state = teachers.init_teachers(jax.random.PRNGKey(2), env, sac_config, dynamics)
    task_env = teachers.make_task_env("hover", 30)
    student = networks.student_fns(True)
    params = student.init(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(7)
    for teacher_acts in (True, False):
        ref = jax.jit(
            lambda k: learner.collect(task_env, 30, 3, student, params, state.learner, dynamics, k, teacher_acts)
        )(key)
        policy = None if teacher_acts else networks.student_policy(student, params)
        out, got = evaluate.fly(task_env, 30, 3, dynamics, policy, state.learner, key)
        assert got.obs.shape == ref.obs.shape == (2, 3, 30, 22)
        np.testing.assert_array_equal(got.valid, np.asarray(ref.valid))
        np.testing.assert_array_equal(got.crashed, np.asarray(ref.crashed))
        np.testing.assert_array_equal(np.asarray(out["success"]).reshape(2, 3), ~np.asarray(ref.crashed))
        valid = np.asarray(ref.valid)
        np.testing.assert_allclose(got.obs[valid], np.asarray(ref.obs)[valid], atol=1e-5)
        np.testing.assert_allclose(got.position[valid], np.asarray(ref.position)[valid], atol=1e-5)
        np.testing.assert_allclose(got.action[valid], np.asarray(ref.action)[valid], atol=1e-5)
