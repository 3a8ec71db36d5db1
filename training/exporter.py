"""The one export skeleton: every task's ``python -m training export`` runs :func:`export_model`.

The steps are the same for every task; what differs is a hook of the task's
:class:`~training.task.TrainingTask`::

    task.prepare_export()                                    data for parity and metrics
    graphs = task.export_graphs(model, work)                 fp32 ONNX graphs, keyed like task.graph_files
    parity = task.export_parity(model, graphs)               ONNX Runtime against PyTorch
    files = task.write_export_files(model, version_dir)      vocabularies, transitions, tokenizer models
    draft = manifest with the fp32 graph specs               what the precision choice may serve from
    choice = task.choose_export_precision(model, draft, version_dir, graphs, work)   fp32 or int8
    size = task.ship_graphs(choice.graphs, version_dir)      under the contract's file names
    metrics = task.export_metrics(model, Shipped(draft, version_dir, choice), checkpoint)
    manifest = draft + shipped graph specs, metrics, size, quantization report   -> models/<name>/config.json

:class:`SingleGraphExport` fills the hooks for tasks with one graph whose output is compared and scored
directly (sentiment, NER); translation and generation write their own.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import onnxruntime as ort
from torch import nn

from service.manifest import GraphSpec, ModelManifest, ParityReport
from training.export import check_parity, graph_specs, ort_session, prepare_version_dir, training_info
from training.quantization import Graphs, Metrics, PrecisionChoice, choose_precision

if TYPE_CHECKING:
    from training.task import TrainingTask

Feeds = dict[str, np.ndarray]
#: a run's ``best.pt`` as loaded (config, model_args, task_state, metrics, training record)
Checkpoint = dict[str, Any]
#: a manifest's ``metrics``: split (or ``pytorch``) -> metric -> value
ManifestMetrics = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Shipped:
    """What an export has written when the task is asked for the manifest's metrics."""

    draft: ModelManifest  # the manifest so far: the fp32 graph specs, no metrics
    version_dir: Path  # the shipped graphs and files
    choice: PrecisionChoice  # fp32 or int8, with the metrics measured on the chosen graphs


def export_model(task: TrainingTask, model: nn.Module, models_dir: Path, checkpoint: dict[str, Any]) -> Path:
    """Writes ``<models_dir>/<export.name>/<export.version>/`` and the manifest; returns the model folder."""
    cfg = task.config.export
    task.prepare_export()
    model.eval()
    with tempfile.TemporaryDirectory(prefix=f"{task.name}-export-") as tmp:
        work = Path(tmp)
        graphs = task.export_graphs(model, work)
        parity = task.export_parity(model, graphs)
        version_dir = prepare_version_dir(models_dir, cfg.name, cfg.version)
        files = task.write_export_files(model, version_dir)
        draft = ModelManifest(
            name=cfg.name,
            task=task.name,
            description=cfg.description,
            default=cfg.default,
            architecture={"type": task.architecture_type(model), **checkpoint["model_args"]},
            graphs=task.manifest_graphs(model, graphs),
            max_batch_size=cfg.max_batch_size,
            files=files,
            training=training_info(checkpoint),
            parameters=sum(p.numel() for p in model.parameters()),
            size_bytes=0,
            parity=parity,
            **task.manifest_fields(model),
        )
        choice = task.choose_export_precision(model, draft, version_dir, graphs, work)
        size = task.ship_graphs(choice.graphs, version_dir)
    shipped = {key: version_dir / file for key, file in task.graph_files.items()}
    manifest = draft.model_copy(
        update={
            "graphs": task.manifest_graphs(model, shipped),
            "metrics": task.export_metrics(model, Shipped(draft, version_dir, choice), checkpoint),
            "size_bytes": size,
            "quantization": choice.report,
        }
    )
    ModelManifest.model_validate(manifest.model_dump())
    manifest.save(models_dir / cfg.name)
    return models_dir / cfg.name


def specs_of(graphs: Graphs, graph_files: dict[str, str]) -> dict[str, GraphSpec]:
    """The manifest's graph entries read back from the graph files (names as the contract ships them)."""
    out = {}
    for key, file in graph_files.items():
        inputs, outputs = graph_specs(graphs[key])
        out[key] = GraphSpec(file=file, inputs=inputs, outputs=outputs)
    return out


class SingleGraphExport:
    """Export hooks of a task with one graph (``model``) whose output is compared with PyTorch's, scored by
    the task's own metrics through ONNX Runtime, and compared again between fp32 and int8.

    The task gives :attr:`export_output` (the compared output), :attr:`compared` (its name in reports),
    :meth:`export_graph`, :meth:`parity_feeds`, :meth:`reference_output` and :meth:`onnx_metrics`.
    """

    export_output: ClassVar[str]
    compared: ClassVar[str]
    selection_metric: ClassVar[str]
    graph_files: ClassVar[dict[str, str]]

    # -- what the task gives ---------------------------------------------------------------------
    def export_graph(self, model: nn.Module, path: Path) -> None:
        raise NotImplementedError

    def parity_feeds(self, limit: int) -> list[Feeds]:
        """Real dev examples (mixed lengths, so padding is exercised) as ONNX Runtime feeds."""
        raise NotImplementedError

    def reference_output(self, model: nn.Module, feeds: Feeds) -> np.ndarray:
        """PyTorch's value of :attr:`export_output` for one batch of feeds."""
        raise NotImplementedError

    def onnx_metrics(self, model: nn.Module, session: ort.InferenceSession) -> Metrics:
        """The task's metrics of a graph on every evaluated split."""
        raise NotImplementedError

    # -- the hooks -------------------------------------------------------------------------------
    def export_graphs(self, model: nn.Module, work: Path) -> dict[str, Path]:
        ((key, file),) = self.graph_files.items()
        self.export_graph(model, work / file)
        return {key: work / file}

    def export_parity(self, model: nn.Module, graphs: Graphs) -> ParityReport:
        cfg = self.config.export
        feeds = self.parity_feeds(cfg.parity_examples)
        session = ort_session(next(iter(graphs.values())))
        return check_parity(
            lambda feed: self.reference_output(model, feed),
            session,
            feeds,
            self.export_output,
            cfg.parity_tolerance,
        )

    def manifest_graphs(self, model: nn.Module, graphs: Graphs) -> dict[str, GraphSpec]:
        return specs_of(graphs, self.graph_files)

    def choose_export_precision(
        self, model: nn.Module, draft: ModelManifest, version_dir: Path, graphs: Graphs, work: Path
    ) -> PrecisionChoice:
        cfg = self.config.export
        feeds = self.parity_feeds(cfg.parity_examples)

        def evaluate(candidate: Graphs) -> Metrics:
            return self.onnx_metrics(model, ort_session(next(iter(candidate.values()))))

        def outputs(candidate: Graphs) -> Sequence[np.ndarray]:
            session = ort_session(next(iter(candidate.values())))
            return [session.run([self.export_output], feed)[0] for feed in feeds]

        return choose_precision(graphs, cfg, evaluate, self.selection_metric, outputs, compared=self.compared)

    def export_metrics(
        self, model: nn.Module, shipped: Shipped, checkpoint: dict[str, Any]
    ) -> ManifestMetrics:
        """The shipped graph's figures, and PyTorch's selection metric per split beside them."""
        metric = self.selection_metric
        pytorch = {f"{split}_{metric}": values[metric] for split, values in checkpoint["metrics"].items()}
        return {**shipped.choice.metrics, "pytorch": pytorch}
