"""hebbref reports through ``logging`` and prints nothing; the command line shows the messages.

The library's logger ``"hebbref"`` carries a NullHandler, so a program that imports
hebbref sees none of its messages until it configures logging; ``hebbref train`` shows
the same final line on standard output as it always did (hebbref/logs.py).
"""
import logging

import pytest

import hebbref
from hebbref.cli import main
from hebbref.experiments.train import TrainConfig, final_summary, train
from hebbref.logs import ConsoleHandler, show_messages

TINY = dict(net="dense8 ramp out", data="fashion-mnist-mini", train_size=40, epochs=1, batch_size=20,
            probe_size=0, train_eval_size=0, backend="numpy", dtype="float64")


@pytest.fixture(autouse=True)
def fresh_logger():
    """Each test starts from the logger as importing hebbref leaves it, and restores it."""
    logger = logging.getLogger("hebbref")
    saved = (list(logger.handlers), logger.level)
    logger.handlers[:] = [h for h in logger.handlers if not isinstance(h, ConsoleHandler)]
    logger.setLevel(logging.NOTSET)
    yield logger
    logger.handlers[:], logger.level = saved


def test_the_library_logger_has_a_null_handler(fresh_logger):
    assert hebbref.__name__ == fresh_logger.name
    assert any(isinstance(h, logging.NullHandler) for h in fresh_logger.handlers)
    assert not any(isinstance(h, logging.StreamHandler) for h in fresh_logger.handlers)


def test_train_from_python_logs_its_summary_and_prints_nothing(tmp_path, capsys, caplog):
    config = TrainConfig(**TINY, out=str(tmp_path / "run"))
    with caplog.at_level(logging.INFO, logger="hebbref"):
        history, _ = train(config)
    captured = capsys.readouterr()
    assert captured.out == "", f"train() printed to stdout: {captured.out!r}"
    summary = final_summary(config, history, tmp_path / "run")
    messages = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert ("hebbref.experiments.train", logging.INFO, summary) in messages, messages


def test_train_without_logging_configured_shows_no_message(tmp_path, capsys):
    train(TrainConfig(**TINY, out=str(tmp_path / "run")))
    captured = capsys.readouterr()
    assert "done:" not in captured.out + captured.err


def test_the_command_line_prints_the_summary_once_on_stdout(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["train", "--net", TINY["net"], "--data", "fashion-mnist-mini", "--train-size", "40",
            "--epochs", "1", "--batch-size", "20", "--probe-size", "0", "--train-eval-size", "0",
            "--backend", "numpy", "--out", str(out)]
    assert main(argv) == 0
    assert main(argv[:-2] + ["--out", str(tmp_path / "again")]) == 0  # a second call: no duplicate handler
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("done: ")]
    assert len(lines) == 2, lines
    assert str(out) in lines[0] and str(tmp_path / "again") in lines[1]


def test_console_handler_sends_warnings_to_stderr(capsys):
    show_messages()
    logger = logging.getLogger("hebbref.some.module")
    logger.info("an info line")
    logger.warning("a warning line")
    logger.debug("not shown")
    captured = capsys.readouterr()
    assert captured.out == "an info line\n"
    assert captured.err == "a warning line\n"
