"""The generic training loop on tiny synthetic data: loss goes down, runs are reproducible and recorded, and
an interrupted run resumes from its checkpoint to exactly the result of an uninterrupted one."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.utils.model_factory import sentiment_config, write_sentiment_splits
from training.config import ConfigError
from training.settings import TrainingSettings
from training.tasks.sentiment.task import SentimentTask
from training.trainer import CHECKPOINT_FILE, Trainer, lr_lambda


def tiny_task(tmp_path: Path, epochs: int = 4, train: int = 300, **model) -> tuple[SentimentTask, Path]:
    data = write_sentiment_splits(tmp_path / "data", train=train, dev=48, test=48)
    config = sentiment_config(data, name="tiny", **model)
    config.trainer.epochs = epochs
    config.trainer.patience = epochs
    settings = TrainingSettings(
        data_dir=tmp_path / "data", runs_dir=tmp_path / "runs", models_dir=tmp_path / "m"
    )
    task = SentimentTask(config, settings)
    task.load_data()
    return task, settings.runs_dir / "tiny"


def train_tiny(tmp_path: Path, epochs: int = 4, **model) -> tuple[SentimentTask, dict, Path]:
    task, run_dir = tiny_task(tmp_path, epochs, **model)
    return task, Trainer.for_task(task, run_dir).fit(), run_dir


class Interrupted(RuntimeError):
    """Stands for a session that ends without warning."""


def count_steps(task: Any, crash_after: int | None = None) -> list[int]:
    """Counts ``task.loss`` calls (training steps) and raises :class:`Interrupted` after ``crash_after``."""
    calls: list[int] = []
    real = task.loss

    def loss(model, batch):
        if crash_after is not None and len(calls) >= crash_after:
            raise Interrupted(f"after {len(calls)} steps")
        calls.append(1)
        return real(model, batch)

    task.loss = loss
    return calls


def without_timings(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "epoch_time_s"} for h in history]


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
    assert not (run_dir / CHECKPOINT_FILE).exists()  # a completed run is not resumed by a rerun


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


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_schedule_decays_to_its_floor(schedule: str) -> None:
    factor = lr_lambda(schedule, warmup_steps=10, total_steps=110, min_ratio=0.05)
    decay = [factor(step) for step in range(10, 111)]
    assert decay[0] == pytest.approx(1.0) and decay[-1] == pytest.approx(0.05)
    assert all(a >= b for a, b in itertools.pairwise(decay))
    assert factor(500) == pytest.approx(0.05)


def test_an_interrupted_run_resumes_to_exactly_the_uninterrupted_result(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = {"cell": "gru", "dropout": 0.3, "embedding_dropout": 0.2}  # dropout draws on the global RNG
    _, reference, _ = train_tiny(tmp_path / "whole", epochs=4, **model)

    task, run_dir = tiny_task(tmp_path / "cut", epochs=4, **model)
    steps = task.num_train_batches()
    count_steps(task, crash_after=2 * steps + steps // 2)  # in the middle of epoch 3
    with pytest.raises(Interrupted):
        Trainer.for_task(task, run_dir).fit()
    saved = torch.load(run_dir / CHECKPOINT_FILE, weights_only=False)
    assert saved["progress"]["epoch"] == 2 and not (run_dir / "best.pt").exists()

    task, run_dir = tiny_task(tmp_path / "cut", epochs=4, **model)  # a new session
    calls = count_steps(task)
    with caplog.at_level(logging.INFO, logger="training.trainer"):
        resumed = Trainer.for_task(task, run_dir).fit(resume=True)
    assert "after epoch 2/4" in caplog.text
    assert len(calls) == 2 * steps  # epochs 3 and 4 only
    assert reference["state_dict"].keys() == resumed["state_dict"].keys()
    for name, tensor in reference["state_dict"].items():
        assert torch.equal(tensor, resumed["state_dict"][name]), name
    assert without_timings(resumed["history"]) == without_timings(reference["history"])
    assert resumed["metrics"] == reference["metrics"]
    for key in ("best_metric", "best_epoch", "epochs_run"):
        assert resumed[key] == reference[key]
    assert resumed["train_time_s"] >= sum(h["epoch_time_s"] for h in resumed["history"][:2])
    assert not (run_dir / CHECKPOINT_FILE).exists()


def test_resume_refuses_another_experiment_and_training_afresh_overwrites(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    task, run_dir = tiny_task(tmp_path, epochs=3)
    count_steps(task, crash_after=task.num_train_batches() + 1)
    with pytest.raises(Interrupted):
        Trainer.for_task(task, run_dir).fit()

    task, _ = tiny_task(tmp_path, epochs=3)
    task.config.trainer.lr = 5e-3
    task.config.trainer.epochs = 4  # the schedule depends on it
    with pytest.raises(ConfigError, match=r"trainer\.epochs: 3 -> 4; trainer\.lr: 0\.01 -> 0\.005"):
        Trainer.for_task(task, run_dir).fit(resume=True)

    task, _ = tiny_task(tmp_path, epochs=3, train=301)  # same config, other data
    with pytest.raises(ConfigError, match=r"data train\.rows: 300 -> 301"):
        Trainer.for_task(task, run_dir).fit(resume=True)
    assert (run_dir / CHECKPOINT_FILE).exists()
    saved = torch.load(run_dir / CHECKPOINT_FILE, weights_only=False)
    torch.save({"model": saved["model"], "optimizer": saved["optimizer"]}, run_dir / CHECKPOINT_FILE)
    with pytest.raises(ConfigError, match="not a resumable checkpoint"):  # e.g. the old generation loop's
        Trainer.for_task(task, run_dir).fit(resume=True)

    task, _ = tiny_task(tmp_path, epochs=3)
    calls = count_steps(task)
    with caplog.at_level(logging.INFO, logger="training.trainer"):
        checkpoint = Trainer.for_task(task, run_dir).fit()
    assert "starting afresh and overwriting it" in caplog.text
    assert len(calls) == 3 * task.num_train_batches() and checkpoint["epochs_run"] == 3
    assert not (run_dir / CHECKPOINT_FILE).exists()


def test_resume_ignores_progress_and_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task, run_dir = tiny_task(tmp_path, epochs=2)
    count_steps(task, crash_after=task.num_train_batches() + 1)
    with pytest.raises(Interrupted):
        Trainer.for_task(task, run_dir).fit()
    task, _ = tiny_task(tmp_path, epochs=2)
    task.config.trainer.progress = True
    task.config.trainer.threads = 2
    task.config.export.description = "another description"
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # the CPU is shared: keep one thread
    calls = count_steps(task)
    checkpoint = Trainer.for_task(task, run_dir).fit(resume=True)
    assert len(calls) == task.num_train_batches() and checkpoint["epochs_run"] == 2


def test_init_from_starts_the_model_from_a_runs_weights(tmp_path: Path) -> None:
    task, _, run_dir = train_tiny(tmp_path, epochs=1)
    saved = torch.load(run_dir / "best.pt", weights_only=False)["state_dict"]
    task.config.trainer.init_from = str(run_dir / "best.pt")
    warm = Trainer.for_task(task, run_dir.with_name("warm")).model.state_dict()
    assert saved.keys() == warm.keys() and all(torch.equal(saved[k], warm[k]) for k in saved)

    task.config.trainer.init_from = None
    cold = Trainer.for_task(task, run_dir.with_name("cold")).model.state_dict()
    assert not all(torch.equal(saved[k], cold[k]) for k in saved)


def test_init_from_refuses_another_architecture_or_a_missing_file(tmp_path: Path) -> None:
    _, _, run_dir = train_tiny(tmp_path, epochs=1)
    wider, _ = tiny_task(tmp_path / "wider", hidden_size=11)
    wider.config.trainer.init_from = str(run_dir / "best.pt")
    with pytest.raises(ConfigError, match=r"init_from .*architecture"):
        Trainer.for_task(wider, run_dir.with_name("wider"))
    wider.config.trainer.init_from = str(tmp_path / "nowhere.pt")
    with pytest.raises(ConfigError, match="no such checkpoint"):
        Trainer.for_task(wider, run_dir.with_name("wider"))
