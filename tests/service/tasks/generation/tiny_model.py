"""A tiny character language model trained and exported by the training package (a few seconds), for the
generation tests. Shared by the service and training tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\n"
    "All:\nResolved. resolved.\n\n"
    "First Citizen:\nFirst, you know Caius Marcius is chief enemy to the people.\n\n"
) * 12
NAME = "generation-tiny"


@dataclass
class TinyGeneration:
    root: Path  # the model repository
    name: str
    model: object  # training.tasks.generation.network.CharLM, in eval mode
    codec: object  # service.tasks.generation.CharCodec


def generation_config(data_path: Path, name: str = NAME, cell: str = "lstm", epochs: int = 30):
    from training.tasks.generation.config import GenerationConfig

    return GenerationConfig.model_validate(
        {
            "task": "generation",
            "name": name,
            "seed": 3,
            "data": {"path": str(data_path), "val_fraction": 0.1},
            "model": {"cell": cell, "embed_dim": 16, "hidden_size": 48, "num_layers": 2, "dropout": 0.0},
            "lm": {"seq_len": 48, "eval_segments": 2, "parity_steps": 24},
            "trainer": {
                "epochs": epochs,
                "batch_size": 16,
                "lr": 1e-2,
                "schedule": "constant",
                "warmup_ratio": 0.0,
                "progress": False,
                "patience": 10,
            },
            "export": {"name": name, "default": True, "max_batch_size": 16},
        }
    )


def make_generation_repository(work: Path, cell: str = "lstm", name: str = NAME) -> TinyGeneration:
    """Trains on ``TEXT`` with the generic trainer and exports to ``work/models``."""
    from training.settings import TrainingSettings
    from training.tasks.generation.task import GenerationTask
    from training.trainer import Trainer

    data = work / "data" / "tiny.txt"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text(TEXT, encoding="utf-8")
    settings = TrainingSettings(data_dir=work / "data", runs_dir=work / "runs", models_dir=work / "models")
    config = generation_config(data, name=name, cell=cell)
    task = GenerationTask(config, settings)
    task.load_data()
    model = task.build_model()
    checkpoint = Trainer(task, model, config, settings.runs_dir / name).fit()
    task.export(model, settings.models_dir, checkpoint)
    return TinyGeneration(settings.models_dir, name, model.eval(), task.codec)
