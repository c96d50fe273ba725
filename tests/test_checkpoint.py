"""robojax.checkpoint: round trips, layout and metadata checks, restoring across device layouts."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robojax.checkpoint import (
    Checkpointer,
    CheckpointMismatchError,
    check_compatible,
    load_policy,
    restore_numpy,
    save_policy,
)


def _tree():
    return {"w": jnp.arange(6.0).reshape(2, 3), "step": jnp.asarray(7, jnp.int32), "empty": jnp.zeros((4, 0))}


def test_round_trip_keeps_latest_n_and_extras(tmp_path):
    with Checkpointer(tmp_path / "ckpt", keep=2) as checkpointer:
        for step in (10, 20, 30):
            checkpointer.save(step, _tree(), extras={"buffer": {"x": jnp.full(3, float(step))}}, metadata={"env": "e"})
        checkpointer.wait_until_finished()
        assert checkpointer.all_steps() == [20, 30]
    with Checkpointer(tmp_path / "ckpt", create=False) as checkpointer:
        state, extras = checkpointer.restore(_tree(), extras={"buffer": {"x": jnp.zeros(3)}, "absent": {}})
        assert checkpointer.read_metadata() == {"env": "e"}
    np.testing.assert_array_equal(state["w"], _tree()["w"])
    assert state["empty"].shape == (4, 0)  # zero-size arrays survive (Orbax cannot store them)
    np.testing.assert_array_equal(extras["buffer"]["x"], 30)
    assert "absent" not in extras


def test_relative_paths_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Checkpointer("relative/ckpt") as checkpointer:
        assert checkpointer.directory == str(tmp_path / "relative" / "ckpt")


def test_layout_mismatch_names_the_leaf(tmp_path):
    with Checkpointer(tmp_path) as checkpointer:
        checkpointer.save(1, _tree())
    with Checkpointer(tmp_path, create=False) as checkpointer:
        wrong = {**_tree(), "w": jnp.zeros((3, 3))}
        with pytest.raises(CheckpointMismatchError, match=r"w: checkpoint \(2, 3\) float32, this run \(3, 3\)"):
            checkpointer.restore(wrong)
        with pytest.raises(CheckpointMismatchError, match="extra: missing from the checkpoint"):
            checkpointer.restore({**_tree(), "extra": jnp.zeros(1)})
        with pytest.raises(FileNotFoundError, match="no checkpoint for step 5"):
            checkpointer.restore(_tree(), step=5)


def test_missing_or_invalid_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint directory"):
        Checkpointer(tmp_path / "nope", create=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        Checkpointer(tmp_path / "file")
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        restore_numpy(tmp_path)


def test_check_compatible_lists_every_difference():
    saved = {"env": "a", "config": {"lr": 1.0, "dims": [1, 2]}}
    check_compatible(saved, {"env": "a", "config": {"lr": 1.0, "dims": (1, 2)}})  # tuples and lists agree
    with pytest.raises(CheckpointMismatchError) as err:
        check_compatible(saved, {"env": "b", "config": {"lr": 2.0, "dims": [1, 2], "new": 0}})
    message = str(err.value)
    assert "env: the checkpoint has 'a', this run has 'b'" in message
    assert "config.lr: the checkpoint has 1.0, this run has 2.0" in message
    assert "config.new: absent in the checkpoint" in message


def test_policy_round_trip_replaces_older_save(tmp_path):
    save_policy(tmp_path / "policy", {"k": jnp.ones(2)}, {"env": "x"})
    save_policy(tmp_path / "policy", {"k": jnp.full(2, 3.0)}, {"env": "y"})
    params, metadata = load_policy(tmp_path / "policy")
    np.testing.assert_array_equal(params["k"], 3.0)
    assert metadata == {"env": "y"}
    assert sorted(os.listdir(tmp_path)) == ["policy"]
    with pytest.raises(FileNotFoundError, match="no saved policy"):
        load_policy(tmp_path / "other")


_WRITE_ON_TWO_DEVICES = textwrap.dedent(
    """
    import sys
    import jax, jax.numpy as jnp, numpy as np
    from robojax.checkpoint import Checkpointer
    devices = jax.devices()
    assert len(devices) == 2, devices
    mesh = jax.sharding.Mesh(np.array(devices), ("x",))
    sharded = jax.device_put(jnp.arange(8.0), jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("x")))
    with Checkpointer(sys.argv[1]) as checkpointer:
        checkpointer.save(3, {"sharded": sharded, "on_device_1": jax.device_put(jnp.ones((2, 3)), devices[1])})
    """
)


def test_restores_a_checkpoint_written_on_another_device_layout(tmp_path):
    # Stands in for "written on a GPU, restored on a CPU": the writer had two devices, the
    # array lived on the second or was sharded over both; this process has one CPU device.
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    subprocess.run([sys.executable, "-c", _WRITE_ON_TWO_DEVICES, str(tmp_path)], check=True, env=env, timeout=120)
    assert len(jax.devices()) == 1
    with Checkpointer(tmp_path, create=False) as checkpointer:
        state, _ = checkpointer.restore({"sharded": jnp.zeros(8), "on_device_1": jnp.zeros((2, 3))})
    assert state["on_device_1"].devices() == {jax.devices()[0]}
    np.testing.assert_array_equal(state["sharded"], np.arange(8.0))
    np.testing.assert_array_equal(restore_numpy(tmp_path)["on_device_1"], np.ones((2, 3)))
