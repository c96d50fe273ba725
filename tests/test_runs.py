"""robojax.runs: the run scaffold (directory, metadata, resume, sinks, final files, stages)."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from robojax import runs
from robojax.checkpoint import CheckpointMismatchError, load_policy

RESUMABLE = ("total_steps", "workdir", "resume", "nested.epochs")


def _metadata(**config):
    base = {"total_steps": 300, "lr": 0.1, "workdir": None, "resume": False, "nested": {"epochs": 2, "width": 8}}
    return runs.run_metadata("robojax.test.loop/1", {**base, **config}, env="probe")


def _state(step):
    return {"w": jnp.full((3,), float(step)), "step": jnp.asarray(step, jnp.int32)}


def _train(workdir, *, resume=False, total=300, metadata=None, kill_after=None):
    """A toy loop on the scaffold: 100 steps per iteration, eval every 100, checkpoint every 200."""
    with runs.Run(
        workdir,
        resume=resume,
        resumable=RESUMABLE,
        checkpoints_to_keep=2,
        progress_bar=False,
        metadata=metadata or _metadata(total_steps=total),
    ) as run:
        state = _state(0)
        if run.resuming:
            state, _ = run.restore(state)
        step = int(state["step"])
        run.start(step=step, total=total)
        while step < total:
            before, step = step, step + 100
            state = _state(step)
            run.advance(step, seconds=0.5 if before == 0 else 0.1)
            run.log(step, {"loss": 1.0 / step})
            if run.crossed(before, step, 100):
                run.log_eval(step, {"eval/return": float(step), "env_steps": step})
            if run.checkpoint_due(before, step, 200, final=step >= total):
                run.save(step, state)
            if kill_after is not None and step >= kill_after:
                raise KeyboardInterrupt
        run.finish(policy={"w": state["w"]})
        return run.record(), state


def test_a_run_writes_its_files_aside_and_reports_a_record(tmp_path):
    record, _ = _train(str(tmp_path))
    for name in ("config.json", "metrics.jsonl", "tensorboard", "learning_curve.png", "policy/policy.json"):
        assert os.path.exists(tmp_path / name), name
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp") or ".tmp." in n]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["format"] == "robojax.test.loop/1" and config["env"] == "probe" and "jax_version" in config
    assert sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()) == [200, 300]
    params, policy_meta = load_policy(tmp_path / "policy")
    np.testing.assert_array_equal(params["w"], np.full(3, 300.0))
    assert policy_meta["format"] == "robojax.test.loop/1"
    assert record.steps == 300 and record.workdir == str(tmp_path)
    assert record.first_iteration_s == 0.5 and record.wall_s > 0
    assert [e["eval/return"] for e in record.eval_history] == [100.0, 200.0, 300.0]
    assert record.final_eval["env_steps"] == 300


def test_resume_of_nothing_and_a_new_run_over_an_old_one_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="resume: no checkpoint in .*run without resume"):
        runs.Run(str(tmp_path / "nothing"), resume=True)
    assert not os.path.exists(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="run without --resume"):
        runs.Run(str(tmp_path / "nothing"), resume=True, resume_flag="--resume")
    with pytest.raises(ValueError, match="resume needs a workdir"):
        runs.Run(None, resume=True)
    _train(str(tmp_path / "run"))
    with pytest.raises(FileExistsError, match="already holds checkpoints .latest step 300.; resume to continue"):
        runs.Run(str(tmp_path / "run"))


def test_resume_refuses_a_different_run_and_names_the_fields(tmp_path):
    _train(str(tmp_path), total=200)
    other = runs.run_metadata(
        "robojax.test.loop/1",
        {"total_steps": 300, "lr": 0.2, "workdir": None, "resume": True, "nested": {"epochs": 3, "width": 16}},
        env="probe",
    )
    with pytest.raises(CheckpointMismatchError) as error:
        _train(str(tmp_path), resume=True, metadata=other)
    message = str(error.value)
    assert "config.lr: the checkpoint has 0.1, this run has 0.2" in message
    assert "config.nested.width: the checkpoint has 8, this run has 16" in message
    assert "epochs" not in message.split("(Settings")[0]  # a resumable field: may change
    assert "start a new run in a new directory" in message
    assert "Settings a resume may change: total_steps, workdir, resume, nested.epochs" in message
    # Only resumable fields changed: the run continues where it stopped.
    record, state = _train(
        str(tmp_path), resume=True, metadata=_metadata(total_steps=300, resume=True, nested={"epochs": 5, "width": 8})
    )
    assert record.steps == 300 and int(state["step"]) == 300


def test_resume_truncates_the_log_to_the_resumed_step(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _train(str(tmp_path), total=400, kill_after=300)  # checkpoint at 200; 300 is logged, then lost
    assert sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()) == [200]
    record, _ = _train(str(tmp_path), resume=True, total=400)
    lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    losses = [r["step"] for r in lines if "loss" in r]
    assert losses == [100, 200, 300, 400]  # each step once: the killed run's 300 was dropped
    # The evaluations before the resume come back from the log; the first iteration is this process's.
    assert [e["env_steps"] for e in record.eval_history] == [100, 200, 300, 400]
    assert record.first_iteration_s == 0.1


def test_without_a_workdir_nothing_is_written_but_metrics_are_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    record, _ = _train(None)
    assert os.listdir(tmp_path) == []
    out = capsys.readouterr().out
    assert "step        300 | eval/return 300" in out and "loss" not in out  # only the stdout keys
    assert record.workdir is None and record.steps == 300 and len(record.eval_history) == 3
    with runs.Run(None, metadata=_metadata()) as run:
        assert not run.resuming and not run.checkpoint_due(0, 200, 100, final=True)
        run.save(100, _state(100))  # nothing to save to: a no-op
        with pytest.raises(ValueError, match="no checkpoints to restore"):
            run.restore(_state(0))
        with pytest.raises(ValueError, match="needs a run directory"):
            run.stage("teachers")


def test_metadata_is_needed_before_the_loop_starts(tmp_path):
    with runs.Run(str(tmp_path)) as run:
        with pytest.raises(RuntimeError, match="describe"):
            run.start()
        run.describe(_metadata())
        run.start()
    assert json.loads((tmp_path / "config.json").read_text())["env"] == "probe"


def test_stages_are_skipped_when_done_and_the_config_must_match_on_rerun(tmp_path):
    def pipeline(metadata):
        done = []
        with runs.Run(
            str(tmp_path), checkpoints=False, resumable=RESUMABLE, metadata=metadata, progress_bar=False
        ) as run:
            run.start()
            run.log(1, {"pipeline/reruns": 1.0})
            for name in ("first", "second"):
                stage = run.stage(name)
                if stage.done:
                    continue
                with stage.checkpointer() as checkpointer:
                    if checkpointer.latest_step() is None:  # a redone stage resumes from its checkpoint
                        checkpointer.save(1, _state(1), metadata=metadata)
                sink = stage.metrics()
                sink.write(1, {"loss": 0.5})
                sink.close()
                stage.finish({"epochs": 1})
                done.append(name)
        return done

    assert pipeline(_metadata()) == ["first", "second"]
    assert not os.path.exists(tmp_path / "checkpoints" / "0")  # no top-level checkpoints
    stage = runs.Stage(str(tmp_path), "first")
    assert stage.done and stage.summary() == {"epochs": 1}
    assert os.path.isdir(tmp_path / "checkpoints" / "first" / "1") and os.path.exists(tmp_path / "first.jsonl")
    assert pipeline(_metadata(nested={"epochs": 9, "width": 8})) == []  # a resumable change: all skipped
    stage.reopen()
    assert pipeline(_metadata()) == ["first"]
    with pytest.raises(CheckpointMismatchError, match=r"config\.json does not match.*\n  config\.lr"):
        pipeline(_metadata(lr=0.5))
    # A rerun continues the run in place: its log keeps the earlier runs' records.
    assert len(open(tmp_path / "metrics.jsonl").readlines()) == 3


def test_without_fields_reaches_nested_configs():
    config = {"a": 1, "b": {"c": 2, "d": 3}}
    assert runs.without_fields(config, ("a", "b.c", "missing", "x.y")) == {"b": {"d": 3}}
    assert config == {"a": 1, "b": {"c": 2, "d": 3}}  # a copy
    assert runs.crossed(99, 100, 100) and not runs.crossed(100, 199, 100) and not runs.crossed(0, 500, 0)
