"""robojax.logging: sinks, resume truncation, progress bar, learning-curve plot."""

import io
import json
import os

from robojax import logging as rlog


def test_jsonl_resume_drops_records_past_the_resumed_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    sink = rlog.JsonlSink(path)
    for step in (100, 200, 300):
        sink.write(step, {"loss": 1.0, "eval/return": float(step)})
    sink.close()
    with open(path, "a") as f:
        f.write('{"step": 400, "torn')  # a crash mid-line
    resumed = rlog.JsonlSink(path, resume_step=200)
    resumed.write(300, {"loss": 0.5})
    assert [r["step"] for r in resumed.history()] == [100, 200, 300]
    assert resumed.history()[-1]["loss"] == 0.5
    resumed.close()
    fresh = rlog.JsonlSink(path)  # not resuming: a new log
    assert fresh.history() == []
    fresh.close()


def test_jsonl_writes_non_finite_as_null(tmp_path):
    sink = rlog.JsonlSink(tmp_path / "m.jsonl")
    sink.write(1, {"nan": float("nan"), "n": 3})
    sink.close()
    record = json.loads((tmp_path / "m.jsonl").read_text())
    assert record["nan"] is None and record["n"] == 3


def test_stdout_sink_prints_selected_keys():
    out = io.StringIO()
    sink = rlog.StdoutSink(keys=("eval/return",), stream=out)
    sink.write(5, {"loss": 1.0})
    sink.write(10, {"eval/return": 812.25, "loss": 1.0})
    assert out.getvalue() == "step         10 | eval/return 812.2\n"


def test_tensorboard_sink_writes_events(tmp_path):
    sink = rlog.TensorBoardSink(tmp_path / "tb")
    sink.write(1, {"a": 1.0, "skip_nan": float("nan")})
    sink.close()
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path / "tb"))


def test_logger_fans_out_and_reads_history(tmp_path):
    out = io.StringIO()
    logger = rlog.MetricsLogger([rlog.StdoutSink(stream=out), rlog.JsonlSink(tmp_path / "m.jsonl")])
    logger.write(3, {"x": 2.0})
    assert logger.history()[0]["x"] == 2.0 and "x 2" in out.getvalue()
    logger.close()


def test_progress_bar_is_silent_without_a_tty():
    stream = io.StringIO()
    bar = rlog.ProgressBar(100, stream=stream)
    bar.update(50)
    bar.set_eval_return(3.0)
    bar.close()
    assert not bar.enabled and stream.getvalue() == ""


def test_progress_bar_shows_rate_and_eval_on_a_tty(capsys):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    bar = rlog.ProgressBar(1000, stream=stream)
    bar.set_eval_return(912.5)
    bar.update(500)
    bar.write("step 500 | eval/return 912.5")  # printed above the bar, not through it
    bar.close()
    text = stream.getvalue()
    assert "500/1" in text and "eval=912.5" in text and "steps/s" in text
    assert "step 500 | eval/return 912.5" in capsys.readouterr().out


def test_learning_curve_png(tmp_path):
    sink = rlog.JsonlSink(tmp_path / "m.jsonl")
    for step in range(1, 5):
        sink.write(step * 100, {"env_steps": step * 100, "train/episode_return": step, "train/episodes": 1})
        sink.write(step * 100, {"env_steps": step * 100, "eval/return": 2.0 * step})
    sink.close()
    png = rlog.plot_learning_curve(tmp_path / "m.jsonl", tmp_path / "curve.png")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["curve.png", "m.jsonl"]
