"""Configuration sections of the translation task (``training/configs/translation_*.toml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from training.config import ExperimentConfig, ExportConfig, Section


class TranslationData(Section):
    train: tuple[str, str] = ("translation/train.en", "translation/train.fr")
    dev: tuple[str, str] = ("translation/val.en", "translation/val.fr")
    test: tuple[str, str] | None = ("translation/test2016.en", "translation/test2016.fr")
    source_vocab_size: int = Field(8000, ge=8, description="SentencePiece pieces, trained on the train split")
    target_vocab_size: int = Field(8000, ge=8)
    max_source_tokens: int = Field(
        128, ge=2, description="longer sources are truncated (training and serving)"
    )
    max_target_tokens: int = Field(128, ge=2, description="longer training targets are truncated")


class Seq2SeqModel(Section):
    cell: Literal["gru", "lstm"] = "gru"
    embedding_dim: int = Field(256, ge=1)
    hidden_size: int = Field(256, ge=1)
    encoder_layers: int = Field(1, ge=1)
    decoder_layers: int = Field(1, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    label_smoothing: float = Field(0.1, ge=0, lt=1)


class DecodeConfig(Section):
    beam_size: int = Field(5, ge=1, le=8, description="beam of the reported beam-search BLEU")
    length_penalty: float = Field(1.0, ge=0, le=2)
    max_length: int = Field(100, ge=1)
    dev_sentences: int | None = Field(None, ge=1, description="dev sentences decoded per epoch; none: all")
    batch_size: int = Field(64, ge=1)


class TranslationExport(ExportConfig):
    """Export knobs; the int8 rule is in BLEU points, measured through the service's own decoding.

    int8 is opt-in per config (``quantize = "auto"`` in the shipped configs). The default method is
    weight-only: ORT's dynamic quantization also quantizes activations with one scale per batch tensor, so a
    sentence's translation would depend on the other sentences of its batch (the service batches
    concurrent requests together); weight-only int8 keeps fp32 arithmetic and that independence.
    """

    quantize: Literal["never", "auto", "always"] = Field(
        "never", description="int8 graphs (see quantize_method); 'auto' ships them only if dev BLEU holds"
    )
    quantize_max_drop: float = Field(
        0.5, ge=0, description="largest dev greedy BLEU loss (points) 'auto' accepts for int8 graphs"
    )
    quantize_tolerance: float = Field(
        0.25,
        gt=0,
        description="max abs next-token probability difference int8 vs fp32 (first decoder steps) "
        "that 'always' accepts; reported, not a criterion of 'auto'",
    )
    eval_threads: int = Field(1, ge=1, description="ONNX Runtime intra-op threads of the export's decoding")


class TranslationConfig(ExperimentConfig):
    data: TranslationData = Field(default_factory=TranslationData)
    model: Seq2SeqModel = Field(default_factory=Seq2SeqModel)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)
    export: TranslationExport
