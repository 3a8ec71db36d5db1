"""A tiny translation model trained and exported by the training package (seconds), for the translation
tests of the service and of training."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

COLOURS = [("red", "rouge"), ("blue", "bleu"), ("green", "vert"), ("black", "noir"), ("white", "blanc")]
ANIMALS = [("dog", "chien"), ("cat", "chat"), ("horse", "cheval"), ("bird", "oiseau")]
VERBS = [("runs", "court"), ("sleeps", "dort"), ("eats", "mange")]
NAME = "translation-tiny"


def pairs() -> list[tuple[str, str]]:
    """``A red dog runs.`` -> ``Un chien rouge court.``: word order changes, so attention must work."""
    return [
        (f"A {c} {a} {v}.", f"Un {fa} {fc} {fv}.")
        for c, fc in COLOURS
        for a, fa in ANIMALS
        for v, fv in VERBS
    ]


def write_data(root: Path) -> Path:
    data = root / "translation"
    data.mkdir(parents=True, exist_ok=True)
    all_pairs = pairs()
    splits = {"train": all_pairs, "val": all_pairs[::7], "test2016": all_pairs[3::11]}
    for split, rows in splits.items():
        (data / f"{split}.en").write_text("".join(f"{en}\n" for en, _ in rows))
        (data / f"{split}.fr").write_text("".join(f"{fr}\n" for _, fr in rows))
    return root


def translation_config(name: str = NAME, cell: str = "gru", epochs: int = 3):
    from training.tasks.translation.config import TranslationConfig

    return TranslationConfig.model_validate(
        {
            "task": "translation",
            "name": name,
            "seed": 3,
            "data": {"source_vocab_size": 40, "target_vocab_size": 40, "max_source_tokens": 32},
            "model": {"cell": cell, "embedding_dim": 24, "hidden_size": 32, "dropout": 0.0},
            "decode": {"beam_size": 3, "max_length": 16},
            "trainer": {
                "epochs": epochs,
                "batch_size": 8,
                "lr": 1e-2,
                "schedule": "constant",
                "warmup_ratio": 0.0,
                "patience": 50,
                "progress": False,
            },
            "export": {"name": name, "default": True, "max_batch_size": 16, "parity_examples": 16},
        }
    )


@dataclass
class TinyTranslation:
    root: Path  # the model repository
    name: str
    history: list  # trainer history (train loss per epoch)


def build_tiny_translation(tmp: Path, cell: str = "gru", epochs: int = 12) -> TinyTranslation:
    from training.settings import TrainingSettings
    from training.tasks.translation.task import TranslationTask
    from training.trainer import Trainer

    data = write_data(tmp / "data")
    task = TranslationTask(
        translation_config(cell=cell, epochs=epochs), TrainingSettings(data_dir=data, runs_dir=tmp / "runs")
    )
    task.load_data()
    trainer = Trainer.for_task(task, tmp / "runs" / NAME)
    checkpoint = trainer.fit()
    root = tmp / "models"
    task.export(trainer.model, root, checkpoint)
    return TinyTranslation(root, NAME, checkpoint["history"])


@functools.cache
def shared_tiny_translation() -> TinyTranslation:
    """One tiny model per test process, shared by the service and API tests (removed at exit)."""
    tmp = Path(tempfile.mkdtemp(prefix="translation-tiny-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    return build_tiny_translation(tmp)


def plugins():
    """The default registry plus the translation plug-in (once, whether or not the registry lists it)."""
    from service.registry import default_plugins
    from service.tasks.translation.plugin import PLUGIN

    registered = default_plugins()
    return registered if any(p.task == PLUGIN.task for p in registered) else [*registered, PLUGIN]
