"""robojax.evaluation: closed-loop episodes of any Policy, against a plain Python loop and SAC's own evaluator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robojax.agents.sac import learner as sac_learner
from robojax.agents.sac import train as sac_train
from robojax.agents.sac.config import SACConfig
from robojax.envs import ArraySpec, Env, EnvState, EpisodeStatistics, TimeLimit, VmapWrapper
from robojax.evaluation import evaluate, make_episode_evaluator, measure_latency
from robojax.policy import Policy, stateless
from tests.agents.sac.probe_envs import ReachOrigin, make_probe

TIME_LIMIT = 10


class Climb(Env):
    """x' = x + 0.5 a, reward x'; terminates above 2, succeeds above 1.

    Stepping on after termination keeps paying reward, so an evaluator that does not mask what comes
    after an episode's end reports larger returns.
    """

    @property
    def observation_spec(self):
        return ArraySpec((2,), np.float32)

    @property
    def action_spec(self):
        return ArraySpec((1,), np.float32, -1.0, 1.0)

    def reset(self, key):
        x_key, rng = jax.random.split(key)
        x = jax.random.uniform(x_key, (), minval=-1.5, maxval=0.5)
        return EnvState(
            physics=x,
            obs=jnp.stack([x, 0.0]),
            reward=jnp.zeros(()),
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            info={"success": jnp.zeros((), bool)},
            rng=rng,
        )

    def step(self, state, action):
        x = state.physics + 0.5 * action[0]
        return state.replace(
            physics=x, obs=jnp.stack([x, state.obs[1] + 1.0]), reward=x, terminated=x > 2.0, info={"success": x > 1.0}
        )


def climb(num_envs=None):
    env = EpisodeStatistics(TimeLimit(Climb(), TIME_LIMIT))
    return env if num_envs is None else VmapWrapper(env, num_envs)


def recurrent_policy(gain=1.0) -> Policy:
    """Pushes up for 3 steps, down for 2, then gently up: the action reads the step count in the carry."""

    def init_carry():
        return {"t": jnp.zeros((), jnp.int32), "noise": jnp.zeros(())}

    def step(carry, obs, key):
        noise = 0.05 * jax.random.normal(key, ())
        push = jnp.select([carry["t"] < 3, carry["t"] < 5], [0.9, -0.6], 0.7) * gain
        action = jnp.clip(push + noise, -1.0, 1.0)[None]
        return action, {"t": carry["t"] + 1, "noise": carry["noise"] + noise}

    return Policy(init_carry, step, name="climber", stochastic=True)


def python_loop(policy, n, key, horizon):
    """The reference: each env of VmapWrapper(n) run alone, keys split the way the evaluator documents."""
    env = climb()
    reset_keys = jax.random.split(key, n)
    step_keys = jax.random.split(jax.random.fold_in(key, 1), horizon)
    out = {k: [] for k in ("return", "success", "success_any_step", "length", "terminated", "truncated")}
    for i in range(n):
        state, carry = env.reset(reset_keys[i]), policy.init_carry()
        ret, ever, length = 0.0, False, 0
        for t in range(horizon):
            action, carry = policy.step(carry, state.obs, jax.random.split(step_keys[t], n)[i])
            state = env.step(state, action)
            ret += float(state.reward)
            length += 1
            ever |= bool(state.info["success"])
            if bool(state.done):
                break
        out["return"].append(ret)
        out["length"].append(length)
        out["success"].append(bool(state.info["success"]))
        out["success_any_step"].append(ever)
        out["terminated"].append(bool(state.terminated))
        out["truncated"].append(bool(state.truncated) or not bool(state.done))
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.parametrize("horizon", [TIME_LIMIT + 3, 6])
def test_matches_a_plain_python_loop(horizon):
    n, key = 6, jax.random.PRNGKey(7)
    policy = recurrent_policy()
    got = jax.device_get(make_episode_evaluator(climb(n), lambda _: policy, episode_length=horizon)(None, key))
    want = python_loop(policy, n, key, horizon)
    np.testing.assert_allclose(got["return"], want["return"], rtol=1e-5, atol=1e-5)
    for k in ("length", "success", "success_any_step", "terminated", "truncated"):
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    if horizon > TIME_LIMIT:  # both endings occur: the test exercises both
        assert want["terminated"].any() and want["truncated"].any()
        assert (want["length"] < TIME_LIMIT).any() and (want["length"] == TIME_LIMIT).any()
    else:  # cut by the evaluation horizon: truncated there, success read at that step
        assert (want["length"] == horizon).any() and want["truncated"][want["length"] == horizon].all()


def test_steps_after_an_episode_end_are_masked():
    n = 4
    always_up = stateless(lambda obs, key: jnp.ones(1), name="up")
    got = jax.device_get(
        make_episode_evaluator(climb(n), lambda _: always_up, episode_length=3 * TIME_LIMIT)(
            None, jax.random.PRNGKey(0)
        )
    )
    x0 = np.asarray(jax.vmap(lambda k: climb().reset(k).physics)(jax.random.split(jax.random.PRNGKey(0), n)))
    # x climbs 0.5 per step and terminates on first exceeding 2: the return is the sum of x over those steps.
    for i in range(n):
        xs = x0[i] + 0.5 * np.arange(1, 3 * TIME_LIMIT + 1)
        end = int(np.argmax(xs > 2.0)) + 1
        assert got["length"][i] == end and got["terminated"][i] and not got["truncated"][i]
        np.testing.assert_allclose(got["return"][i], xs[:end].sum(), rtol=1e-5)
    assert got["success"].all()


def test_recurrent_carry_is_threaded_and_traced():
    n, horizon = 3, 5
    policy = recurrent_policy()
    run = make_episode_evaluator(climb(n), lambda _: policy, episode_length=horizon, trace=lambda s, a, nxt: a[:, 0])
    got = jax.device_get(run(None, jax.random.PRNGKey(1)))
    actions = got["trace"]  # [T, n]
    assert actions.shape == (horizon, n) and got["valid"].shape == (horizon, n)
    # Steps 3 and 4 push down only because the carry counted the steps before them.
    assert (actions[:3] > 0.5).all() and (actions[3:5] < -0.4).all()


def test_params_change_without_recompiling():
    n = 4
    run = make_episode_evaluator(climb(n), lambda gain: recurrent_policy(gain), episode_length=TIME_LIMIT)
    key = jax.random.PRNGKey(2)
    low, high = run(jnp.asarray(0.2), key), run(jnp.asarray(1.0), key)
    assert float(high["return"].mean()) > float(low["return"].mean())
    assert run._cache_size() == 1


def test_evaluate_aggregates_batches():
    policy = recurrent_policy()
    result = evaluate(policy, climb, episodes=7, num_envs=3, seed=5)
    per = result["per_episode"]
    assert result["episodes"] == 7 and all(v.shape == (7,) for v in per.values())
    run = make_episode_evaluator(climb(3), lambda _: policy, episode_length=TIME_LIMIT)
    root = jax.random.PRNGKey(5)
    batches = [jax.device_get(run(None, jax.random.fold_in(root, i))) for i in range(3)]
    returns = np.concatenate([b["return"] for b in batches])[:7]
    np.testing.assert_allclose(per["return"], returns, rtol=1e-6)
    assert result["return"] == pytest.approx(returns.mean(), rel=1e-6)
    assert result["success"] == pytest.approx(per["success"].mean())
    assert result["success_any_step"] == pytest.approx(per["success_any_step"].mean())
    assert result["length"] == pytest.approx(per["length"].mean())
    # A build function with params, and a shorter horizon than the env's own.
    short = evaluate(recurrent_policy, climb, episodes=2, num_envs=4, params=jnp.asarray(1.0), episode_length=4)
    assert short["episodes"] == 2 and short["length"] <= 4
    with pytest.raises(ValueError, match="build function"):
        evaluate(policy, climb, episodes=2, num_envs=2, params=1.0)
    with pytest.raises(ValueError, match="batched env"):
        make_episode_evaluator(climb(), lambda _: policy, episode_length=3)


def test_sac_deterministic_policy_matches_sac_evaluator():
    """The SAC evaluator's numbers, from the generic evaluator: it can replace sac.train.make_evaluator."""
    env = ReachOrigin()
    config = SACConfig(
        actor_hidden_dims=(16, 16), critic_hidden_dims=(8,), critic_ensemble_size=2, normalize_observations=True
    )
    state = sac_learner.init(jax.random.PRNGKey(0), env.observation_spec, env.action_spec, config)
    state = sac_learner.update_observation_normalizer(state, np.random.default_rng(0).uniform(-1, 1, (64, 1)))

    def build(learner_state):
        return stateless(lambda obs, key: sac_learner.act_deterministic(learner_state, obs), evals_per_action=1)

    key = jax.random.PRNGKey(11)
    for eval_env in (make_probe("reach_origin", 8), VmapWrapper(EpisodeStatistics(env), 8)):  # autoreset or not
        reference = jax.device_get(sac_train.make_evaluator(eval_env)(state, key))
        got = jax.device_get(make_episode_evaluator(eval_env, build, episode_length=env.episode_length)(state, key))
        np.testing.assert_allclose(got["return"], reference["eval/returns"], rtol=1e-5)
        assert float(got["return"].mean()) == pytest.approx(float(reference["eval/return"]), rel=1e-5)
        assert float(got["success"].mean()) == pytest.approx(float(reference["eval/success"]))
        assert (got["length"] == env.episode_length).all() and got["truncated"].all()


def test_measure_latency_reports_steps_and_chunks():
    env = EpisodeStatistics(ReachOrigin())  # 25-step episodes
    plain = measure_latency(stateless(lambda obs, key: -obs, evals_per_action=1), env, num_actions=30)
    assert {
        "actions",
        "per_action_ms_mean",
        "per_action_ms_p50",
        "per_action_ms_p99",
        "evals_per_action",
        "action_steps",
        "device",
    } <= set(plain)
    assert plain["actions"] == 30 and plain["evals_per_action"] == 1 and plain["action_steps"] == 1
    assert 0 < plain["per_action_ms_p50"] <= plain["per_action_ms_p99"]
    assert "per_chunk_ms_p50" not in plain

    k = 4

    def step(carry, obs, key):  # a chunked policy: replans (here: a matmul) every k calls
        index, chunk = carry
        chunk = jnp.where(index % k == 0, jnp.tanh(-obs[0] * jnp.arange(1.0, k + 1.0)), chunk)
        return chunk[index % k][None], (index + 1, chunk)

    chunked = Policy(
        lambda: (jnp.zeros((), jnp.int32), jnp.zeros(k)),
        step,
        evals_per_action=1 / k,
        action_chunking={
            "chunk_length": k,
            "executed_steps": k,
            "nfe_first_chunk": 1,
            "nfe_per_chunk": 1,
            "nfe_per_action": 1 / k,
        },
    )
    out = measure_latency(chunked, env, num_actions=50)
    assert out["action_steps"] == k and out["evals_per_action"] == pytest.approx(0.25)
    assert {"per_chunk_ms_p50", "per_chunk_ms_p99", "first_chunk_ms"} <= set(out)
    # Two episodes (25 + 25 calls): plans at calls 4, 8, ..., 24 after each reset, cold at call 0.
    assert out["replans"] == 12
    assert out["nfe_first_chunk"] == 1 and out["nfe_per_chunk"] == 1 and out["nfe_per_action"] == 0.25
    with pytest.raises(ValueError, match="unbatched"):
        measure_latency(chunked, VmapWrapper(env, 2))
