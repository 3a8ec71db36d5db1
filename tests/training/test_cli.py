"""``python -m training``: train (+export, resume) from a TOML file, evaluate a checkpoint, report, errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from service.manifest import ModelManifest
from training.cli import main
from training.report import build_report


def test_train_export_evaluate(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(workspace / "cli.toml")
    assert main(["train", "--config", config, "--export", "--trainer.epochs=1", "--model.hidden_size=8"]) == 0
    manifest = ModelManifest.load(workspace / "models" / "cli-tiny")
    assert manifest.training.config["trainer"]["epochs"] == 1
    recorded = f"python -m training train --config {config} --export --trainer.epochs=1 --model.hidden_size=8"
    assert manifest.training.command == recorded
    assert manifest.architecture["encoder"]["hidden_size"] == 8
    assert manifest.training.data["train"]["rows"] == 200
    metrics = json.loads((workspace / "runs" / "cli-tiny" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(workspace / "runs" / "cli-tiny" / "best.pt")]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["accuracy"] == pytest.approx(metrics["metrics"]["dev"]["accuracy"])
    checkpoint = str(workspace / "runs" / "cli-tiny" / "best.pt")
    assert (
        main(["export", "--checkpoint", checkpoint, "--export.name=cli-again", "--export.default=true"]) == 0
    )
    again = ModelManifest.load(workspace / "models" / "cli-again")
    assert again.default and not manifest.default
    assert again.metrics["dev"] == manifest.metrics["dev"]
    assert main(["export", "--checkpoint", checkpoint, "--model.cell=rnn"]) == 2


def test_train_resumes_an_interrupted_run(
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from training.tasks.sentiment.task import SentimentTask

    config = str(workspace / "cli.toml")
    evaluate, evaluated = SentimentTask.evaluate, []

    def interrupted_in_epoch_2(self, model, split):
        evaluated.append(split)
        if len(evaluated) == 2:
            raise KeyboardInterrupt
        return evaluate(self, model, split)

    monkeypatch.setattr(SentimentTask, "evaluate", interrupted_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        main(["train", "--config", config])
    monkeypatch.setattr(SentimentTask, "evaluate", evaluate)
    run_dir = workspace / "runs" / "cli-tiny"
    assert (run_dir / "checkpoint.pt").exists() and not (run_dir / "best.pt").exists()
    assert main(["train", "--config", config, "--resume", "--trainer.lr=0.5"]) == 2
    assert "cannot resume" in capsys.readouterr().err and (run_dir / "checkpoint.pt").exists()
    with caplog.at_level(logging.INFO, logger="training"):
        assert main(["train", "--config", config, "--resume"]) == 0
    assert "after epoch 1/2" in caplog.text
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert not (run_dir / "checkpoint.pt").exists()


def test_unknown_override_fails_before_training(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--config", str(workspace / "cli.toml"), "--trainer.epoch=3"]) == 2
    assert "unknown config key 'trainer.epoch'" in capsys.readouterr().err
    assert not (workspace / "runs").exists()


def test_report_has_a_row_per_model(sentiment_model_repo: Path) -> None:
    report = build_report(sentiment_model_repo)
    row = next(line for line in report.splitlines() if "`sentiment-tiny`" in line)
    assert "(default)" in row and " ms |" in row
    assert "## Sentiment" in report and "Machine:" in report


def test_share_weights_rewrites_a_model_and_fails_cleanly_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.training.test_weight_sharing import write_two_graph_model

    model_dir = write_two_graph_model(tmp_path)
    shipped = ModelManifest.load(model_dir).size_bytes
    assert main(["share-weights", str(model_dir)]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert (report["tensors"], report["unique_tensors"], report["bytes_before"]) == (4, 2, shipped)
    manifest = ModelManifest.load(model_dir)
    assert manifest.files == {"weights": "weights.bin"} and manifest.size_bytes == report["bytes_after"]
    assert main(["share-weights", str(tmp_path)]) == 1
    assert "neither a model folder" in capsys.readouterr().err


def test_every_bundled_model_records_a_command_this_cli_runs() -> None:
    """A manifest's command is how to reproduce its model: each step must still parse, and a training step's
    config file, with the step's overrides, must still load."""
    import shlex

    from training.cli import build_parser, load_experiment

    repo = Path(__file__).parents[2]  # the commands name files relative to it
    manifests = sorted((repo / "models").glob("*/config.json"))
    assert manifests
    for path in manifests:
        command = ModelManifest.load(path.parent).training.command
        for step in command.split(" && "):
            words = shlex.split(step)
            assert words[:3] == ["python", "-m", "training"], (path.parent.name, step)
            args, overrides = build_parser().parse_known_args(words[3:])
            if args.command in ("train", "distill"):
                load_experiment(repo / args.config, overrides)
