"""The contract a training-task plug-in fulfils; the generic :class:`~training.trainer.Trainer` needs no more.

A plug-in is a subclass of :class:`TrainingTask` registered with :func:`training.tasks.register_task`. Its
lifecycle in ``python -m training train``::

    task = TaskClass(config, settings)            # config: an instance of TaskClass.config_class
    task.load_data()                              # read splits (training.readers), build vocabularies
    trainer = Trainer.for_task(task, run_dir)     # seeds, then task.build_model() from task.model_args()
    checkpoint = trainer.fit()                    # task.train_batches / task.loss / task.evaluate

and in ``python -m training export``, from a checkpoint::

    task = TaskClass.from_checkpoint(checkpoint, settings)   # config + task_state() restored, no data read
    task.export(model, model_dir, checkpoint)                # writes <model_dir>/<version>/ and config.json

Checkpoints store ``config``, ``model_args`` and ``task_state`` (vocabularies, labels: plain JSON data), so
a model is rebuilt without re-reading the training data.

``export`` builds on the shared helpers in :mod:`training.export` (``export_onnx`` with dynamic axes,
``check_parity`` on real dev examples, ``quantize_int8``, ``graph_specs``, ``prepare_version_dir``) and
writes the manifest with :class:`service.manifest.ModelManifest`; ``SentimentTask.export`` is the
reference. ``report_columns``/``report_row`` give the task's table in ``docs/models.md``
(``python -m training report``).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from service.manifest import ModelManifest
from training.config import ExperimentConfig
from training.report_rows import default_row
from training.settings import TrainingSettings

Batch = dict[str, torch.Tensor]


class TrainingTask(abc.ABC):
    """One task's data, model, batches, loss, evaluation and export."""

    name: ClassVar[str]
    config_class: ClassVar[type[ExperimentConfig]]
    #: the dev metric that selects checkpoints and drives early stopping, and whether higher is better
    selection_metric: ClassVar[str]
    selection_mode: ClassVar[Literal["max", "min"]] = "max"

    def __init__(self, config: ExperimentConfig, settings: TrainingSettings):
        self.config, self.settings = config, settings

    # --- data -------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def load_data(self) -> None:
        """Reads the splits named by the config and builds what :meth:`task_state` returns."""

    @abc.abstractmethod
    def data_info(self) -> dict[str, Any]:
        """Per split: path, rows, sha256 (recorded in the manifest)."""

    @abc.abstractmethod
    def train_batches(self, generator: torch.Generator) -> Iterator[Batch]:
        """One epoch of shuffled training batches (``generator`` makes the order reproducible)."""

    @abc.abstractmethod
    def num_train_batches(self) -> int: ...

    # --- model ------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def model_args(self) -> dict[str, Any]:
        """Plain-data keyword arguments that :meth:`build_model` turns into the model."""

    @abc.abstractmethod
    def build_model(self, model_args: dict[str, Any] | None = None) -> nn.Module: ...

    @abc.abstractmethod
    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor: ...

    @abc.abstractmethod
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """Metrics of ``model`` (in eval mode) on a split: must include :attr:`selection_metric` for dev."""

    # --- persistence ------------------------------------------------------------------------------------
    @abc.abstractmethod
    def task_state(self) -> dict[str, Any]:
        """JSON-able state needed to rebuild inputs without the data (vocabularies, labels)."""

    @abc.abstractmethod
    def load_task_state(self, state: dict[str, Any]) -> None: ...

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any], settings: TrainingSettings) -> TrainingTask:
        task = cls(cls.config_class.model_validate(checkpoint["config"]), settings)
        task.load_task_state(checkpoint["task_state"])
        return task

    @abc.abstractmethod
    def export(self, model: nn.Module, models_dir: Path, checkpoint: dict[str, Any]) -> Path:
        """Writes ``<models_dir>/<export.name>/`` (version folder + manifest); returns the model folder."""

    def eval_splits(self) -> Iterable[str]:
        """Splits evaluated once training ends (dev for selection, test for reporting only)."""
        return ("dev", "test")

    # --- reporting (docs/models.md, see training.report) ------------------------------------------------
    #: section heading in docs/models.md
    report_title: ClassVar[str] = ""
    #: lines printed under the task's table (where other figures of the task are measured)
    report_notes: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def report_columns(cls) -> list[str]:
        return ["model", "dev", "test", "parameters", "ONNX size"]

    @classmethod
    def report_row(cls, model_dir: Path, manifest: ModelManifest) -> dict[str, str]:
        """One table row of a model in the repository; override to add task-specific figures (latency)."""
        return default_row(model_dir, manifest)
