"""Policy artifacts: recurrent carry, stochastic keys, cuda lowering, and clear errors for bad artifacts."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import robojax  # noqa: F401
import robojax.deploy as deploy
from robojax.deploy.artifact import CARRY_FILE, SIDECAR, STEP_FILE, ArtifactError
from robojax.envs.core import ArraySpec
from robojax.export import export_policy
from robojax.policy import Policy

OBS, HIDDEN, ACT = 5, 8, 3
OBS_SPEC = ArraySpec((OBS,), np.float32, name="observation")
ACT_SPEC = ArraySpec((ACT,), np.float32, -1.0, 1.0, name="action")


def _weights(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "W": rng.normal(size=(HIDDEN, OBS)).astype(np.float32) * 0.5,
        "U": rng.normal(size=(HIDDEN, HIDDEN)).astype(np.float32) * 0.5,
        "b": rng.normal(size=(HIDDEN,)).astype(np.float32) * 0.1,
        "V": rng.normal(size=(ACT, HIDDEN)).astype(np.float32),
    }


def tiny_recurrent_policy(w) -> Policy:
    """h' = tanh(W x + U h + b), a = tanh(V h'); the carry also counts steps (an int leaf)."""

    def init_carry():
        return {"h": jnp.zeros(HIDDEN, jnp.float32), "t": jnp.zeros((), jnp.int32)}

    def step(carry, obs, key):
        h = jnp.tanh(w["W"] @ obs + w["U"] @ carry["h"] + w["b"])
        return jnp.tanh(w["V"] @ h), {"h": h, "t": carry["t"] + 1}

    return Policy(
        init_carry,
        step,
        name="tiny_recurrent",
        stochastic=False,
        action_chunking={"chunk_length": 1, "executed_steps": 1},
    )


class DuckTypedPolicy:
    """Has init_carry/step methods but is no robojax.policy.Policy: export_policy refuses it."""

    def init_carry(self):
        return ()

    def step(self, carry, obs, key):
        return obs[:ACT], carry


def _reference(w, observations):
    h, out = np.zeros(HIDDEN, np.float32), []
    for x in observations:
        h = np.tanh(w["W"] @ x + w["U"] @ h + w["b"])
        out.append(np.tanh(w["V"] @ h))
    return np.stack(out), h


@pytest.fixture(scope="module")
def recurrent_artifact(tmp_path_factory):
    out = tmp_path_factory.mktemp("art") / "recurrent"
    export_policy(
        tiny_recurrent_policy(_weights()),
        out,
        observation_spec=OBS_SPEC,
        action_spec=ACT_SPEC,
        control_dt=0.04,
        metadata={"purpose": "test"},
        platforms=("cpu", "cuda"),
        source_checkpoint=None,
    )
    return str(out)


def _copy(src, tmp_path, name="copy"):
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return str(dst)


def test_protocol_and_sidecar(recurrent_artifact):
    assert isinstance(tiny_recurrent_policy(_weights()), Policy)
    with open(os.path.join(recurrent_artifact, SIDECAR)) as f:
        side = json.load(f)
    assert side["platforms"] == ["cpu", "cuda"]
    assert side["jax_version"] == jax.__version__
    assert side["control_dt"] == 0.04 and side["control_rate_hz"] == pytest.approx(25.0)
    assert [c["shape"] for c in side["carry"]] == [[HIDDEN], []]
    assert [c["dtype"] for c in side["carry"]] == ["float32", "int32"]
    assert [c["name"] for c in side["carry"]] == ["h", "t"]
    assert side["metadata"] == {"purpose": "test"}
    assert side["action_chunking"] == {"chunk_length": 1, "executed_steps": 1}
    assert set(side["files"]) == {STEP_FILE, CARRY_FILE}
    # Nothing left behind by the write-aside-then-rename.
    assert sorted(os.listdir(os.path.dirname(recurrent_artifact))) == ["recurrent"]


def test_recurrent_carry_matches_reference_and_resets(recurrent_artifact):
    policy = deploy.load(recurrent_artifact)
    assert policy.platforms == ("cpu", "cuda")
    observations = np.random.default_rng(1).normal(size=(6, OBS)).astype(np.float32)
    expected, h_final = _reference(_weights(), observations)
    got = np.stack([policy(x) for x in observations])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    h, t = policy.carry
    np.testing.assert_allclose(h, h_final, rtol=1e-5, atol=1e-6)
    assert int(t) == 6 and policy.steps == 6
    # The carry matters: a step from a fresh carry differs from the same obs mid-sequence.
    policy.reset()
    first = policy(observations[0])
    np.testing.assert_allclose(first, expected[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(policy(observations[0]), first)


def test_stochastic_policy_key_is_seeded(tmp_path):
    def step(carry, obs, key):
        return jnp.clip(jnp.tanh(obs[:ACT]) + 0.3 * jax.random.normal(key, (ACT,)), -1, 1), carry

    out = export_policy(
        Policy(lambda: (), step, stochastic=True),
        tmp_path / "noisy",
        observation_spec=OBS_SPEC,
        action_spec=ACT_SPEC,
        control_dt=0.1,
    )
    obs = np.zeros(OBS, np.float32)
    a = deploy.load(out, seed=3)
    first = np.stack([a(obs) for _ in range(4)])
    assert a.stochastic
    assert len({tuple(row) for row in first.round(6)}) == 4  # a fresh draw every step
    a.reset()
    np.testing.assert_array_equal(np.stack([a(obs) for _ in range(4)]), first)
    a.reset(seed=4)
    assert not np.allclose(np.stack([a(obs) for _ in range(4)]), first)
    b = deploy.load(out, seed=3)
    np.testing.assert_array_equal(np.stack([b(obs) for _ in range(4)]), first)


def test_observation_validation_and_action_bounds(tmp_path):
    def step(carry, obs, key):
        return 5.0 * obs[:ACT], carry  # leaves the [-1, 1] box: the loader clips

    out = export_policy(
        Policy(lambda: (), step), tmp_path / "wide", observation_spec=OBS_SPEC, action_spec=ACT_SPEC, control_dt=0.1
    )
    policy = deploy.load(out)
    np.testing.assert_array_equal(policy(np.array([1, -1, 0.1, 0, 0], np.float32)), [1, -1, 0.5])
    with pytest.raises(ValueError, match="shape"):
        policy(np.zeros(OBS + 1, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        policy(np.full(OBS, np.nan, np.float32))
    assert policy(np.zeros(OBS, np.float64)).dtype == np.float32  # float64 input is cast


def test_nonfinite_action_raises(tmp_path):
    def step(carry, obs, key):
        return jnp.log(obs[:ACT]), carry  # NaN for negative inputs

    out = export_policy(
        Policy(lambda: (), step), tmp_path / "nan", observation_spec=OBS_SPEC, action_spec=ACT_SPEC, control_dt=0.1
    )
    policy = deploy.load(out, warmup=False)
    with pytest.raises(deploy.PolicyOutputError, match="non-finite"):
        policy(-np.ones(OBS, np.float32))


def test_export_rejects_bad_policies(tmp_path):
    batched = Policy(lambda: (), lambda c, o, k: (jnp.zeros((1, ACT)), c))
    with pytest.raises(ValueError, match="unbatched"):
        export_policy(batched, tmp_path / "a", observation_spec=OBS_SPEC, action_spec=ACT_SPEC, control_dt=0.1)
    carry_changes = Policy(lambda: jnp.zeros(2), lambda c, o, k: (o[:ACT], (c, c)))
    with pytest.raises(ValueError, match="carry"):
        export_policy(carry_changes, tmp_path / "b", observation_spec=OBS_SPEC, action_spec=ACT_SPEC, control_dt=0.1)
    with pytest.raises(ValueError, match="platforms"):
        export_policy(
            Policy(lambda: (), lambda c, o, k: (o[:ACT], c)),
            tmp_path / "c",
            observation_spec=OBS_SPEC,
            action_spec=ACT_SPEC,
            control_dt=0.1,
            platforms=("gpu",),
        )
    with pytest.raises(TypeError, match="robojax.policy.Policy"):
        export_policy(
            DuckTypedPolicy(), tmp_path / "e", observation_spec=OBS_SPEC, action_spec=ACT_SPEC, control_dt=0.1
        )
    assert not any(p.name.startswith(("a", "b", "c", "e")) for p in tmp_path.iterdir())  # no half-written dirs
    ok = Policy(lambda: (), lambda c, o, k: (o[:ACT], c))
    export_policy(ok, tmp_path / "d", observation_spec=OBS_SPEC, action_spec=ACT_SPEC, control_dt=0.1)
    with pytest.raises(FileExistsError, match="overwrite"):
        export_policy(ok, tmp_path / "d", observation_spec=OBS_SPEC, action_spec=ACT_SPEC, control_dt=0.1)
    export_policy(ok, tmp_path / "d", observation_spec=OBS_SPEC, action_spec=ACT_SPEC, control_dt=0.2, overwrite=True)
    assert deploy.load(tmp_path / "d").control_dt == 0.2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def _edit_sidecar(path, **changes):
    with open(os.path.join(path, SIDECAR)) as f:
        side = json.load(f)
    side.update(changes)
    with open(os.path.join(path, SIDECAR), "w") as f:
        json.dump(side, f)
    return side


def test_corrupt_and_mismatched_artifacts_fail_clearly(recurrent_artifact, tmp_path):
    with pytest.raises(ArtifactError, match="not a directory"):
        deploy.load(tmp_path / "nothing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ArtifactError, match="artifact.json is missing"):
        deploy.load(empty)

    flipped = _copy(recurrent_artifact, tmp_path, "flipped")
    with open(os.path.join(flipped, STEP_FILE), "r+b") as f:
        f.seek(200)
        byte = f.read(1)
        f.seek(200)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ArtifactError, match="corrupt: sha256"):
        deploy.load(flipped)

    missing = _copy(recurrent_artifact, tmp_path, "missing")
    os.remove(os.path.join(missing, CARRY_FILE))
    with pytest.raises(ArtifactError, match="missing"):
        deploy.load(missing)

    garbled = _copy(recurrent_artifact, tmp_path, "garbled")
    with open(os.path.join(garbled, SIDECAR), "w") as f:
        f.write("{not json")
    with pytest.raises(ArtifactError, match="not readable JSON"):
        deploy.load(garbled)

    fmt = _copy(recurrent_artifact, tmp_path, "fmt")
    _edit_sidecar(fmt, format="robojax.policy_artifact/99")
    with pytest.raises(ArtifactError, match="re-export"):
        deploy.load(fmt)

    newer = _copy(recurrent_artifact, tmp_path, "newer")
    _edit_sidecar(newer, jax_version="99.0.0")
    with pytest.raises(ArtifactError, match="older"):
        deploy.load(newer)

    shape = _copy(recurrent_artifact, tmp_path, "shape")
    _edit_sidecar(shape, observation_spec={"shape": [OBS + 2], "dtype": "float32", "name": "observation"})
    with pytest.raises(ArtifactError, match="do not belong together"):
        deploy.load(shape)

    carry = _copy(recurrent_artifact, tmp_path, "carry")
    side = _edit_sidecar(carry)
    side["carry"][0]["shape"] = [HIDDEN + 1]
    _edit_sidecar(carry, carry=side["carry"])
    with pytest.raises(ArtifactError, match="carry leaf 0"):
        deploy.load(carry)


def test_older_jax_version_warns(recurrent_artifact, tmp_path):
    older = _copy(recurrent_artifact, tmp_path, "older")
    _edit_sidecar(older, jax_version="0.0.1")
    with pytest.warns(UserWarning, match="pin the controller"):
        deploy.load(older)
