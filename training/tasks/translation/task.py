"""Translation (sequence-to-sequence) training plug-in: Multi30k en->fr, SentencePiece, attention RNN.

    python -m training train --config training/configs/translation_gru.toml --export

Subword vocabularies are SentencePiece models trained on the training split (ids equal the project's
``Vocab`` ids). Decoding in evaluation is the service's own numpy search
(``service.tasks.translation.search``) over the PyTorch step, so reported and served translations come
from one implementation. Metrics: SacreBLEU and chrF (cased, detokenized); dev ``bleu`` (greedy) selects
checkpoints, test is report-only.
"""

from __future__ import annotations

import base64
import json
import logging
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import sacrebleu
import torch
from torch import nn
from torch.nn import functional as F

from service.manifest import GraphSpec, ModelManifest, ParityReport, version_dirs
from service.subwords import SentencePieceTokenizer, train_sentencepiece
from service.tasks.translation.codec import TranslationCodec
from service.tasks.translation.contract import GRAPH_FILES, SIDES
from service.tasks.translation.contract import side_files as side_files_of
from service.tasks.translation.model import TranslationModel
from service.tasks.translation.search import SearchParams, beam_search, greedy_search
from service.text import Vocab, pad_batch
from training.batching import BucketedTraining, sorted_batches
from training.exporter import ManifestMetrics, Shipped, specs_of
from training.quantization import Graphs, Metrics, PrecisionChoice, choose_precision
from training.readers import file_sha256, read_parallel
from training.registry import register_task
from training.report_rows import default_row
from training.settings import REPO_ROOT
from training.task import Batch, TrainingTask
from training.tasks.translation.config import TranslationConfig
from training.tasks.translation.export import (
    check_graph_parity,
    export_graphs,
    quantized_ops,
    sentences_per_second,
    served_translator,
    teacher_forced_probabilities,
    torch_encode,
    torch_step,
    translate_served,
    weight_bytes,
)
from training.tasks.translation.network import Seq2Seq

log = logging.getLogger(__name__)


def corpus_scores(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """Cased, detokenized SacreBLEU and chrF."""
    return {
        "bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
        "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
    }


@register_task
class TranslationTask(BucketedTraining, TrainingTask):
    name: ClassVar[str] = "translation"
    config_class: ClassVar[type[TranslationConfig]] = TranslationConfig
    selection_metric: ClassVar[str] = "bleu"
    graph_files: ClassVar[dict[str, str]] = GRAPH_FILES
    report_title: ClassVar[str] = "Translation (Multi30k en->fr, attention encoder-decoder)"
    report_notes: ClassVar[tuple[str, ...]] = (
        "BLEU and chrF: sacrebleu, cased and detokenized, decoded by the service's own search "
        "over the shipped "
        "graphs. Sentences per second in the table: measured by the report, the service's "
        "`TranslationModel.predict_batch` with one ONNX Runtime thread on the first 64 English texts of "
        "`loadtest/payloads.json` (dev sentences), 1 and 32 sentences per call, best of 3 passes; over "
        "HTTP and under load: [benchmarks](benchmarks.md), `python -m loadtest.bench_translate`.",
        "Variants (GRU against LSTM on one schedule), runs that did not ship and how the default was "
        "chosen: [experiments](experiments.md#translation-multi30k-en-fr).",
    )

    config: TranslationConfig

    def __init__(self, config: TranslationConfig, settings):
        super().__init__(config, settings)
        self.codec: TranslationCodec | None = None
        self.spm_models: dict[str, bytes] = {}
        self.paths: dict[str, tuple[Path, Path]] = {}
        self.texts: dict[str, tuple[list[str], list[str]]] = {}
        self.encoded: dict[str, tuple[list[list[int]], list[list[int]]]] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="spm-")

    # --- data -------------------------------------------------------------------------------------------
    def _split_paths(self) -> dict[str, tuple[Path, Path]]:
        data = self.config.data
        splits = {"train": data.train, "dev": data.dev, **({"test": data.test} if data.test else {})}
        return {s: tuple(self.settings.resolve_data_path(p) for p in pair) for s, pair in splits.items()}

    def load_data(self) -> None:
        self.paths = self._split_paths()
        for split, (src, tgt) in self.paths.items():
            pairs = read_parallel(src, tgt)
            self.texts[split] = ([p.source for p in pairs], [p.target for p in pairs])
        if self.codec is None:
            sizes = (self.config.data.source_vocab_size, self.config.data.target_vocab_size)
            for side, lines, size in zip(SIDES, self.texts["train"], sizes, strict=True):
                tokenizer = train_sentencepiece(lines, Path(self._tmp.name) / side, size)
                self.spm_models[side] = Path(tokenizer.model_file).read_bytes()
            self._build_codec()
        max_target = self.config.data.max_target_tokens
        for split, (sources, targets) in self.texts.items():
            self.encoded[split] = (
                [self.codec.encode_source(s) for s in sources],
                [self.codec.encode_target(t)[: max_target - 1] for t in targets],
            )

    def _build_codec(self) -> None:
        tokenizers = []
        for side in SIDES:
            path = Path(self._tmp.name) / f"{side}.model"
            path.write_bytes(self.spm_models[side])
            tokenizers.append(SentencePieceTokenizer(str(path)))
        self.codec = TranslationCodec(*tokenizers, max_source_tokens=self.config.data.max_source_tokens)

    def data_info(self) -> dict[str, Any]:
        return {
            split: {
                "path": [str(p) for p in paths],
                "rows": len(self.texts[split][0]),
                "sha256": [file_sha256(p) for p in paths],
            }
            for split, paths in self.paths.items()
        }

    def batch_tensors(self, split: str, indices: list[int]) -> Batch:
        sources, targets = self.encoded[split]
        feeds = self.codec.collate([sources[i] for i in indices])
        prev, _ = pad_batch([[Vocab.bos_id, *targets[i]] for i in indices])
        gold, _ = pad_batch([[*targets[i], Vocab.eos_id] for i in indices])
        return {
            "src_ids": torch.from_numpy(feeds["src_ids"]),
            "src_lengths": torch.from_numpy(feeds["src_lengths"]),
            "prev_tokens": torch.from_numpy(prev),
            "gold": torch.from_numpy(gold),
        }

    def training_sequences(self) -> list[list[int]]:
        return self.encoded["train"][0]

    # --- model ------------------------------------------------------------------------------------------
    def model_args(self) -> dict[str, Any]:
        m = self.config.model
        return {
            "source_vocab": self.codec.source.processor.get_piece_size(),
            "target_vocab": self.codec.target_vocab_size,
            "embedding_dim": m.embedding_dim,
            "hidden_size": m.hidden_size,
            "cell": m.cell,
            "encoder_layers": m.encoder_layers,
            "decoder_layers": m.decoder_layers,
            "dropout": m.dropout,
        }

    def build_model(self, model_args: dict[str, Any] | None = None) -> nn.Module:
        return Seq2Seq(**(model_args or self.model_args()))

    def loss(self, model: nn.Module, batch: Batch, label_smoothing: float | None = None) -> torch.Tensor:
        logits = model(batch["src_ids"], batch["src_lengths"], batch["prev_tokens"])
        smoothing = self.config.model.label_smoothing if label_smoothing is None else label_smoothing
        return F.cross_entropy(
            logits.flatten(0, 1),
            batch["gold"].flatten(),
            ignore_index=Vocab.pad_id,
            label_smoothing=smoothing,
        )

    # --- evaluation -------------------------------------------------------------------------------------
    def translate(self, model: Seq2Seq, sources: list[str], beam_size: int) -> list[str]:
        """The service's numpy search over the PyTorch step, batched by source length."""
        cfg = self.config.decode
        params = SearchParams(
            beam_size=beam_size, max_length=cfg.max_length, length_penalty=cfg.length_penalty
        )
        search = greedy_search if beam_size == 1 else beam_search
        encoded = [self.codec.encode_source(s) for s in sources]
        out: list[str] = [""] * len(sources)
        step = torch_step(model)
        for group in sorted_batches([len(e) for e in encoded], cfg.batch_size):
            state, memory = torch_encode(model, self.codec.collate([encoded[i] for i in group]))
            for i, hyp in zip(group, search(step, state, memory, [params] * len(group)), strict=True):
                out[i] = self.codec.decode(hyp.tokens)
        return out

    @torch.no_grad()
    def nll(self, model: nn.Module, split: str) -> float:
        """Mean token negative log-likelihood (no label smoothing) under teacher forcing."""
        total, tokens = 0.0, 0
        sources = self.encoded[split][0]
        for indices in sorted_batches([len(s) for s in sources], self.config.trainer.eval_batch_size):
            batch = self.batch_tensors(split, indices)
            count = int((batch["gold"] != Vocab.pad_id).sum())
            total += float(self.loss(model, batch, label_smoothing=0.0)) * count
            tokens += count
        return total / max(tokens, 1)

    def eval_splits(self) -> tuple[str, ...]:
        return ("dev", "test") if self.config.data.test else ("dev",)

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """Dev: loss and greedy BLEU/chrF (on ``decode.dev_sentences``); test: also beam BLEU/chrF."""
        model.eval()
        sources, references = self.texts[split]
        limit = self.config.decode.dev_sentences if split == "dev" else None
        sources, references = sources[:limit], references[:limit]
        metrics = {
            "loss": self.nll(model, split),
            **corpus_scores(self.translate(model, sources, 1), references),
        }
        if split != "dev":
            beam = corpus_scores(self.translate(model, sources, self.config.decode.beam_size), references)
            metrics.update({f"beam_{k}": v for k, v in beam.items()})
        return metrics

    # --- persistence ------------------------------------------------------------------------------------
    def task_state(self) -> dict[str, Any]:
        return {
            "sentencepiece": {
                side: base64.b64encode(m).decode("ascii") for side, m in self.spm_models.items()
            }
        }

    def load_task_state(self, state: dict[str, Any]) -> None:
        self.spm_models = {side: base64.b64decode(m) for side, m in state["sentencepiece"].items()}
        self._build_codec()

    def _search_params(self, beam_size: int) -> SearchParams:
        cfg = self.config.decode
        return SearchParams(beam_size=beam_size, max_length=cfg.max_length, length_penalty=cfg.length_penalty)

    def _served_scores(self, translator, split: str, beam_sizes: tuple[int, ...]) -> dict[str, float]:
        """Corpus BLEU/chrF of the whole split through the service's decoding (``beam_`` keys for beams)."""
        sources, references = self.texts[split]
        scores: dict[str, float] = {"sentences": len(sources)}
        for beam in beam_sizes:
            hyps = translate_served(translator, sources, self._search_params(beam))
            prefix = "" if beam == 1 else "beam_"
            scores |= {f"{prefix}{k}": v for k, v in corpus_scores(hyps, references).items()}
            log.info("%s, beam %d, served graphs: %s", split, beam, scores)
        return scores

    def _choose_precision(
        self, manifest: ModelManifest, version_dir: Path, fp32: dict[str, Path]
    ) -> PrecisionChoice:
        """fp32 or int8 graphs by :func:`choose_precision`: dev greedy BLEU of all dev sentences through the
        service's decoding, and next-token probabilities (teacher-forced) on ``parity_examples``."""
        cfg = self.config.export
        sources = self.encoded["dev"][0][: cfg.parity_examples]
        targets = self.encoded["dev"][1][: cfg.parity_examples]

        def served(graphs: Graphs) -> TranslationModel:
            return served_translator(manifest, version_dir, graphs, threads=cfg.eval_threads)

        def evaluate(graphs: Graphs) -> Metrics:
            return {"dev": self._served_scores(served(graphs), "dev", (1,))}

        def outputs(graphs: Graphs) -> list[np.ndarray]:
            return teacher_forced_probabilities(served(graphs), sources, targets)

        choice = choose_precision(fp32, cfg, evaluate, "bleu", outputs, "next-token probability")
        if choice.report is not None:  # what the quantizer did, per file
            int8 = {key: path.with_suffix(".int8.onnx") for key, path in fp32.items()}
            for precision, graphs in (("fp32", fp32), ("int8", int8)):
                choice.report.metrics[precision]["size_bytes"] = {
                    GRAPH_FILES[k]: p.stat().st_size for k, p in graphs.items()
                }
            choice.report.metrics["int8"] |= {
                "quantized_ops": {GRAPH_FILES[k]: quantized_ops(p) for k, p in int8.items()},
                "weight_bytes": {GRAPH_FILES[k]: weight_bytes(p) for k, p in int8.items()},
            }
        return choice

    # --- export (hooks of training.exporter): every reported figure is measured on the shipped graphs
    # through the service's decoding (PyTorch's stay as ``*_pytorch``)
    def prepare_export(self) -> None:
        if not self.encoded:
            self.load_data()  # parity and metrics run on the real dev/test sentences

    def architecture_type(self, model: nn.Module) -> str:
        return "Seq2Seq (bi-RNN encoder, Luong attention decoder)"

    def export_graphs(self, model: nn.Module, work: Path) -> dict[str, Path]:
        return export_graphs(model, work)

    def export_parity(self, model: nn.Module, graphs: Graphs) -> ParityReport:
        cfg = self.config.export
        sources = self.encoded["dev"][0][: cfg.parity_examples]
        batches = [self.codec.collate(sources[i : i + 32]) for i in range(0, len(sources), 32)]
        return check_graph_parity(model, graphs["encoder"], graphs["step"], batches, cfg.parity_tolerance)

    def write_export_files(self, model: nn.Module, version_dir: Path) -> dict[str, str]:
        files = {}
        for side in SIDES:
            side_files = side_files_of(side)
            (version_dir / side_files[f"{side}_spm"]).write_bytes(self.spm_models[side])
            tokenizer = self.codec.source if side == "source" else self.codec.target
            Vocab(tokenizer.pieces()).save(version_dir / side_files[f"{side}_vocab"])
            files.update(side_files)
        return files

    def manifest_fields(self, model: nn.Module) -> dict[str, Any]:
        return {
            "tokenizer": self.codec.source.spec(),
            "task_options": {
                "max_source_tokens": self.config.data.max_source_tokens,
                "state_names": list(model.state_names),
            },
        }

    def manifest_graphs(self, model: nn.Module, graphs: Graphs) -> dict[str, GraphSpec]:
        return specs_of(graphs, GRAPH_FILES)

    def choose_export_precision(
        self, model: nn.Module, draft: ModelManifest, version_dir: Path, graphs: Graphs, work: Path
    ) -> PrecisionChoice:
        return self._choose_precision(draft, version_dir, dict(graphs))

    def export_metrics(
        self, model: nn.Module, shipped: Shipped, checkpoint: dict[str, Any]
    ) -> ManifestMetrics:
        cfg = self.config.export
        metrics = {"dev": shipped.choice.metrics["dev"]}
        if "test" in self.texts:
            served = served_translator(shipped.draft, shipped.version_dir, threads=cfg.eval_threads)
            metrics["test"] = self._served_scores(served, "test", (1, self.config.decode.beam_size))
            decode = self.config.decode
            metrics["test"] |= {"beam_size": decode.beam_size, "length_penalty": decode.length_penalty}
        for split, values in checkpoint.get("metrics", {}).items():
            metrics.setdefault(split, {}).update({f"{k}_pytorch": v for k, v in values.items()})
        if "dev" in checkpoint.get("metrics", {}):
            limit = self.config.decode.dev_sentences
            metrics["dev"]["sentences_pytorch"] = min(
                limit or len(self.texts["dev"][0]), len(self.texts["dev"][0])
            )
        return metrics

    # --- reporting --------------------------------------------------------------------------------------
    @classmethod
    def report_columns(cls) -> list[str]:
        return [
            "model",
            "architecture",
            "dev BLEU",
            "test2016 BLEU",
            "test2016 chrF",
            "sentences/s, 1 thread (1 / 32 per call)",
            "parameters",
            "ONNX size",
        ]

    @classmethod
    def report_row(cls, model_dir: Path, manifest: ModelManifest) -> dict[str, str]:
        """BLEU/chrF as measured by the export on the shipped graphs (greedy, and beam for test)."""
        row = default_row(model_dir, manifest)
        arch, dev, test = (
            manifest.architecture,
            manifest.metrics.get("dev", {}),
            manifest.metrics.get("test", {}),
        )
        row["architecture"] = (
            f"bi-{str(arch.get('cell')).upper()} encoder, attention {str(arch.get('cell')).upper()} decoder, "
            f"emb {arch.get('embedding_dim')}, hidden {arch.get('hidden_size')}, "
            f"{arch.get('source_vocab')}/{arch.get('target_vocab')} subwords, {manifest.precision}"
        )

        def pair(key: str) -> str:
            if key not in test:
                return "—"
            beam = (
                f" / beam-{test.get('beam_size', '?')} {test[f'beam_{key}']:.2f}"
                if f"beam_{key}" in test
                else ""
            )
            return f"greedy {test[key]:.2f}{beam}"

        row["dev BLEU"] = (
            f"{dev['bleu']:.2f} (greedy, {dev.get('sentences', '?')} sentences)" if "bleu" in dev else "—"
        )
        row["test2016 BLEU"], row["test2016 chrF"] = pair("bleu"), pair("chrf")
        row["sentences/s, 1 thread (1 / 32 per call)"] = cls._report_speed(model_dir, manifest)
        return row

    @staticmethod
    def _report_speed(model_dir: Path, manifest: ModelManifest, sentences: int = 64) -> str:
        """In-process sentences/s (the service's model class, one ORT thread) on the load test's English
        texts (``loadtest/payloads.json``, dev sentences), greedy and with the test figures' beam."""
        payloads = REPO_ROOT / "loadtest" / "payloads.json"
        if not payloads.exists():
            return "—"
        sources = list(json.loads(payloads.read_text(encoding="utf-8"))["translate"])
        _, version_dir = version_dirs(model_dir)[-1]
        served = served_translator(manifest, version_dir, threads=1)
        beam = int(manifest.metrics.get("test", {}).get("beam_size", 5))
        cells = []
        for size in (1, beam):
            params = SearchParams(beam_size=size, max_length=100)
            rates = [sentences_per_second(served, sources[:sentences], params, n) for n in (1, 32)]
            cells.append(f"{'greedy' if size == 1 else f'beam-{size}'} {rates[0]:,.0f} / {rates[1]:,.0f}")
        return "; ".join(cells)
