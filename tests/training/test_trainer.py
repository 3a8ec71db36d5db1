"""The generic training loop on tiny synthetic data: loss goes down, runs are reproducible and recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.utils.model_factory import sentiment_config, write_sentiment_splits
from training.settings import TrainingSettings
from training.tasks.sentiment import SentimentTask
from training.trainer import Trainer, lr_lambda


def train_tiny(tmp_path: Path, epochs: int = 4, **model) -> tuple[SentimentTask, dict, Path]:
    data = write_sentiment_splits(tmp_path / "data", train=300, dev=48, test=48)
    config = sentiment_config(data, name="tiny", **model)
    config.trainer.epochs = epochs
    config.trainer.patience = epochs
    settings = TrainingSettings(
        data_dir=tmp_path / "data", runs_dir=tmp_path / "runs", models_dir=tmp_path / "m"
    )
    task = SentimentTask(config, settings)
    task.load_data()
    run_dir = settings.runs_dir / "tiny"
    return task, Trainer.for_task(task, run_dir).fit(), run_dir


def test_short_run_lowers_loss_and_writes_its_records(tmp_path: Path) -> None:
    _, checkpoint, run_dir = train_tiny(tmp_path)
    history = checkpoint["history"]
    assert history[-1]["train_loss"] < 0.75 * history[0]["train_loss"]
    assert checkpoint["metrics"]["dev"]["accuracy"] > 0.8  # the synthetic label is learnable
    for record in history:
        assert record["grad_norm_max"] >= record["grad_norm_mean"] >= record["grad_norm_min"] > 0
        assert 0 <= record["clipped_share"] <= 1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["best_epoch"] == checkpoint["best_epoch"]
    assert metrics["history"][0]["dev"]["accuracy"] == history[0]["dev"]["accuracy"]
    assert (run_dir / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = torch.load(run_dir / "best.pt", weights_only=False)
    assert {"task", "config", "model_args", "task_state", "state_dict", "best_metric"} <= saved.keys()
    assert saved["best_metric"] == max(h["dev"]["accuracy"] for h in history)


def test_checkpoint_rebuilds_the_same_model_without_data(tmp_path: Path) -> None:
    task, checkpoint, run_dir = train_tiny(tmp_path, epochs=2)
    saved = torch.load(run_dir / "best.pt", weights_only=False)
    restored = SentimentTask.from_checkpoint(saved, task.settings)
    model = restored.build_model(saved["model_args"])
    model.load_state_dict(saved["state_dict"])
    restored.splits = task.splits  # same encoded data, the restored vocab must encode identically
    assert restored.codec.vocab.itos == task.codec.vocab.itos
    assert restored.evaluate(model, "dev") == checkpoint["metrics"]["dev"]


def test_fixed_seed_reproduces_the_run(tmp_path: Path) -> None:
    _, first, _ = train_tiny(tmp_path / "a", epochs=2, cell="gru")
    _, second, _ = train_tiny(tmp_path / "b", epochs=2, cell="gru")
    assert [h["train_loss"] for h in first["history"]] == [h["train_loss"] for h in second["history"]]


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
def test_schedule_warms_up_then_decays(schedule: str) -> None:
    factor = lr_lambda(schedule, warmup_steps=10, total_steps=110)
    assert factor(0) == pytest.approx(0.1)
    assert factor(9) == pytest.approx(1.0)
    end = factor(110)
    assert end == pytest.approx(1.0 if schedule == "constant" else 0.0, abs=1e-9)
