"""Text generation (one-to-many) training plug-in: a character-level LSTM/GRU language model.

    python -m training train --config training/configs/generation_lstm.toml --export [--resume]
    python -m training export --checkpoint runs/generation-lstm/best.pt
    python -m training quantize --model models/generation-lstm [--export.KEY=V]   (post hoc, fp32 exports)

Data: one plain text, the last ``data.val_fraction`` held out as the ``dev`` split (there is no test split;
validation loss is the figure reported). Metric: ``loss``, nats per character over the
held-out text read as ``lm.eval_segments`` streams from ``<bos>`` (lower is better); ``window_loss`` is the
same over zero-state windows of ``lm.seq_len`` characters (the training objective, nanoGPT-style).

Export ships fp32 or weight-only int8 graphs by :func:`training.quantization.choose_precision`
(``export.quantize``; the rule is in nats/char of the dev ``loss`` measured on the step graph);
:meth:`GenerationTask.quantize_exported` applies the same choice to a model exported in fp32 whose
checkpoint is gone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx
import torch
from onnx.external_data_helper import convert_model_from_external_data
from pydantic import BaseModel
from torch import nn
from torch.nn import functional as F

from service.manifest import GraphSpec, ModelManifest, ParityReport, QuantizationReport, version_dirs
from service.tasks.generation.codec import CharCodec
from service.tasks.generation.contract import FILES, GRAPH_FILES
from service.text import CharTokenizer, Vocab
from training.config import build_config, require_export_overrides
from training.exporter import ManifestMetrics, Shipped
from training.quantization import Graphs, Metrics, PrecisionChoice, choose_precision
from training.registry import register_task
from training.report_rows import default_row, measure_latency_ms
from training.settings import TrainingSettings
from training.task import Batch, TrainingTask
from training.tasks.generation.config import GenerationConfig
from training.tasks.generation.data import CharCorpus, training_batch
from training.tasks.generation.export import (
    PREFILL_FILE,
    STEP_FILE,
    export_graphs,
    external_tensors,
    graph_specs_of,
    is_int8,
    onnx_losses,
    reuse_transposed_weights,
    rollout_logits,
    rollout_parity,
)
from training.tasks.generation.metrics import stream_loss, window_loss
from training.tasks.generation.network import CharLM
from training.weight_sharing import WEIGHTS_FILE, WEIGHTS_KEY, SharingReport, graph_bytes, share_weights

log = logging.getLogger(__name__)

QUANTIZE_COMMAND = "python -m training quantize --model"


class QuantizeExportedError(ValueError):
    """A repository model that the post-hoc quantization cannot (or must not) rewrite."""


def _known_keys(schema: type[BaseModel], data: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    """``data`` without the keys ``schema`` no longer has (a recorded config of an older code version)."""
    kept = {}
    for key, value in data.items():
        field = schema.model_fields.get(key)
        if field is None:
            log.warning("recorded config key %s%s is no longer part of the schema; ignored", path, key)
            continue
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel) and isinstance(value, Mapping):
            value = _known_keys(section, value, f"{path}{key}.")
        kept[key] = value
    return kept


@register_task
class GenerationTask(TrainingTask):
    name: ClassVar[str] = "generation"
    config_class: ClassVar[type[GenerationConfig]] = GenerationConfig
    selection_metric: ClassVar[str] = "loss"
    selection_mode: ClassVar[str] = "min"
    graph_files: ClassVar[dict[str, str]] = GRAPH_FILES
    report_title: ClassVar[str] = "Text generation (character-level language model, Tiny Shakespeare)"
    report_notes: ClassVar[tuple[str, ...]] = (
        "`generation-lstm`'s manifest records the command of an earlier training loop; its configuration "
        "trains with "
        "`python -m training train --config training/configs/generation_lstm.toml --export [--resume]`.",
        "Both models were exported in fp32 and quantized afterwards (their checkpoints were gone) with "
        "`python -m training quantize --model models/<name> --export.quantize_max_drop=0.01 "
        "--export.quantize_tolerance=0.25` (the configs' values): weight-only int8; each manifest's "
        "`quantization` record holds the command and the fp32 and int8 dev losses. A new export chooses "
        "fp32 or int8 by the same rule itself.",
    )

    config: GenerationConfig

    def __init__(self, config: GenerationConfig, settings):
        super().__init__(config, settings)
        self.corpus: CharCorpus | None = None
        self.codec: CharCodec | None = None

    # --- data -------------------------------------------------------------------------------------------
    def load_data(self) -> None:
        path = self.settings.resolve_data_path(self.config.data.path)
        self.corpus = CharCorpus.from_file(path, self.config.data.val_fraction)
        if self.codec is not None and self.codec.vocab.itos != self.corpus.codec.vocab.itos:
            raise ValueError("the data's vocabulary differs from the checkpoint's")
        self.codec = self.corpus.codec

    def data_info(self) -> dict[str, Any]:
        return dict(self.corpus.info) if self.corpus else {}

    def num_train_batches(self) -> int:
        per_batch = self.config.trainer.batch_size * self.config.lm.seq_len
        return max(1, len(self.corpus.train) // per_batch)

    def train_batches(self, generator: torch.Generator) -> Iterator[Batch]:
        """An epoch of random ``<bos>``-led windows (see :func:`training_batch`)."""
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
        for _ in range(self.num_train_batches()):
            inputs, targets = training_batch(
                self.corpus.train,
                self.config.trainer.batch_size,
                self.config.lm.seq_len,
                rng,
                self.codec.vocab.bos_id,
            )
            yield {"input_ids": inputs, "targets": targets}

    # --- model ------------------------------------------------------------------------------------------
    def model_args(self) -> dict[str, Any]:
        m = self.config.model
        return {
            "vocab_size": len(self.codec.vocab),
            "embed_dim": m.embed_dim,
            "hidden_size": m.hidden_size,
            "num_layers": m.num_layers,
            "cell": m.cell,
            "dropout": m.dropout,
        }

    def build_model(self, model_args: dict[str, Any] | None = None) -> CharLM:
        return CharLM(**(model_args or self.model_args()))

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        logits, _ = model(batch["input_ids"])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["targets"].reshape(-1))

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        if split != "dev":
            raise ValueError(f"the generation task has only a 'dev' split (held-out tail), not {split!r}")
        return {
            "loss": stream_loss(model, self.corpus, self.config.lm.eval_segments),
            "window_loss": window_loss(model, self.corpus, self.config.lm.seq_len),
        }

    def eval_splits(self) -> tuple[str, ...]:
        return ("dev",)

    # --- persistence ------------------------------------------------------------------------------------
    def task_state(self) -> dict[str, Any]:
        return {"vocab": self.codec.vocab.to_json()}

    def load_task_state(self, state: dict[str, Any]) -> None:
        self.codec = CharCodec(Vocab.from_json(state["vocab"]), self.config.lm.unknown_characters)

    def _readable_data(self) -> bool:
        """Loads the data for export-time checks if it is not loaded yet; False when it cannot be read."""
        if self.corpus is None:
            try:
                self.load_data()
            except (FileNotFoundError, ValueError):
                return False
        return True

    def _parity_prompts(self) -> list[list[int]]:
        """Prompts of different lengths (so the prefill is padded) from the held-out text when it is
        readable, else from the vocabulary; the empty prompt is always one of them."""
        if self._readable_data():
            source = "".join(self.codec.vocab.decode(self.corpus.val[:4000].tolist()))
        else:
            source = "".join(t for t in self.codec.vocab.itos[4:]) * 100
        starts_lengths = [(0, 0), (0, 1), (100, 17), (400, 63), (900, 128), (1500, 40), (2000, 1500)]
        return [self.codec.encode(source[s : s + n]) for s, n in starts_lengths]

    # --- reporting (docs/models.md) ---------------------------------------------------------------------
    @classmethod
    def report_columns(cls) -> list[str]:
        return [
            "model",
            "validation loss (nats/char)",
            "window loss",
            "training time",
            "parameters",
            "ONNX size",
            "step latency (batch 1)",
            "ONNX parity",
        ]

    @classmethod
    def report_row(cls, model_dir: Path, manifest: ModelManifest) -> dict[str, str]:
        row = default_row(model_dir, manifest)
        dev = manifest.metrics.get("dev", {})
        training = manifest.training
        options = manifest.task_options
        _, version_dir = version_dirs(model_dir)[-1]
        shape = (options["num_layers"], 1, options["hidden_size"])
        feed = {"input_ids": np.array([4], dtype=np.int64)}
        feed |= {name: np.zeros(shape, np.float32) for name in options["state_names"]}
        latency = measure_latency_ms(version_dir / manifest.graphs["step"].file, feed)
        arch = manifest.architecture
        row["model"] += (
            f" {arch['num_layers']}×{arch['cell'].upper()} {arch['hidden_size']}, {manifest.precision}"
        )
        row["validation loss (nats/char)"] = f"{dev['loss']:.3f}" if "loss" in dev else "—"
        row["window loss"] = f"{dev['window_loss']:.3f}" if "window_loss" in dev else "—"
        row["training time"] = (
            f"{training.train_time_s / 60:.0f} min ({training.epochs_run} epochs)" if training else "—"
        )
        row["step latency (batch 1)"] = f"{latency:.3f} ms"
        row["ONNX parity"] = f"{manifest.parity.max_abs_diff:.1e}" if manifest.parity else "—"
        return row

    # --- export: fp32 graphs, parity with PyTorch, fp32-or-int8, shared weights -------------------------
    def _choose_precision(self, shipped_fp32: Path, work: Path) -> PrecisionChoice:
        """:func:`choose_precision` for the fp32 graphs as shipped in ``shipped_fp32`` (weights shared), on
        the dev ``loss`` (nats/char, lower is better) of the step graph and on the logits of a fixed
        rollout: a padded prefill of the parity prompts, then ``lm.parity_steps`` steps fed the fp32
        graphs' greedy tokens (the same path for both precisions).

        The candidates are self-contained copies in ``work`` (the quantizer re-saves graphs where the
        weights file is not); export and the post-hoc command both start from the shipped form, so the
        two give the same int8 files.
        """
        fp32 = {}
        for key, file in GRAPH_FILES.items():
            graph = onnx.load(str(shipped_fp32 / file), load_external_data=True)
            convert_model_from_external_data(graph)
            onnx.save(graph, str(work / file))
            fp32[key] = work / file
        lm = self.config.lm
        prompts = self._parity_prompts()
        _, tokens = rollout_logits(fp32["prefill"], fp32["step"], prompts, lm.parity_steps)

        def evaluate(graphs: Graphs) -> Metrics:
            return {
                "dev": onnx_losses(
                    graphs["step"], self.corpus.val, self.codec.vocab.bos_id, lm.eval_segments, lm.seq_len
                )
            }

        def outputs(graphs: Graphs) -> list[np.ndarray]:
            return rollout_logits(graphs["prefill"], graphs["step"], prompts, lm.parity_steps, tokens)[0]

        choice = choose_precision(
            fp32, self.config.export, evaluate, "loss", outputs, compared="logits", higher_is_better=False
        )
        if choice.report is None:
            return choice
        # What fp32 ships: its graphs and the weights file (not the self-contained copies).
        fp32_size = graph_bytes(shipped_fp32, list(GRAPH_FILES.values()), WEIGHTS_FILE)
        report = choice.report.model_copy(update={"fp32_size_bytes": fp32_size})
        return PrecisionChoice(choice.graphs, choice.metrics, report)

    @staticmethod
    def _ship(graphs: Graphs, target_dir: Path) -> SharingReport:
        """Copies the chosen graphs into ``target_dir`` and stores their weights once in ``weights.bin``.

        The prefill and step graphs are exported from the same parameters and int8 quantization is
        deterministic, so once the prefill graph's transposed copies are computed from the step graph's
        (:func:`reuse_transposed_weights`), every weight of the step graph must share its bytes with the
        prefill graph's; a graph that kept its own copy would double the model's size, so that is an error.
        """
        for key, file in GRAPH_FILES.items():
            shutil.copyfile(graphs[key], target_dir / file)
        reused = reuse_transposed_weights(target_dir / PREFILL_FILE, target_dir / STEP_FILE)
        log.info("prefill weights computed from the step graph's: %s", reused)
        sharing = share_weights(target_dir, list(GRAPH_FILES.values()), WEIGHTS_FILE)
        prefill = set(external_tensors(target_dir / PREFILL_FILE).values())
        unshared = {n for n, at in external_tensors(target_dir / STEP_FILE).items() if at not in prefill}
        if unshared:
            raise AssertionError(f"step-graph weights not shared with the prefill graph: {sorted(unshared)}")
        return sharing

    @staticmethod
    def _dev_metrics(pytorch_dev: Mapping[str, float], shipped_dev: Mapping[str, float]) -> dict[str, float]:
        """The shipped graphs' figures, PyTorch's kept beside them as ``*_pytorch``."""
        dev = {k if k.endswith("_pytorch") else f"{k}_pytorch": v for k, v in pytorch_dev.items()}
        return dev | dict(shipped_dev)

    # --- export hooks (training.exporter): fp32 graphs with shared weights, their parity with PyTorch,
    # fp32-or-int8 on the dev loss when the text is readable, the chosen graphs stored with shared weights
    def prepare_export(self) -> None:
        self._export_measures = self._readable_data()
        if self.config.export.quantize != "never" and not self._export_measures:
            raise FileNotFoundError(
                f"export.quantize={self.config.export.quantize!r} measures the dev loss, but the text "
                f"{self.config.data.path!r} cannot be read; make it readable or pass --export.quantize=never"
            )

    def architecture_type(self, model: nn.Module) -> str:
        return "char_lm"

    def export_graphs(self, model: nn.Module, work: Path) -> dict[str, Path]:
        """The exported graphs, already in their shipped form (weights stored once in ``weights.bin``)."""
        raw, fp32 = work / "raw", work / "fp32"
        fp32.mkdir()
        self._ship(export_graphs(model, raw), fp32)
        return {key: fp32 / file for key, file in GRAPH_FILES.items()}

    def export_parity(self, model: nn.Module, graphs: Graphs) -> ParityReport:
        fp32_dir = graphs["step"].parent
        cfg = self.config.export
        return rollout_parity(
            model, fp32_dir, self._parity_prompts(), self.config.lm.parity_steps, cfg.parity_tolerance
        )

    def write_export_files(self, model: nn.Module, version_dir: Path) -> dict[str, str]:
        self.codec.vocab.save(version_dir / FILES["vocab"])
        return {**FILES, WEIGHTS_KEY: WEIGHTS_FILE}

    def manifest_fields(self, model: nn.Module) -> dict[str, Any]:
        return {
            "tokenizer": CharTokenizer().spec(),
            "task_options": {
                "state_names": list(model.state_names),
                "num_layers": model.num_layers,
                "hidden_size": model.hidden_size,
                "bos_id": self.codec.vocab.bos_id,
                "max_prompt_chars": self.config.lm.max_prompt_chars,
                "unknown_characters": self.config.lm.unknown_characters,
            },
        }

    def manifest_graphs(self, model: nn.Module, graphs: Graphs) -> dict[str, GraphSpec]:
        return graph_specs_of(model)

    def choose_export_precision(
        self, model: nn.Module, draft: ModelManifest, version_dir: Path, graphs: Graphs, work: Path
    ) -> PrecisionChoice:
        if not self._export_measures:  # the text cannot be read: the fp32 graphs ship unmeasured
            return PrecisionChoice(dict(graphs), {}, None)
        candidates = work / "candidates"
        candidates.mkdir()
        return self._choose_precision(graphs["step"].parent, candidates)

    def ship_graphs(self, graphs: Graphs, version_dir: Path) -> int:
        source = graphs["step"].parent
        if (source / WEIGHTS_FILE).is_file():  # already the shipped form (the fp32 export, unmeasured)
            for file in (*GRAPH_FILES.values(), WEIGHTS_FILE):
                shutil.copyfile(source / file, version_dir / file)
            return graph_bytes(version_dir, list(GRAPH_FILES.values()), WEIGHTS_FILE)
        return self._ship(graphs, version_dir).bytes_after

    def export_metrics(
        self, model: nn.Module, shipped: Shipped, checkpoint: dict[str, Any]
    ) -> ManifestMetrics:
        """The checkpoint's figures, with dev measured on the shipped graphs (PyTorch's as ``*_pytorch``);
        also written to the version folder's ``metrics.json``."""
        metrics = {split: dict(values) for split, values in checkpoint.get("metrics", {}).items()}
        if "dev" in shipped.choice.metrics:
            metrics["dev"] = self._dev_metrics(metrics.get("dev", {}), shipped.choice.metrics["dev"])
        (shipped.version_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        return metrics

    # --- post-hoc quantization of an fp32 export (``python -m training quantize``) ----------------------
    @classmethod
    def recorded_config(cls, manifest: ModelManifest, overrides: Sequence[str] = ()) -> GenerationConfig:
        """The manifest's recorded training configuration (keys the schema dropped since are ignored;
        missing ones take the current defaults), with ``--export.*`` ``overrides``."""
        require_export_overrides(overrides, "quantize")
        recorded = manifest.training.config if manifest.training else {}
        data = _known_keys(cls.config_class, recorded)
        data.setdefault("task", cls.name)
        data.setdefault("name", manifest.name)
        data.setdefault("export", {"name": manifest.name})
        return build_config(cls.config_class, data, overrides)

    @classmethod
    def quantize_exported(
        cls, model_dir: Path, settings: TrainingSettings, overrides: Sequence[str] = ()
    ) -> QuantizationReport:
        """Runs the export's fp32-or-int8 choice on the newest version of a model exported in fp32 (no
        checkpoint needed): dev losses on the held-out text (the recorded ``data`` settings), the rollout
        logits, then the chosen graphs and their shared ``weights.bin`` replace the version's, and the
        manifest records the shipped graphs' metrics, the report, the size and this command."""
        model_dir = Path(model_dir)
        manifest = ModelManifest.load(model_dir)
        version_dir = cls._fp32_version(model_dir, manifest)
        config = cls.recorded_config(manifest, overrides)
        if config.export.quantize == "never":
            raise QuantizeExportedError("export.quantize is 'never'; pass --export.quantize=auto or always")
        task = cls(config, settings)
        task.codec = CharCodec.from_manifest(manifest, version_dir)
        task.load_data()  # raises if the text's vocabulary differs from the shipped one

        with tempfile.TemporaryDirectory(prefix=".quantize-", dir=model_dir) as tmp:
            work, staged = Path(tmp) / "work", Path(tmp) / "ship"
            work.mkdir()
            staged.mkdir()
            choice = task._choose_precision(version_dir, work)
            sharing = task._ship(choice.graphs, staged)
            for file in (WEIGHTS_FILE, *GRAPH_FILES.values()):
                os.replace(staged / file, version_dir / file)

        report = cls._post_hoc_report(choice, " ".join([QUANTIZE_COMMAND, str(model_dir), *overrides]), task)
        metrics = {split: dict(values) for split, values in manifest.metrics.items()}
        metrics["dev"] = task._dev_metrics(
            {k: v for k, v in metrics.get("dev", {}).items() if k.endswith("_pytorch")}, choice.metrics["dev"]
        )
        training = manifest.training
        if training is not None:
            resolved_export = config.export.model_dump(mode="json")
            training = training.model_copy(update={"config": {**training.config, "export": resolved_export}})
        manifest.model_copy(
            update={
                "metrics": metrics,
                "quantization": report,
                "size_bytes": sharing.bytes_after,
                "files": {**manifest.files, WEIGHTS_KEY: WEIGHTS_FILE},
                "training": training,
            }
        ).save(model_dir)
        (version_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        return report

    @classmethod
    def _fp32_version(cls, model_dir: Path, manifest: ModelManifest) -> Path:
        """The newest version folder of a generation model exported in fp32; raises if it is not one."""
        if manifest.task != cls.name:
            raise QuantizeExportedError(f"{model_dir} is a {manifest.task!r} model, not {cls.name!r}")
        if set(manifest.graphs) != set(GRAPH_FILES) or any(
            manifest.graphs[k].file != f for k, f in GRAPH_FILES.items()
        ):
            raise QuantizeExportedError(f"{model_dir}: expected graphs {GRAPH_FILES}")
        versions = version_dirs(model_dir)
        if not versions:
            raise QuantizeExportedError(f"{model_dir} has no numbered version folder")
        version_dir = versions[-1][1]
        already = [key for key, file in GRAPH_FILES.items() if is_int8(version_dir / file)]
        if already:
            raise QuantizeExportedError(f"{version_dir}: graphs {already} are already int8; nothing to do")
        return version_dir

    @staticmethod
    def _post_hoc_report(choice: PrecisionChoice, command: str, task: GenerationTask) -> QuantizationReport:
        """The choice's report with how it was made: the command, and that int8 was compared with fp32."""
        return choice.report.model_copy(
            update={
                "metrics": choice.report.metrics
                | {
                    "post_hoc": {
                        "command": command,
                        "note": "quantized after export from the shipped fp32 graphs (the PyTorch checkpoint "
                        "is gone): parity is the fp32 graphs' with PyTorch; int8 is compared with fp32",
                        "data": str(task.settings.resolve_data_path(task.config.data.path)),
                    }
                }
            }
        )
