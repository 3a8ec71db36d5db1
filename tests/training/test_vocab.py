"""The training side builds its vocabulary with the shared text code; it round-trips through the JSON file
the service loads, and the config's min_freq / max_vocab limits apply."""

from __future__ import annotations

from pathlib import Path

from service.text import SPECIALS, Vocab
from tests.utils.model_factory import sentiment_config, write_sentiment_splits
from training.settings import TrainingSettings
from training.tasks.sentiment.task import SentimentTask


def load_task(tmp_path: Path, **data) -> SentimentTask:
    paths = write_sentiment_splits(tmp_path / "data", train=120, dev=8, test=8)
    config = sentiment_config(paths)
    config.data = config.data.model_copy(update=data)
    task = SentimentTask(config, TrainingSettings(data_dir=tmp_path, runs_dir=tmp_path, models_dir=tmp_path))
    task.load_data()
    return task


def test_vocab_round_trip_through_json(tmp_path: Path) -> None:
    task = load_task(tmp_path)
    vocab = task.codec.vocab
    vocab.save(tmp_path / "vocab.json")
    loaded = Vocab.load(tmp_path / "vocab.json")
    assert loaded.itos == vocab.itos and tuple(loaded.itos[:4]) == SPECIALS
    text = "the film is good and unseenword"
    assert loaded.encode(t.text for t in task.codec.tokenizer.tokenize(text)) == task.codec.encode(text)
    assert task.codec.encode(text)[-1] == Vocab.unk_id


def test_vocab_limits_from_config(tmp_path: Path) -> None:
    full = load_task(tmp_path / "a")
    capped = load_task(tmp_path / "b", max_vocab=10)
    frequent = load_task(tmp_path / "c", min_freq=1000)
    assert len(capped.codec.vocab) == 10 < len(full.codec.vocab)
    assert capped.codec.vocab.itos == full.codec.vocab.itos[:10]
    assert frequent.codec.vocab.itos == list(SPECIALS)
