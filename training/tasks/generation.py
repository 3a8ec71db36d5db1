"""Text generation (one-to-many) training plug-in: a character-level LSTM/GRU language model.

    python -m training train --config training/configs/generation_lstm.toml --export [--resume]
    python -m training export --checkpoint runs/generation-lstm/best.pt

Data: one plain text, the last ``data.val_fraction`` held out as the ``dev`` split (there is no test split;
the issue defines validation loss as the figure to report). Metric: ``loss``, nats per character over the
held-out text read as ``lm.eval_segments`` streams from ``<bos>`` (lower is better); ``window_loss`` is the
same over zero-state windows of ``lm.seq_len`` characters (the training objective, nanoGPT-style).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from service.manifest import ModelManifest, TrainingInfo
from service.tasks.generation import CharCodec
from service.tasks.text import CharTokenizer, Vocab
from training.tasks import register_task
from training.tasks.base import Batch, TrainingTask
from training.tasks.generation_config import GenerationConfig
from training.tasks.generation_data import CharCorpus, training_batch
from training.tasks.generation_export import export_graphs, onnx_losses, rollout_parity
from training.tasks.generation_metrics import stream_loss, window_loss
from training.tasks.generation_model import CharLM
from training.weight_sharing import WEIGHTS_FILE, WEIGHTS_KEY, share_weights

VOCAB_FILE = "vocab.json"


@register_task
class GenerationTask(TrainingTask):
    name: ClassVar[str] = "generation"
    config_class: ClassVar[type[GenerationConfig]] = GenerationConfig
    selection_metric: ClassVar[str] = "loss"
    selection_mode: ClassVar[str] = "min"
    report_title: ClassVar[str] = "Text generation (character-level language model, Tiny Shakespeare)"
    report_notes: ClassVar[tuple[str, ...]] = (
        "`generation-lstm` was trained by the former standalone loop "
        "(`training.tasks.generation_train`, since "
        "folded into the generic trainer); the same configuration now trains with "
        "`python -m training train --config training/configs/generation_lstm.toml --export [--resume]`.",
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
        from training.report import default_row, measure_latency_ms

        row = default_row(model_dir, manifest)
        dev = manifest.metrics.get("dev", {})
        training = manifest.training
        options = manifest.task_options
        version_dir = max((p for p in model_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        shape = (options["num_layers"], 1, options["hidden_size"])
        feed = {"input_ids": np.array([4], dtype=np.int64)}
        feed |= {name: np.zeros(shape, np.float32) for name in options["state_names"]}
        latency = measure_latency_ms(version_dir / manifest.graphs["step"].file, feed)
        arch = manifest.architecture
        row["model"] += f" {arch['num_layers']}×{arch['cell'].upper()} {arch['hidden_size']}"
        row["validation loss (nats/char)"] = f"{dev['loss']:.3f}" if "loss" in dev else "—"
        row["window loss"] = f"{dev['window_loss']:.3f}" if "window_loss" in dev else "—"
        row["training time"] = (
            f"{training.train_time_s / 60:.0f} min ({training.epochs_run} epochs)" if training else "—"
        )
        row["step latency (batch 1)"] = f"{latency:.3f} ms"
        row["ONNX parity"] = f"{manifest.parity.max_abs_diff:.1e}" if manifest.parity else "—"
        return row

    def export(self, model: nn.Module, models_dir: Path, checkpoint: dict[str, Any]) -> Path:
        cfg = self.config.export
        model = model.eval()
        model_dir = models_dir / cfg.name
        version_dir = model_dir / str(cfg.version)
        graphs = export_graphs(model, version_dir)
        # Both graphs hold the same weights: store them once, before measuring parity on the final files.
        sharing = share_weights(version_dir, [g.file for g in graphs.values()], WEIGHTS_FILE)
        self.codec.vocab.save(version_dir / VOCAB_FILE)
        parity = rollout_parity(
            model, version_dir, self._parity_prompts(), self.config.lm.parity_steps, cfg.parity_tolerance
        )
        metrics = {split: dict(values) for split, values in checkpoint.get("metrics", {}).items()}
        if self._readable_data():
            # The reported figures are measured on the shipped graph (PyTorch's stay as *_pytorch).
            dev = {f"{k}_pytorch": v for k, v in metrics.get("dev", {}).items()}
            dev |= onnx_losses(
                version_dir,
                self.corpus.val,
                self.codec.vocab.bos_id,
                self.config.lm.eval_segments,
                self.config.lm.seq_len,
            )
            metrics["dev"] = dev
        manifest = ModelManifest(
            name=cfg.name,
            task=self.name,
            description=cfg.description,
            default=cfg.default,
            architecture={"type": "char_lm", **checkpoint["model_args"]},
            graphs=graphs,
            max_batch_size=cfg.max_batch_size,
            tokenizer=CharTokenizer().spec(),
            files={"vocab": VOCAB_FILE, WEIGHTS_KEY: WEIGHTS_FILE},
            task_options={
                "state_names": list(model.state_names),
                "num_layers": model.num_layers,
                "hidden_size": model.hidden_size,
                "bos_id": self.codec.vocab.bos_id,
                "max_prompt_chars": self.config.lm.max_prompt_chars,
                "unknown_characters": self.config.lm.unknown_characters,
            },
            training=TrainingInfo(
                data=checkpoint.get("data", {}),
                config=checkpoint["config"],
                epochs_run=checkpoint.get("epochs_run", 0),
                best_epoch=checkpoint.get("best_epoch", 0),
                train_time_s=checkpoint.get("train_time_s", 0.0),
                seed=checkpoint.get("seed", self.config.seed),
                machine=checkpoint.get("machine", ""),
                command=checkpoint.get("command", ""),
            ),
            metrics=metrics,
            parameters=sum(p.numel() for p in model.parameters()),
            size_bytes=sharing.bytes_after,
            parity=parity,
        )
        manifest.save(model_dir)
        (version_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        return model_dir
