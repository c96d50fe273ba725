"""robojax.config_utils: one to_dict/from_dict for every learner config, and clear errors for old names."""

import json

import pytest

from robojax.agents.diffusion_policy.config import DiffusionPolicyConfig, InferenceConfig
from robojax.agents.diffusion_policy.config import TrainConfig as DPTrainConfig
from robojax.agents.raptor.config import DistillConfig, RaptorConfig, TeacherConfig
from robojax.agents.sac.config import HostTrainConfig, SACConfig
from robojax.agents.sac.config import TrainConfig as SACTrainConfig
from robojax.config_utils import from_dict, to_dict

CONFIGS = [
    SACConfig(actor_hidden_dims=(32, 16), target_entropy=-1.5),
    SACTrainConfig(env="pendulum_swingup", sac=SACConfig(critic_hidden_dims=(8,))),
    HostTrainConfig(),
    DPTrainConfig(
        dataset="demos",
        policy=DiffusionPolicyConfig(down_dims=(8, 16)),
        inference=InferenceConfig(inference="rti", rti_start_step=5),
    ),
    InferenceConfig(inference="ddpm"),
    RaptorConfig(
        num_teachers=3,
        workdir="/tmp/r",
        teacher=TeacherConfig(sac=SACConfig(batch_size=64)),
        distill=DistillConfig(epochs=7),
    ),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: type(c).__name__)
def test_every_config_round_trips_through_json(config):
    d = json.loads(json.dumps(to_dict(config)))
    again = from_dict(type(config), d)
    assert again == config
    assert to_dict(again) == d


def test_tuples_become_lists_and_back():
    d = to_dict(SACTrainConfig(sac=SACConfig(actor_hidden_dims=(4, 5))))
    assert d["sac"]["actor_hidden_dims"] == [4, 5]
    assert from_dict(SACTrainConfig, d).sac.actor_hidden_dims == (4, 5)


def test_unknown_key_names_it_and_the_valid_ones():
    with pytest.raises(ValueError, match=r"SACConfig has no field 'critic_size'; valid fields: .*critic_hidden_dims"):
        from_dict(SACTrainConfig, {"sac": {"critic_size": 3}})


@pytest.mark.parametrize(
    "cls, kwargs, message",
    [
        (DPTrainConfig, dict(dataset="d", eval_every=5), "TrainConfig.eval_every was renamed eval_interval"),
        (DPTrainConfig, dict(dataset="d", checkpoint_every=5), "checkpoint_every was renamed checkpoint_interval"),
        (DiffusionPolicyConfig, dict(num_steps=5), "DiffusionPolicyConfig.num_steps was renamed total_grad_steps"),
        (TeacherConfig, dict(env_steps=5), "TeacherConfig.env_steps was renamed total_env_steps"),
        (RaptorConfig, dict(checkpoint_every=5), "RaptorConfig.checkpoint_every was renamed checkpoint_interval"),
    ],
)
def test_old_keyword_names_the_new_one(cls, kwargs, message):
    with pytest.raises(TypeError, match=message):
        cls(**kwargs)


def test_old_saved_configs_load_under_the_new_names():
    # Checkpoints and config.json files written before the renames stay resumable and exportable.
    old = {"dataset": "d", "eval_every": 7, "checkpoint_every": 9, "policy": {"num_steps": 11}}
    config = from_dict(DPTrainConfig, old)
    assert (config.eval_interval, config.checkpoint_interval, config.policy.total_grad_steps) == (7, 9, 11)
    assert from_dict(RaptorConfig, {"teacher": {"env_steps": 300}}).teacher.total_env_steps == 300
    with pytest.raises(ValueError, match="both 'eval_every' and its new name 'eval_interval'"):
        from_dict(DPTrainConfig, {"dataset": "d", "eval_every": 7, "eval_interval": 7})
