"""Sentiment (many-to-one) training plug-in: labelled texts -> :class:`SequenceClassifier` -> ONNX.

Text processing is the service's own :class:`~service.tasks.sentiment.SentimentCodec` (tokenizer, vocab,
padding), so trained and served inputs are built by the same code. The exported graph follows the
service contract: inputs ``input_ids`` int64 [B, T] and ``lengths`` int64 [B], output ``probabilities``
float32 [B, C].
"""

from __future__ import annotations

import base64
import logging
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from service.manifest import ModelManifest, version_dirs
from service.subwords import RareWordPieceTokenizer, train_word_pieces
from service.tasks.sentiment.codec import SentimentCodec
from service.tasks.sentiment.contract import (
    CHAR_IDS,
    CHARS_FILE,
    CHARS_KEY,
    FILES,
    GRAPH_FILES,
    INPUT_IDS,
    LENGTHS,
    PROBABILITIES,
)
from service.text import Tokenizer, Vocab, build_tokenizer
from training.augmentation import distill_copies, lexicon_path
from training.batching import SplitsTraining, sorted_batches
from training.distillation import label_order, load_teacher, mixed_loss
from training.export import (
    export_onnx,
)
from training.exporter import SingleGraphExport
from training.readers import read_labelled_text, splits_info
from training.registry import register_task
from training.report_rows import format_bytes, measure_latencies_ms
from training.task import Batch, TrainingTask
from training.tasks.sentiment.config import SentimentConfig
from training.tasks.sentiment.network import ProbabilityModel, SequenceClassifier

log = logging.getLogger(__name__)

#: the label of a training row without a gold label (a perturbed copy): ignored by the gold loss
NO_GOLD = -100


@register_task
class SentimentTask(SplitsTraining, SingleGraphExport, TrainingTask):
    name = "sentiment"
    config_class = SentimentConfig
    selection_metric = "accuracy"
    selection_mode = "max"
    report_title = "Sentiment (SST-2, binary)"
    graph_files: ClassVar[dict[str, str]] = GRAPH_FILES
    export_output = PROBABILITIES
    compared = "probability"

    config: SentimentConfig

    def __init__(self, config: SentimentConfig, settings):
        super().__init__(config, settings)
        self.codec: SentimentCodec | None = None
        self.raw_labels: list[str] = []
        self.splits: dict[str, tuple[list[list[int]], list[int]]] = {}
        self.soft_targets: np.ndarray | None = None  # the teacher's class probabilities per training text
        self.paths: dict[str, Path] = {}
        self.augmented = 0  # perturbed copies at the end of the training split (distill.augment)
        self.tokenizer_files: dict[str, bytes] = {}  # a trained tokenizer's files (word_pieces), by name
        self._tokenizer_dir = tempfile.TemporaryDirectory(prefix="sentiment-tokenizer-")

    # --- data -------------------------------------------------------------------------------------------
    def _tokenizer(self, train_texts: list[str] | None = None) -> Tokenizer:
        """The configured tokenizer; ``word_pieces`` is trained on ``train_texts`` the first time, then
        rebuilt from its files (kept in the task state, so a resumed or exported run has the same)."""
        data = self.config.data
        if data.tokenizer != "word_pieces":
            return build_tokenizer({"type": data.tokenizer, "lowercase": data.lowercase})
        folder = Path(self._tokenizer_dir.name)
        if not self.tokenizer_files:
            if train_texts is None:
                raise RuntimeError("a word_pieces tokenizer is trained on the training texts first")
            tokenizer = train_word_pieces(
                train_texts, folder, data.pieces, data.whole_word_min_freq, lowercase=data.lowercase
            )
            self.tokenizer_files = {p.name: p.read_bytes() for p in tokenizer.files()}
            return tokenizer
        for name, content in self.tokenizer_files.items():
            (folder / name).write_bytes(content)
        return RareWordPieceTokenizer.in_folder(folder, data.lowercase)

    def load_data(self) -> None:
        data = self.config.data
        named = {"train": data.train, "dev": data.dev, "test": data.test}
        rows = {}
        for split, rel in named.items():
            if rel is None:
                continue
            self.paths[split] = self.settings.resolve_data_path(rel)
            rows[split] = read_labelled_text(self.paths[split], data.text_column, data.label_column)
        tokenizer = self._tokenizer([r.text for r in rows["train"]])
        train_tokens = [tokenizer.words(r.text) for r in rows["train"]]
        # copies perturb words, also where the model reads a rare word's pieces
        word_lists = (
            [tokenizer.base.words(r.text) for r in rows["train"]]
            if isinstance(tokenizer, RareWordPieceTokenizer)
            else train_tokens
        )
        vocab = Vocab.build(train_tokens, min_freq=data.min_freq, max_size=data.max_vocab)
        self.raw_labels = data.labels or sorted({r.label for r in rows["train"]})
        names = data.label_names or self.raw_labels
        if len(names) != len(self.raw_labels):
            raise ValueError(f"label_names {names} do not match labels {self.raw_labels}")
        m = self.config.model
        # a model that reads characters: every character of the training tokens
        chars = Vocab.build(w for words in train_tokens for w in words) if m.char_filters else None
        self.codec = SentimentCodec(
            tokenizer, vocab, tuple(names), data.max_tokens, chars=chars, max_word_chars=m.max_word_chars
        )
        index = {label: i for i, label in enumerate(self.raw_labels)}
        for split, split_rows in rows.items():
            unknown = {r.label for r in split_rows} - index.keys()
            if unknown:
                bad = next(r for r in split_rows if r.label in unknown)
                raise ValueError(f"{self.paths[split]}:{bad.line}: unknown label {bad.label!r}")
            self.splits[split] = (
                [self.codec.encode(r.text) for r in split_rows],
                [index[r.label] for r in split_rows],
            )
        if self.config.distill is not None:
            # perturbed copies join the training split without a gold label (``NO_GOLD``): the teacher's
            # probabilities are their only target
            copies = distill_copies(
                word_lists, self.config.distill, self.config.seed, self.settings.resolve_data_path
            )
            ids, labels = self.splits["train"]
            encoded = [self.codec.encode(t) for t in copies]
            self.splits["train"] = (ids + encoded, labels + [NO_GOLD] * len(copies))
            self.augmented = len(copies)
            if copies:
                log.info("transfer set: %d training texts and %d perturbed copies", len(labels), len(copies))
            self.soft_targets = self._teacher_probabilities([r.text for r in rows["train"]] + copies)

    def _teacher_probabilities(self, texts: list[str]) -> np.ndarray:
        """The teacher's class probabilities ``[N, C]`` for ``texts``, in the student's label order."""
        teacher = load_teacher(self.config.distill.teacher, self.name)
        codec = SentimentCodec.from_manifest(teacher.manifest, teacher.version_dir)
        columns = label_order(list(codec.labels), list(self.codec.labels))
        encoded = [codec.encode(text) for text in texts]
        out = np.zeros((len(texts), len(columns)), dtype=np.float32)
        for indices in sorted_batches([len(e) for e in encoded], 256):
            feeds = codec.collate([encoded[i] for i in indices])
            out[indices] = teacher.session.run([PROBABILITIES], feeds)[0][:, columns]
        log.info("teacher %s: probabilities of %d training texts", teacher.manifest.name, len(texts))
        return out

    def data_info(self) -> dict[str, Any]:
        rows = {split: len(ids) for split, (ids, _) in self.splits.items()}
        lexicon = lexicon_path(self.config.distill, self.settings.resolve_data_path)
        return splits_info(self.paths, rows, self.augmented, lexicon)

    def batch_tensors(self, split: str, indices: list[int]) -> Batch:
        ids, labels = self.splits[split]
        inputs = self.codec.collate([ids[i] for i in indices])
        return {
            **{name: torch.from_numpy(array) for name, array in inputs.items()},
            "labels": torch.tensor([labels[i] for i in indices]),
            **({"soft": torch.from_numpy(self.soft_targets[indices])} if self._distilled(split) else {}),
        }

    def _distilled(self, split: str) -> bool:
        return split == "train" and self.soft_targets is not None

    # --- model ------------------------------------------------------------------------------------------
    def model_args(self) -> dict[str, Any]:
        m = self.config.model
        return {
            "encoder": {
                "vocab_size": len(self.codec.vocab),
                "embedding_dim": m.embedding_dim,
                "hidden_size": m.hidden_size,
                "cell": m.cell,
                "num_layers": m.num_layers,
                "bidirectional": m.bidirectional,
                "dropout": m.dropout,
                "embedding_dropout": m.embedding_dropout,
                "word_dropout": m.word_dropout,
                "padding_idx": Vocab.pad_id,
                "unk_idx": Vocab.unk_id,
            },
            "num_classes": len(self.raw_labels),
            "pooling": m.pooling,
            "head_dropout": m.head_dropout,
            "members": m.members,
            "chars": {
                "num_chars": len(self.codec.chars),
                "char_dim": m.char_dim,
                "filters": m.char_filters,
                "kernel": m.char_kernel,
                "padding_idx": Vocab.pad_id,
            }
            if self.codec.chars is not None
            else None,
        }

    def build_model(self, model_args: dict[str, Any] | None = None) -> nn.Module:
        return SequenceClassifier(**(model_args or self.model_args()))

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        smoothing = self.config.model.label_smoothing
        losses = []
        labels = batch["labels"]
        for logits in model.member_logits(batch[INPUT_IDS], batch[LENGTHS], batch.get(CHAR_IDS)):
            # a sum over the rows with a gold label, divided by all rows: the mean when every row has one,
            # and rows without (perturbed copies) add nothing instead of raising the others' weight
            gold = nn.functional.cross_entropy(
                logits, labels, label_smoothing=smoothing, ignore_index=NO_GOLD, reduction="sum"
            )
            loss = gold / len(labels)
            if "soft" in batch:
                loss = mixed_loss(loss, logits, batch["soft"], self.config.distill)
            losses.append(loss)
        return torch.stack(losses).mean()

    def predict_split(self, predict, split: str, batch_size: int = 256) -> np.ndarray:
        """Class probabilities for every example of a split, in file order; ``predict(batch) -> [B, C]``."""
        ids, _ = self.splits[split]
        out = np.zeros((len(ids), len(self.raw_labels)), dtype=np.float32)
        for indices in sorted_batches([len(s) for s in ids], batch_size):
            out[indices] = predict(self.batch_tensors(split, indices))
        return out

    def _metrics(self, probabilities: np.ndarray, split: str) -> dict[str, float]:
        labels = np.asarray(self.splits[split][1])
        return {"accuracy": float((probabilities.argmax(1) == labels).mean()), "examples": len(labels)}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        model.eval()

        def predict(batch: Batch) -> np.ndarray:
            return torch.softmax(model(batch[INPUT_IDS], batch[LENGTHS], batch.get(CHAR_IDS)), -1).numpy()

        return self._metrics(self.predict_split(predict, split, self.config.trainer.eval_batch_size), split)

    # --- persistence ------------------------------------------------------------------------------------
    def task_state(self) -> dict[str, Any]:
        return {
            "vocab": self.codec.vocab.to_json(),
            "raw_labels": self.raw_labels,
            "label_names": list(self.codec.labels),
            "chars": self.codec.chars.to_json() if self.codec.chars is not None else None,
            "tokenizer_files": {
                name: base64.b64encode(b).decode() for name, b in self.tokenizer_files.items()
            },
        }

    def load_task_state(self, state: dict[str, Any]) -> None:
        self.raw_labels = list(state["raw_labels"])
        files = state.get("tokenizer_files", {})
        self.tokenizer_files = {name: base64.b64decode(b) for name, b in files.items()}
        self.codec = SentimentCodec(
            self._tokenizer(),
            Vocab.from_json(state["vocab"]),
            tuple(state["label_names"]),
            max_tokens=self.config.data.max_tokens,
            chars=Vocab.from_json(state["chars"]) if state.get("chars") else None,
            max_word_chars=self.config.model.max_word_chars,
        )

    # --- export (hooks of training.exporter) ----------------------------------------------------------
    def prepare_export(self) -> None:
        if not self.splits:
            self.load_data()  # parity and metrics run on the real dev/test examples

    def architecture_type(self, model: nn.Module) -> str:
        return "SequenceClassifier"

    def write_export_files(self, model: nn.Module, version_dir: Path) -> dict[str, str]:
        self.codec.vocab.save(version_dir / FILES["vocab"])
        files = {**FILES, **{Path(name).stem: name for name in self.tokenizer_files}}
        for name, content in self.tokenizer_files.items():
            (version_dir / name).write_bytes(content)
        if self.codec.chars is not None:
            self.codec.chars.save(version_dir / CHARS_FILE)
            files[CHARS_KEY] = CHARS_FILE
        return files

    def manifest_fields(self, model: nn.Module) -> dict[str, Any]:
        return {
            "labels": list(self.codec.labels),
            "tokenizer": self.codec.tokenizer.spec(),
            "task_options": {
                "max_tokens": self.config.data.max_tokens,
                **({"max_word_chars": self.codec.max_word_chars} if self.codec.chars is not None else {}),
            },
        }

    def parity_feeds(self, limit: int) -> list[dict[str, np.ndarray]]:
        ids, _ = self.splits["dev"]
        count = min(limit, len(ids))
        return [self.codec.collate(ids[start : min(start + 32, count)]) for start in range(0, count, 32)]

    @torch.no_grad()
    def reference_output(self, model: nn.Module, feeds: dict[str, np.ndarray]) -> np.ndarray:
        wrapped = ProbabilityModel(model).eval()
        return wrapped(*(torch.from_numpy(feeds[name]) for name in self._graph_inputs())).numpy()

    def onnx_metrics(self, model: nn.Module, session) -> dict[str, dict[str, float]]:
        def predict(batch: Batch) -> np.ndarray:
            feed = {name: batch[name].numpy() for name in self._graph_inputs()}
            return session.run([PROBABILITIES], feed)[0]

        return {
            split: self._metrics(self.predict_split(predict, split), split) for split in self.eval_splits()
        }

    def _graph_inputs(self) -> list[str]:
        """The exported graph's inputs, in the order of the model's arguments."""
        return [INPUT_IDS, LENGTHS, *([CHAR_IDS] if self.codec.chars is not None else [])]

    def export_graph(self, model: nn.Module, path: Path) -> None:
        """Exports with a short tracing example (the RNN loop is unrolled while tracing shapes).

        torch 2.13's tracer sometimes fixes an axis to the example's size (seen when the example's
        sizes coincide with ids or model constants); export_onnx detects that, and the next example
        size is tried. The ids' values do not matter; parity is checked on real dev examples after.
        """
        wrapped = ProbabilityModel(model).eval()
        last_error: RuntimeError | None = None
        for batch, length in ((5, 7), (6, 11), (9, 13), (10, 17)):
            lengths = torch.tensor([length, *(max(1, length - 2 - i) for i in range(batch - 1))])
            filler = min(len(self.codec.vocab) - 1, length + 2)
            example = [torch.full((batch, length), filler, dtype=torch.int64), lengths]
            axes = {INPUT_IDS: {0: "batch", 1: "sequence"}, LENGTHS: {0: "batch"}}
            if self.codec.chars is not None:  # a word width unlike the other sizes (see above)
                example.append(torch.full((batch, length, 3), min(len(self.codec.chars) - 1, 4)))
                axes[CHAR_IDS] = {0: "batch", 1: "sequence", 2: "word"}
            try:
                export_onnx(
                    wrapped,
                    tuple(example),
                    path,
                    input_names=self._graph_inputs(),
                    output_names=[PROBABILITIES],
                    dynamic_axes=axes,
                )
                return
            except RuntimeError as exc:
                if "fixed dynamic axes" not in str(exc):
                    raise
                log.warning("export with example %dx%d: %s; retrying", batch, length, exc)
                last_error = exc
        raise last_error

    # --- reporting --------------------------------------------------------------------------------------
    @classmethod
    def report_columns(cls) -> list[str]:
        return [
            "model",
            "architecture",
            "dev acc",
            "test acc",
            "parameters",
            "ONNX size",
            "latency 1×20 tokens",
            "latency 32×20 tokens",
        ]

    @classmethod
    def report_row(cls, model_dir: Path, manifest: ModelManifest) -> dict[str, str]:
        _, version_dir = version_dirs(model_dir)[-1]
        arch = manifest.architecture
        enc = arch.get("encoder", {})
        cell = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}.get(enc.get("cell"), str(enc.get("cell")))
        members = int(arch.get("members", 1))
        chars = arch.get("chars")
        layers = int(enc.get("num_layers", 1))
        description = (
            f"{f'{members}× ' if members > 1 else ''}{'Bi' if enc.get('bidirectional') else ''}{cell}"
            f"{' ensemble' if members > 1 else ''}, {layers} layer{'s' if layers > 1 else ''}, "
            f"emb {enc.get('embedding_dim')}, hidden {enc.get('hidden_size')}, "
            f"{arch.get('pooling')} pooling, {manifest.precision}"
            f"{', rare words as pieces' if manifest.tokenizer.get('type') == 'word_pieces' else ''}"
            f"{', char-CNN ' + str(chars['filters']) if chars else ''}"
        )
        rng = np.random.default_rng(0)
        vocab_size = int(enc.get("vocab_size", 100))
        feeds = [
            {
                INPUT_IDS: rng.integers(4, vocab_size, size=(batch, 20), dtype=np.int64),
                LENGTHS: np.full((batch,), 20, dtype=np.int64),
            }
            for batch in (1, 32)
        ]
        for feed in feeds:  # words of 5 characters, about SST-2's mean
            if chars:
                feed[CHAR_IDS] = rng.integers(4, chars["num_chars"], size=(*feed[INPUT_IDS].shape, 5))
        latencies = measure_latencies_ms(version_dir / manifest.graphs["model"].file, feeds)
        return {
            "model": f"`{manifest.name}`" + (" (default)" if manifest.default else ""),
            "architecture": description,
            "dev acc": f"{100 * manifest.metrics['dev']['accuracy']:.2f}%",
            "test acc": f"{100 * manifest.metrics['test']['accuracy']:.2f}%"
            if "test" in manifest.metrics
            else "—",
            "parameters": f"{manifest.parameters:,}",
            "ONNX size": format_bytes(manifest.size_bytes),
            "latency 1×20 tokens": f"{latencies[0]:.2f} ms",
            "latency 32×20 tokens": f"{latencies[1]:.2f} ms",
        }
