"""experiments.train_sac with a gymnasium id: the host loop's config from flags."""

import dataclasses

import pytest
from absl.testing import flagsaver

from robojax.agents.sac.config import HOST_SAC_DEFAULTS, HostTrainConfig
from tests.experiments.conftest import experiment_flag_fixtures, load_experiment

train_sac = load_experiment("train_sac")


_own_experiment_flags, parsed_flags = experiment_flag_fixtures("train_sac")


def test_gym_id_builds_a_host_config_with_host_defaults():
    with flagsaver.flagsaver(env="InvertedPendulum-v5", workdir="/tmp/ip", utd_ratio=4, max_actor_lead=7):
        config = train_sac.config_from_flags()
    assert isinstance(config, HostTrainConfig)
    expected = dataclasses.replace(
        HostTrainConfig(), workdir="/tmp/ip", max_actor_lead=7, sac=dataclasses.replace(HOST_SAC_DEFAULTS, utd_ratio=4)
    )
    assert config == expected


def test_robojax_names_keep_the_on_device_loop():
    with flagsaver.flagsaver(env="cartpole_balance", workdir="/tmp/cp"):
        config = train_sac.config_from_flags()
    assert not isinstance(config, HostTrainConfig) and config.env == "cartpole_balance"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(env="InvertedPendulum-v5", num_envs=4), "--num_envs only apply to the on-device loop"),
        (dict(env="cartpole_balance", intervention="keyboard"), "--intervention needs the host loop"),
        (dict(env="InvertedPendulum-v5", max_actor_lead=0), "max_actor_lead must be a positive integer"),
    ],
)
def test_bad_host_flags(overrides, message):
    with flagsaver.flagsaver(**overrides):
        with pytest.raises(ValueError, match=message):
            train_sac.config_from_flags()
