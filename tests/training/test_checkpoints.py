"""Checkpoint format versions: an earlier ``best.pt`` is upgraded on load, a newer one refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.checkpoints import FORMAT, load_run
from training.config import ConfigError
from training.tasks.sentiment.network import SequenceClassifier

ENCODER = {"vocab_size": 20, "embedding_dim": 4, "hidden_size": 3}


def _format_1(path: Path) -> dict:
    """A best.pt as written before format versions: one member's weights at the top level, no record."""
    model = SequenceClassifier(ENCODER, num_classes=2)
    state = {k.removeprefix("members.0."): v for k, v in model.state_dict().items()}
    checkpoint = {
        "task": "sentiment",
        "config": {"seed": 7},
        "model_args": {"encoder": ENCODER, "num_classes": 2, "members": 1},
        "state_dict": state,
        "metrics": {},
    }
    torch.save(checkpoint, path)
    return model.state_dict()


def test_a_format_1_checkpoint_is_upgraded(tmp_path: Path) -> None:
    expected = _format_1(tmp_path / "best.pt")
    checkpoint = load_run(tmp_path / "best.pt")
    assert checkpoint["format"] == FORMAT
    model = SequenceClassifier(**checkpoint["model_args"])
    model.load_state_dict(checkpoint["state_dict"])  # strict: every key where the network expects it
    assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.items())
    assert checkpoint["seed"] == 7 and checkpoint["epochs_run"] == 0 and checkpoint["command"] == ""


def test_a_newer_format_is_refused(tmp_path: Path) -> None:
    torch.save({"format": FORMAT + 1, "task": "sentiment"}, tmp_path / "best.pt")
    with pytest.raises(ConfigError, match="format"):
        load_run(tmp_path / "best.pt")
