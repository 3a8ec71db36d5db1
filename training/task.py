"""The contract a training-task plug-in fulfils; the generic :class:`~training.trainer.Trainer` needs no more.

A plug-in is a subclass of :class:`TrainingTask` registered with :func:`training.registry.register_task`. Its
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

``export`` is the one skeleton of :mod:`training.exporter`; a task fills its hooks (the ``export`` section
below; :class:`training.exporter.SingleGraphExport` fills most of them for one-graph tasks) with the
shared helpers of :mod:`training.export` and :mod:`training.quantization`. ``report_columns`` and
``report_row`` give the task's table in ``docs/models.md`` (``python -m training report``).
"""

from __future__ import annotations

import abc
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from service.manifest import GraphSpec, ModelManifest, ParityReport
from training.config import ExperimentConfig
from training.exporter import ManifestMetrics, Shipped, export_model
from training.quantization import Graphs, PrecisionChoice
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

    def eval_splits(self) -> Iterable[str]:
        """Splits evaluated once training ends (dev for selection, test for reporting only)."""
        return ("dev", "test")

    # --- export (the skeleton is training.exporter.export_model; these are its hooks) --------------------
    #: graph key in the manifest -> file in the version folder (the task's service contract)
    graph_files: ClassVar[dict[str, str]]

    def export(self, model: nn.Module, models_dir: Path, checkpoint: dict[str, Any]) -> Path:
        """Writes ``<models_dir>/<export.name>/`` (version folder + manifest); returns the model folder."""
        return export_model(self, model, models_dir, checkpoint)

    @abc.abstractmethod
    def prepare_export(self) -> None:
        """Loads what parity and metrics need (the data) if it is not loaded; raises if it cannot be."""

    @abc.abstractmethod
    def architecture_type(self, model: nn.Module) -> str:
        """The manifest's ``architecture.type`` (the rest is the checkpoint's ``model_args``)."""

    @abc.abstractmethod
    def export_graphs(self, model: nn.Module, work: Path) -> dict[str, Path]:
        """fp32 ONNX graphs written under ``work``, keyed like :attr:`graph_files`."""

    @abc.abstractmethod
    def export_parity(self, model: nn.Module, graphs: Graphs) -> ParityReport:
        """ONNX Runtime against PyTorch on real dev examples; raises above ``export.parity_tolerance``."""

    @abc.abstractmethod
    def write_export_files(self, model: nn.Module, version_dir: Path) -> dict[str, str]:
        """Writes the files the codec reads (vocabularies...) into ``version_dir``; returns ``files``."""

    @abc.abstractmethod
    def manifest_fields(self, model: nn.Module) -> dict[str, Any]:
        """The manifest's ``tokenizer``, ``task_options`` and (if any) ``labels``."""

    @abc.abstractmethod
    def manifest_graphs(self, model: nn.Module, graphs: Graphs) -> dict[str, GraphSpec]:
        """The manifest's ``graphs`` entries for these graph files."""

    @abc.abstractmethod
    def choose_export_precision(
        self, model: nn.Module, draft: ModelManifest, version_dir: Path, graphs: Graphs, work: Path
    ) -> PrecisionChoice:
        """fp32 or int8 (:func:`training.quantization.choose_precision`) with the chosen graphs' metrics."""

    def ship_graphs(self, graphs: Graphs, version_dir: Path) -> int:
        """Copies the chosen graphs into the version folder under the contract's names; returns bytes."""
        for key, file in self.graph_files.items():
            shutil.copyfile(graphs[key], version_dir / file)
        return sum((version_dir / file).stat().st_size for file in self.graph_files.values())

    @abc.abstractmethod
    def export_metrics(
        self, model: nn.Module, shipped: Shipped, checkpoint: dict[str, Any]
    ) -> ManifestMetrics:
        """The manifest's ``metrics``: the shipped graphs' figures, PyTorch's beside them."""

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
