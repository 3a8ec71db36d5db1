"""Tiny, real model-repository entries for tests: trained on synthetic data in a few seconds.

``make_sentiment_repository(root)`` writes a two-class sentiment TSV whose label follows from its words,
trains a small RNN classifier with the real training package, and exports it (ONNX + vocab + manifest)
into ``root/<name>/`` exactly as ``python -m training train --export`` would.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

POSITIVE = ["good", "great", "fine", "lovely", "superb", "fun", "moving", "charming"]
NEGATIVE = ["bad", "awful", "dull", "boring", "poor", "tedious", "messy", "bland"]
NEUTRAL = ["the", "film", "movie", "plot", "is", "a", "very", "story", "acting", "and", "it", "was", "quite"]


def synthetic_sentiment_rows(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """``(text, label)`` rows: label ``1`` iff the text holds more positive than negative words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        label = rng.random() < 0.5
        strong, weak = (POSITIVE, NEGATIVE) if label else (NEGATIVE, POSITIVE)
        words = (
            rng.sample(NEUTRAL, rng.randint(1, 6))
            + rng.sample(strong, 2)
            + rng.sample(weak, rng.randint(0, 1))
        )
        rng.shuffle(words)
        rows.append((" ".join(words), "1" if label else "0"))
    return rows


def write_sentiment_tsv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf-8")
    return path


def write_sentiment_splits(
    data_dir: Path, train: int = 400, dev: int = 64, test: int = 64
) -> dict[str, Path]:
    return {
        split: write_sentiment_tsv(data_dir / f"{split}.tsv", synthetic_sentiment_rows(n, seed=i))
        for i, (split, n) in enumerate((("train", train), ("dev", dev), ("test", test)))
    }


def sentiment_config(data: dict[str, Path], name: str = "sentiment-tiny", **model):
    """A tiny sentiment experiment over ``data`` splits; ``model`` overrides the ``[model]`` section."""
    from training.tasks.sentiment.config import SentimentConfig

    model_section = {"cell": "lstm", "embedding_dim": 16, "hidden_size": 16, "dropout": 0.0,
                     "embedding_dropout": 0.0, "head_dropout": 0.0, **model}  # fmt: skip
    return SentimentConfig.model_validate(
        {
            "task": "sentiment",
            "name": name,
            "seed": 0,
            "data": {k: str(v) for k, v in data.items()} | {"label_names": ["negative", "positive"]},
            "model": model_section,
            "trainer": {"epochs": 3, "batch_size": 16, "lr": 1e-2, "progress": False, "patience": 3},
            "export": {"name": name, "default": True, "quantize": "never", "parity_examples": 64},
        }
    )


def make_sentiment_repository(
    root: Path,
    name: str = "sentiment-tiny",
    cell: str = "lstm",
    bidirectional: bool = False,
    pooling: str = "max",
    default: bool = True,
    quantize: str = "never",
    epochs: int = 3,
    members: int = 1,
) -> Path:
    """Trains and exports a tiny sentiment model into ``root/<name>/``; returns that model folder.

    The manifest is valid for :class:`service.manifest.ModelManifest` with ``default=default``; version 1
    holds ``model.onnx`` (inputs ``input_ids``/``lengths``, output ``probabilities``) and ``vocab.json``.
    """
    with tempfile.TemporaryDirectory(prefix="rnnserve-tiny-") as tmp:
        work = Path(tmp)
        data = write_sentiment_splits(work / "data")
        config = sentiment_config(
            data, name=name, cell=cell, bidirectional=bidirectional, pooling=pooling, members=members
        )
        config.trainer.epochs = epochs
        config.export.default = default
        config.export.quantize = quantize
        return train_sentiment(config, work, root)[2]


def train_sentiment(config, work: Path, models_dir: Path):
    """Trains ``config`` with the real training package (runs under ``work``) and exports it into
    ``models_dir``: ``(task, trained model in eval mode, exported model folder)``."""
    from training.settings import TrainingSettings
    from training.tasks.sentiment.task import SentimentTask
    from training.trainer import Trainer

    settings = TrainingSettings(data_dir=work / "data", runs_dir=work / "runs", models_dir=models_dir)
    task = SentimentTask(config, settings)
    task.load_data()
    trainer = Trainer.for_task(task, settings.runs_dir / config.name)
    checkpoint = trainer.fit()
    model_dir = task.export(trainer.model, models_dir, checkpoint)
    return task, trainer.model.eval(), model_dir
