"""Training test fixtures: a workspace where ``python -m training`` reads tiny data and writes runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.utils.model_factory import write_sentiment_splits
from training.settings import get_training_settings

CONFIG = """
task = "sentiment"
name = "cli-tiny"
seed = 1
[data]
train = "sentiment/train.tsv"
dev = "sentiment/dev.tsv"
test = "sentiment/test.tsv"
[model]
cell = "gru"
embedding_dim = 12
hidden_size = 10
pooling = "attention"
[trainer]
epochs = 2
batch_size = 16
lr = 1e-2
progress = false
[export]
name = "cli-tiny"
quantize = "never"
parity_examples = 32
"""


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``cli.toml`` (a tiny sentiment config) and its data; runs and models go under ``tmp_path``."""
    write_sentiment_splits(tmp_path / "data" / "sentiment", train=200, dev=32, test=32)
    (tmp_path / "cli.toml").write_text(CONFIG)
    for key, sub in (("DATA_DIR", "data"), ("RUNS_DIR", "runs"), ("MODELS_DIR", "models")):
        monkeypatch.setenv(f"RNNSERVE_{key}", str(tmp_path / sub))
    get_training_settings.cache_clear()
    yield tmp_path
    get_training_settings.cache_clear()
