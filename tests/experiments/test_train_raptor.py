"""experiments.train_raptor end to end on a tiny run: every stage, outputs, and stage-wise resume."""

import dataclasses
import json
import os

import pytest
from absl.testing import flagsaver

from tests.experiments.conftest import experiment_flag_fixtures, load_experiment

train_raptor = load_experiment("train_raptor")

TINY = dict(
    num_teachers=2,
    task="both",
    teacher_num_envs=2,
    teacher_total_env_steps=120,
    teacher_learning_starts=40,
    teacher_steps_per_iteration=20,
    teacher_episode_length=30,
    teacher_actor_hidden_dims=["16"],
    teacher_critic_hidden_dims=["16"],
    teacher_batch_size=16,
    distill_epochs=2,
    distill_warmup_epochs=1,
    distill_episodes_per_quadrotor=2,
    distill_episode_length=20,
    distill_batch_size=4,
    distill_updates_per_epoch=2,
    eval_num_quadrotors=2,
    eval_episodes_per_quadrotor=1,
    eval_episode_length=20,
    eval_plot_quadrotors=2,
    eval_wide_quadrotors=3,
    progress_bar=False,
    checkpoint_interval=2,
)


_own_experiment_flags, parsed_flags = experiment_flag_fixtures("train_raptor")


def test_flags_build_the_default_config():
    from robojax.agents.raptor.config import RaptorConfig

    assert train_raptor.config_from_flags() == RaptorConfig()


def test_bad_flag_raises_a_clear_error():
    with flagsaver.flagsaver(distill_warmup_epochs=50, distill_epochs=2):
        with pytest.raises(ValueError, match="warmup_epochs"):
            train_raptor.config_from_flags()


def test_every_stage_runs_and_a_rerun_skips_finished_stages(tmp_path):
    workdir = str(tmp_path / "run")
    with flagsaver.flagsaver(workdir=workdir, **TINY):
        result = train_raptor.run_experiment(["train_raptor"])
    assert result.skipped == []
    for name in (
        "config.json",
        "results.json",
        "tracking.png",
        "teachers.jsonl",
        "student.jsonl",
        "feedforward.jsonl",
        "export/raptor_student.h",
        "export/raptor_student.c",
    ):
        assert os.path.exists(os.path.join(workdir, name)), name
    for stage in ("teachers", "student", "feedforward", "evaluate", "export"):
        assert os.path.exists(os.path.join(workdir, "stages", f"{stage}.json")), stage
    results = json.load(open(os.path.join(workdir, "results.json")))["results"]
    assert set(results) == {"hover", "track"}
    assert set(results["track"]) == {"teacher", "student", "feedforward"}
    for metrics in results["hover"].values():
        assert 0.0 <= metrics["success"] <= 1.0 and metrics["position_error"] >= 0.0
    # The students alone on the wider held-out set (no teachers there): 3 quadrotors x 1 episode.
    wide = json.load(open(os.path.join(workdir, "results.json")))["wide"]
    assert set(wide) == {"hover", "track"} and set(wide["hover"]) == {"student", "feedforward"}
    assert wide["track"]["student"]["episodes"] == 3 and len(wide["track"]["student"]["success_per_quadrotor"]) == 3
    assert result.wide == wide
    teacher_records = [json.loads(l) for l in open(os.path.join(workdir, "teachers.jsonl"))]
    assert teacher_records[-1]["env_steps_per_teacher"] >= 120

    # Rerun: every stage is found finished and skipped; the results are the stored ones.
    with flagsaver.flagsaver(workdir=workdir, **TINY):
        again = train_raptor.run_experiment(["train_raptor"])
    assert again.skipped == ["teachers", "student", "feedforward", "evaluate", "export"]
    assert again.results == result.results and again.wide == result.wide

    # An unfinished stage resumes from its checkpoint; the finished ones before it are skipped.
    os.remove(os.path.join(workdir, "stages", "feedforward.json"))
    os.remove(os.path.join(workdir, "stages", "evaluate.json"))
    with flagsaver.flagsaver(workdir=workdir, **TINY):
        resumed = train_raptor.run_experiment(["train_raptor"])
    assert resumed.skipped == ["teachers", "student", "export"]
    assert resumed.results == result.results  # the restored ablation student is the same one

    # More distillation epochs continue both students from their checkpoints and redo evaluation.
    with flagsaver.flagsaver(workdir=workdir, **{**TINY, "distill_epochs": 3}):
        extended = train_raptor.run_experiment(["train_raptor"])
    assert extended.skipped == ["teachers"]
    epochs = [json.loads(l)["step"] for l in open(os.path.join(workdir, "student.jsonl"))]
    assert epochs == [1, 2, 3]


def test_changed_config_refuses_the_old_workdir(tmp_path):
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    from robojax.agents.raptor.config import RaptorConfig
    from robojax.agents.raptor.train import open_run

    def _check_config(workdir, config):  # open (and close) the run: checks and writes config.json
        open_run(dataclasses.replace(config, workdir=workdir)).close()

    _check_config(workdir, RaptorConfig())
    with pytest.raises(ValueError, match="num_teachers"):
        _check_config(workdir, RaptorConfig(num_teachers=3))
    from robojax.agents.raptor.config import DistillConfig

    _check_config(workdir, RaptorConfig(distill=DistillConfig(epochs=60)))  # more epochs: allowed


def test_every_config_field_is_a_prefixed_flag_and_they_round_trip():
    import dataclasses

    from absl import flags

    from robojax.agents.raptor.config import DistillConfig, EvalConfig, RaptorConfig, TeacherConfig
    from robojax.agents.sac.config import SACConfig

    groups = [
        ("", RaptorConfig),
        ("teacher_", TeacherConfig),
        ("teacher_", SACConfig),
        ("distill_", DistillConfig),
        ("eval_", EvalConfig),
    ]
    nested = {"teacher", "distill", "eval", "sac"}
    for prefix, cls in groups:
        for field in dataclasses.fields(cls):
            if field.name not in nested and (prefix, field.name) != ("distill_", "recurrent"):
                assert prefix + field.name in flags.FLAGS, prefix + field.name
    with flagsaver.flagsaver(
        teacher_batch_size=64,
        teacher_total_env_steps=500,
        distill_epochs=7,
        eval_num_quadrotors=5,
        checkpoint_interval=3,
        workdir="/tmp/r",
    ):
        config = train_raptor.config_from_flags()
    assert config.teacher.sac.batch_size == 64 and config.teacher.total_env_steps == 500
    assert config.distill.epochs == 7 and config.eval.num_quadrotors == 5
    assert config.checkpoint_interval == 3 and config.workdir == "/tmp/r"
    assert config.teacher.sac.critic_ensemble_size == RaptorConfig().teacher.sac.critic_ensemble_size


def test_an_old_flag_names_the_new_one():
    for old, new in (("teacher_env_steps", "teacher_total_env_steps"), ("checkpoint_every", "checkpoint_interval")):
        with flagsaver.flagsaver(**{old: "5"}):
            with pytest.raises(ValueError, match=f"--{old} was renamed --{new}"):
                train_raptor.config_from_flags()
