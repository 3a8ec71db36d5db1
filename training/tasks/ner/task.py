"""NER (many-to-many) training plug-in: CoNLL files -> char-CNN + (Bi)RNN tagger (+ CRF) -> ONNX emissions.

Inputs are built by the service's :class:`~service.tasks.ner.NerCodec` and evaluation decodes with the
codec's numpy Viterbi / BIO repair, so trained, evaluated and served decoding are one implementation.
CoNLL-2003 tags are IOB1 and are converted to BIO (IOB2) on reading. Metrics are entity-level
precision/recall/F1 by seqeval (conlleval-style default mode), overall and per entity type.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from torch import nn

from service.manifest import ModelManifest, version_dirs
from service.tasks.ner.codec import OUTSIDE, CrfScores, NerCodec, crf_marginals, iob1_to_bio, softmax
from service.tasks.ner.contract import (
    CHAR_IDS,
    EMISSIONS,
    FILES,
    GRAPH_FILES,
    LENGTHS,
    TRANSITIONS_FILE,
    TRANSITIONS_KEY,
    WORD_IDS,
)
from service.text import Vocab, WordTokenizer
from training.augmentation import distill_copies, lexicon_path
from training.batching import SplitsTraining, sorted_batches
from training.config import ConfigError
from training.distillation import label_order, load_teacher
from training.export import (
    export_onnx,
)
from training.exporter import SingleGraphExport
from training.readers import read_conll, splits_info
from training.registry import register_task
from training.report_rows import format_bytes, measure_latencies_ms
from training.task import Batch, TrainingTask
from training.tasks.ner.config import NerConfig
from training.tasks.ner.network import NerNetwork

log = logging.getLogger(__name__)


@register_task
class NerTask(SplitsTraining, SingleGraphExport, TrainingTask):
    name = "ner"
    config_class = NerConfig
    selection_metric = "f1"
    selection_mode = "max"
    graph_files: ClassVar[dict[str, str]] = GRAPH_FILES
    export_output = EMISSIONS
    compared = "emission score"
    report_title = "NER (CoNLL-2003 English, entity micro F1)"

    config: NerConfig

    def __init__(self, config: NerConfig, settings):
        super().__init__(config, settings)
        self.codec: NerCodec | None = None
        self.labels: list[str] = []
        self.splits: dict[str, tuple[list[list[int]], list[list[list[int]]], list[list[int]]]] = {}
        self.gold: dict[str, list[list[str]]] = {}
        self.soft_targets: list[np.ndarray] | None = None  # the teacher's tag distributions per sentence
        self.augmented = 0  # perturbed copies at the end of the training split (distill.augment)
        self.paths: dict[str, Path] = {}

    # --- data -------------------------------------------------------------------------------------------
    def _make_codec(self, words: Vocab, chars: Vocab, crf: CrfScores | None = None) -> NerCodec:
        d = self.config.data
        return NerCodec(
            WordTokenizer(lowercase=False),
            words,
            chars,
            tuple(self.labels),
            crf=crf,
            lowercase_words=d.lowercase_words,
            zero_digits=d.zero_digits,
            max_tokens=d.max_tokens,
            max_word_chars=d.max_word_chars,
        )

    def load_data(self) -> None:
        d = self.config.data
        sentences = {}
        for split, rel in {"train": d.train, "dev": d.dev, "test": d.test}.items():
            if rel is None:
                continue
            self.paths[split] = self.settings.resolve_data_path(rel)
            sentences[split] = read_conll(self.paths[split])
        convert = iob1_to_bio if d.scheme == "iob1" else list
        tagged = {s: [(x.tokens, convert(x.tags)) for x in rows] for s, rows in sentences.items()}
        if not self.labels:
            kinds = sorted({tag[2:] for _, tags in tagged["train"] for tag in tags if tag != OUTSIDE})
            self.labels = [OUTSIDE, *(f"{p}-{k}" for k in kinds for p in ("B", "I"))]
        if self.codec is None:
            probe = self._make_codec(Vocab.build([]), Vocab.build([]))
            words = Vocab.build(
                [[probe.word_key(w) for w in tokens] for tokens, _ in tagged["train"]],
                min_freq=d.min_freq,
                max_size=d.max_vocab,
            )
            chars = Vocab.build([list(w) for tokens, _ in tagged["train"] for w in tokens])
            self.codec = self._make_codec(words, chars)
        index = {label: i for i, label in enumerate(self.labels)}
        for split, rows in tagged.items():
            encoded = [self.codec.encode_tokens(tokens) for tokens, _ in rows]
            unknown = {t for _, tags in rows for t in tags} - index.keys()
            if unknown:
                raise ValueError(f"{self.paths[split]}: tags {sorted(unknown)} not in the training labels")
            self.splits[split] = (
                [w for w, _ in encoded],
                [c for _, c in encoded],
                [[index[t] for t in tags] for _, tags in rows],
            )
            self.gold[split] = [tags for _, tags in rows]
        if self.config.distill is not None:
            sentences = [tokens for tokens, _ in tagged["train"]]
            # perturbed copies: the teacher's decoded tags are their gold tags (sequence-level distillation)
            copies = [
                copy.split(" ")  # CoNLL tokens hold no spaces
                for copy in distill_copies(
                    sentences, self.config.distill, self.config.seed, self.settings.resolve_data_path
                )
            ]
            self.soft_targets, teacher_tags = self._teacher_distributions(sentences + copies, len(sentences))
            if copies:
                words, chars, tags = self.splits["train"]
                encoded = [self.codec.encode_tokens(tokens) for tokens in copies]
                self.splits["train"] = (
                    words + [w for w, _ in encoded],
                    chars + [c for _, c in encoded],
                    tags + [[index[t] for t in path] for path in teacher_tags],
                )
                self.augmented = len(copies)
                log.info("transfer set: %d training sentences and %d copies", len(sentences), len(copies))

    def _teacher_distributions(
        self, sentences: list[list[str]], tags_from: int
    ) -> tuple[list[np.ndarray], list[list[str]]]:
        """The teacher's distribution over tags ``[T, K]`` for every token of ``sentences`` (softmax of its
        emission scores, or its CRF marginals), in the student's tag order, and the tags the teacher
        decodes (as the service does) for the sentences from index ``tags_from`` on (the copies)."""
        teacher = load_teacher(self.config.distill.teacher, self.name)
        codec = NerCodec.from_manifest(teacher.manifest, teacher.version_dir)
        columns = label_order(list(teacher.manifest.labels), list(self.labels))
        marginals = self.config.distill.targets == "marginals"
        if marginals and codec.crf is None:
            raise ConfigError("distill.targets = 'marginals' needs a CRF teacher")
        decoding = codec.crf.constrained(codec.labels) if marginals else None  # as the service decodes
        encoded = [codec.encode_tokens(tokens) for tokens in sentences]
        out: list[np.ndarray | None] = [None] * len(sentences)
        decoded: list[list[str]] = [[] for _ in sentences[tags_from:]]
        for indices in sorted_batches([len(w) for w, _ in encoded], 256):
            feeds = codec.collate([encoded[i][0] for i in indices], [encoded[i][1] for i in indices])
            emissions = teacher.session.run([EMISSIONS], feeds)[0]
            for row, i in enumerate(indices):
                scores = emissions[row, : len(encoded[i][0])].astype(np.float64)
                probs = crf_marginals(scores, decoding) if marginals else softmax(scores)
                out[i] = probs[:, columns].astype(np.float32)
                if i >= tags_from:
                    decoded[i - tags_from] = codec.best_tags(scores)
        log.info("teacher %s: tag distributions of %d sentences", teacher.manifest.name, len(sentences))
        return out, decoded

    def data_info(self) -> dict[str, Any]:
        rows = {split: len(words) for split, (words, _, _) in self.splits.items()}
        lexicon = lexicon_path(self.config.distill, self.settings.resolve_data_path)
        return splits_info(self.paths, rows, self.augmented, lexicon)

    def batch_tensors(self, split: str, indices: list[int]) -> Batch:
        words, chars, tags = self.splits[split]
        feeds = self.codec.collate([words[i] for i in indices], [chars[i] for i in indices])
        batch = {name: torch.from_numpy(array) for name, array in feeds.items()}
        width = batch[WORD_IDS].size(1)
        batch["tags"] = torch.tensor([tags[i] + [0] * (width - len(tags[i])) for i in indices])
        if split == "train" and self.soft_targets is not None:
            soft = np.zeros((len(indices), width, len(self.labels)), dtype=np.float32)
            for row, i in enumerate(indices):
                soft[row, : len(self.soft_targets[i])] = self.soft_targets[i]
            batch["soft"] = torch.from_numpy(soft)
        return batch

    # --- model ------------------------------------------------------------------------------------------
    def model_args(self) -> dict[str, Any]:
        m = self.config.model
        return {
            "labels": list(self.labels),
            "crf": m.crf,
            "members": m.members,
            "tagger": {
                "vocab_size": len(self.codec.words),
                "num_chars": len(self.codec.chars),
                "word_dim": m.word_dim,
                "char_dim": m.char_dim,
                "char_filters": m.char_filters,
                "char_kernel": m.char_kernel,
                "hidden_size": m.hidden_size,
                "cell": m.cell,
                "bidirectional": m.bidirectional,
                "num_layers": m.num_layers,
                "dropout": m.dropout,
                "word_dropout": m.word_dropout,
                "padding_idx": Vocab.pad_id,
                "unk_idx": Vocab.unk_id,
            },
        }

    def build_model(self, model_args: dict[str, Any] | None = None) -> nn.Module:
        return NerNetwork(**(model_args or self.model_args()))

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model.loss(batch, self.config.distill)

    def decoding_codec(self, model: nn.Module) -> NerCodec:
        """The codec with the model's current CRF scores (what the service will decode with)."""
        return self._make_codec(self.codec.words, self.codec.chars, model.crf_scores())

    def predict_split(self, emissions_of, split: str, batch_size: int = 256) -> list[np.ndarray]:
        """Per sentence, in file order, its emissions ``[T, K]``; ``emissions_of(feeds) -> [B, T, K]``."""
        words, chars, _ = self.splits[split]
        out: list[np.ndarray | None] = [None] * len(words)
        for indices in sorted_batches([len(w) for w in words], batch_size):
            feeds = self.codec.collate([words[i] for i in indices], [chars[i] for i in indices])
            emissions = emissions_of(feeds)
            for row, i in enumerate(indices):
                out[i] = emissions[row, : len(words[i])]
        return out

    def metrics(self, codec: NerCodec, split: str, emissions: list[np.ndarray]) -> dict[str, float]:
        predicted = [codec.best_tags(e) for e in emissions]
        gold = self.gold[split]
        result = {
            "f1": float(f1_score(gold, predicted)),
            "precision": float(precision_score(gold, predicted)),
            "recall": float(recall_score(gold, predicted)),
        }
        for kind, row in classification_report(gold, predicted, output_dict=True).items():
            if kind.endswith(" avg"):
                continue
            for name in ("precision", "recall", "f1-score"):
                result[f"{kind}_{name.removesuffix('-score')}"] = float(row[name])
        return result

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        def emissions_of(feeds: dict[str, np.ndarray]) -> np.ndarray:
            return model(*(torch.from_numpy(feeds[n]) for n in (WORD_IDS, CHAR_IDS, LENGTHS))).numpy()

        bs = self.config.trainer.eval_batch_size
        return self.metrics(self.decoding_codec(model), split, self.predict_split(emissions_of, split, bs))

    # --- persistence ------------------------------------------------------------------------------------
    def task_state(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "words": self.codec.words.to_json(),
            "chars": self.codec.chars.to_json(),
        }

    def load_task_state(self, state: dict[str, Any]) -> None:
        self.labels = list(state["labels"])
        self.codec = self._make_codec(Vocab.from_json(state["words"]), Vocab.from_json(state["chars"]))

    # --- export (hooks of training.exporter) ----------------------------------------------------------
    def prepare_export(self) -> None:
        if not self.splits:
            self.load_data()  # parity and metrics run on the real dev/test sentences

    def architecture_type(self, model: nn.Module) -> str:
        return "EmissionTagger" + ("+CRF" if model.has_crf else "")

    def write_export_files(self, model: nn.Module, version_dir: Path) -> dict[str, str]:
        self.codec.words.save(version_dir / FILES["vocab"])
        self.codec.chars.save(version_dir / FILES["chars"])
        files = dict(FILES)
        crf = model.crf_scores()
        if crf is not None:
            (version_dir / TRANSITIONS_FILE).write_text(json.dumps(crf.to_json(self.labels)))
            files[TRANSITIONS_KEY] = TRANSITIONS_FILE
        return files

    def manifest_fields(self, model: nn.Module) -> dict[str, Any]:
        d = self.config.data
        return {
            "labels": list(self.labels),
            "tokenizer": self.codec.tokenizer.spec(),
            "task_options": {
                "lowercase_words": d.lowercase_words,
                "zero_digits": d.zero_digits,
                "max_tokens": d.max_tokens,
                "max_word_chars": d.max_word_chars,
                "entity_score": "mean token confidence (CRF marginal or softmax probability)",
            },
        }

    def parity_feeds(self, limit: int) -> list[dict[str, np.ndarray]]:
        words, chars, _ = self.splits["dev"]
        chosen = list(range(min(limit, len(words))))
        return [
            self.codec.collate([words[i] for i in group], [chars[i] for i in group])
            for group in (chosen[i : i + 32] for i in range(0, len(chosen), 32))
        ]

    @torch.no_grad()
    def reference_output(self, model: nn.Module, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return model(*(torch.from_numpy(feeds[n]) for n in (WORD_IDS, CHAR_IDS, LENGTHS))).numpy()

    def onnx_metrics(self, model: nn.Module, session) -> dict[str, dict[str, float]]:
        codec = self.decoding_codec(model)

        def onnx_emissions(feeds: dict[str, np.ndarray]) -> np.ndarray:
            return session.run([EMISSIONS], feeds)[0]

        return {s: self.metrics(codec, s, self.predict_split(onnx_emissions, s)) for s in self.eval_splits()}

    def export_graph(self, model: nn.Module, path: Path) -> None:
        """Exports the emission network; example sizes differ from each other so no axis is frozen."""
        lengths = torch.tensor([7, 5, 6, 3, 4])
        words = torch.full((5, 7), min(len(self.codec.words) - 1, 9), dtype=torch.int64)
        chars = torch.full((5, 7, 11), min(len(self.codec.chars) - 1, 8), dtype=torch.int64)
        export_onnx(
            model,
            (words, chars, lengths),
            path,
            input_names=[WORD_IDS, CHAR_IDS, LENGTHS],
            output_names=[EMISSIONS],
            dynamic_axes={
                WORD_IDS: {0: "batch", 1: "sequence"},
                CHAR_IDS: {0: "batch", 1: "sequence", 2: "chars"},
                LENGTHS: {0: "batch"},
            },
        )

    # --- reporting (docs/models.md) ---------------------------------------------------------------------
    @classmethod
    def report_columns(cls) -> list[str]:
        return [
            "model",
            "architecture",
            "dev F1",
            "test F1",
            "test F1 per type",
            "parameters",
            "ONNX size",
            "emissions latency 1×20 tokens",
            "emissions latency 32×20 tokens",
        ]

    @classmethod
    def report_row(cls, model_dir: Path, manifest: ModelManifest) -> dict[str, str]:
        _, version_dir = version_dirs(model_dir)[-1]
        arch, tagger = manifest.architecture, manifest.architecture.get("tagger", {})
        cell = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}.get(tagger.get("cell"), str(tagger.get("cell")))
        layers = int(tagger.get("num_layers", 1))
        members = int(arch.get("members", 1))
        description = (
            f"{f'{members}× ' if members > 1 else ''}"
            f"char-CNN + {'Bi' if tagger.get('bidirectional') else ''}{cell}, {layers} layer"
            f"{'s' if layers > 1 else ''}, word {tagger.get('word_dim')}, "
            f"hidden {tagger.get('hidden_size')}, {'CRF' if arch.get('crf') else 'softmax + BIO repair'}, "
            f"{manifest.precision}"
        )
        rng = np.random.default_rng(0)
        vocab_size, num_chars = int(tagger.get("vocab_size", 100)), int(tagger.get("num_chars", 20))
        feeds = [
            {
                WORD_IDS: rng.integers(4, vocab_size, size=(batch, 20), dtype=np.int64),
                CHAR_IDS: rng.integers(4, num_chars, size=(batch, 20, 8), dtype=np.int64),
                LENGTHS: np.full((batch,), 20, dtype=np.int64),
            }
            for batch in (1, 32)
        ]
        latencies = measure_latencies_ms(version_dir / manifest.graphs["model"].file, feeds)
        test = manifest.metrics.get("test", {})
        kinds = sorted(k.removesuffix("_f1") for k in test if k.endswith("_f1") and k != "f1")

        def percent(split: str) -> str:
            value = manifest.metrics.get(split, {}).get("f1")
            return f"{100 * value:.2f}" if value is not None else "—"

        return {
            "model": f"`{manifest.name}`" + (" (default)" if manifest.default else ""),
            "architecture": description,
            "dev F1": percent("dev"),
            "test F1": percent("test"),
            "test F1 per type": ", ".join(f"{k} {100 * test[f'{k}_f1']:.1f}" for k in kinds) or "—",
            "parameters": f"{manifest.parameters:,}",
            "ONNX size": format_bytes(manifest.size_bytes),
            "emissions latency 1×20 tokens": f"{latencies[0]:.2f} ms",
            "emissions latency 32×20 tokens": f"{latencies[1]:.2f} ms",
        }
