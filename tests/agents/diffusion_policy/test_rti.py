"""RTI warm start on hand-made chunks: shift, padding with the last action, gripper clip and scale."""

import jax.numpy as jnp
import numpy as np
import pytest

from robojax.agents.diffusion_policy import rti


def chunk():
    # 5 actions x 3 dims; dim 2 is a gripper in the model's space (continuous values near +-1 / switch).
    return jnp.array(
        [[0.0, 10.0, 0.9], [1.0, 11.0, 0.7], [2.0, 12.0, -0.2], [3.0, 13.0, -0.8], [4.0, 14.0, -1.0]], jnp.float32
    )


def test_shift_drops_executed_actions_and_repeats_the_last():
    shifted = np.asarray(rti.shift_chunk(chunk(), 2))
    np.testing.assert_array_equal(shifted[:, 0], [2, 3, 4, 4, 4])
    np.testing.assert_array_equal(shifted[:, 1], [12, 13, 14, 14, 14])
    np.testing.assert_array_equal(rti.shift_chunk(chunk(), 1)[:, 0], [1, 2, 3, 4, 4])  # RTI-DP's one-step shift
    np.testing.assert_array_equal(rti.shift_chunk(chunk(), 0), chunk())
    np.testing.assert_array_equal(rti.shift_chunk(chunk(), 5)[:, 0], [4, 4, 4, 4, 4])
    with pytest.raises(ValueError, match="cannot shift"):
        rti.shift_chunk(chunk(), 6)


def test_shift_works_on_batches():
    batch = jnp.stack([chunk(), chunk() + 100])
    shifted = np.asarray(rti.shift_chunk(batch, 3))
    np.testing.assert_array_equal(shifted[0, :, 0], [3, 4, 4, 4, 4])
    np.testing.assert_array_equal(shifted[1, :, 0], [103, 104, 104, 104, 104])


def test_clip_binarises_only_the_discrete_dims():
    clipped = np.asarray(rti.clip_discrete(chunk(), [2], factor=1.0))
    np.testing.assert_array_equal(clipped[:, 2], [1, 1, -1, -1, -1])
    np.testing.assert_array_equal(clipped[:, :2], np.asarray(chunk())[:, :2])
    tenth = np.asarray(rti.clip_discrete(chunk(), [2], factor=10.0))
    np.testing.assert_allclose(tenth[:, 2], [0.1, 0.1, -0.1, -0.1, -0.1])
    np.testing.assert_array_equal(rti.clip_discrete(chunk(), []), chunk())


def test_scale_and_unscale_are_inverse_on_discrete_dims():
    actions = jnp.array([[0.5, 1.0], [-0.5, -1.0]])
    scaled = np.asarray(rti.scale_discrete(actions, [1], 10.0))
    np.testing.assert_allclose(scaled, [[0.5, 0.1], [-0.5, -0.1]])
    np.testing.assert_allclose(rti.unscale_discrete(scaled, [1], 10.0), actions, rtol=1e-6)


def test_warm_start_guess_shifts_then_handles_the_gripper():
    clip = np.asarray(rti.warm_start_guess(chunk(), 2, [2], "clip", 1.0))
    np.testing.assert_array_equal(clip[:, 0], [2, 3, 4, 4, 4])
    np.testing.assert_array_equal(clip[:, 2], [-1, -1, -1, -1, -1])
    scale = np.asarray(rti.warm_start_guess(chunk(), 2, [2], "scale"))
    np.testing.assert_allclose(scale[:, 2], [-0.2, -0.8, -1.0, -1.0, -1.0])  # left as the model trained on them
    with pytest.raises(ValueError, match="discrete_handling"):
        rti.warm_start_guess(chunk(), 1, [2], "round")


def test_executed_gripper_commands_are_binary():
    a = np.asarray(rti.binarize_discrete(jnp.array([[0.3, 0.2], [0.3, -0.01]]), [1]))
    np.testing.assert_allclose(a, [[0.3, 1.0], [0.3, -1.0]], rtol=1e-6)


@pytest.mark.parametrize(
    "start, steps, expected",
    [
        (3, 3, (3, 1, 0)),
        (2, 3, (2, 1, 0)),
        (5, 4, (5, 3, 1, 0)),
        (7, 5, (7, 5, 3, 1, 0)),
        (3, 1, (3,)),
        (4, 4, (4, 2, 1, 0)),
    ],
)
def test_warm_start_timesteps_match_rti_dp_lists(start, steps, expected):
    got = rti.warm_start_timesteps(start, steps)
    assert got == expected
    assert all(a > b for a, b in zip(got, got[1:]))


def test_warm_start_timesteps_reject_impossible_lists():
    with pytest.raises(ValueError, match="do not fit"):
        rti.warm_start_timesteps(2, 4)


def test_train_config_round_trips_through_its_dict():
    # InferenceConfig has a string field named `inference`; only TrainConfig's fields are nested configs.
    from robojax.agents.diffusion_policy.config import InferenceConfig, TrainConfig
    from robojax.config_utils import from_dict, to_dict

    config = TrainConfig(dataset="demos", inference=InferenceConfig(inference="rti", rti_start_step=5))
    assert from_dict(TrainConfig, to_dict(config)) == config
    assert from_dict(InferenceConfig, to_dict(config.inference)) == config.inference
