"""Configuration of an NER experiment (one TOML file per experiment in training/configs/)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from training.config import ExperimentConfig, Section


class NerData(Section):
    train: str = "ner/train.txt"
    dev: str = "ner/valid.txt"
    test: str | None = "ner/test.txt"
    scheme: Literal["iob1", "bio"] = Field("iob1", description="tag scheme of the files; BIO is used inside")
    lowercase_words: bool = Field(True, description="word lookup lower-cased (chars keep the case)")
    zero_digits: bool = True
    min_freq: int = Field(1, ge=1)
    max_vocab: int | None = Field(None, ge=5)
    max_word_chars: int = Field(30, ge=1)
    max_tokens: int = Field(512, ge=1, description="serving truncates longer texts")


class NerModelConfig(Section):
    cell: Literal["lstm", "gru", "rnn"] = "lstm"
    bidirectional: bool = True
    num_layers: int = Field(1, ge=1)
    word_dim: int = Field(100, ge=1)
    char_dim: int = Field(30, ge=1)
    char_filters: int = Field(50, ge=1)
    char_kernel: int = Field(3, ge=1)
    hidden_size: int = Field(200, ge=1)
    dropout: float = Field(0.5, ge=0, lt=1)
    word_dropout: float = Field(0.05, ge=0, lt=1)
    crf: bool = Field(True, description="CRF layer; false: per-token softmax + BIO repair")
    members: int = Field(1, ge=1, description="ensemble size: independent taggers averaged in one graph")


class NerConfig(ExperimentConfig):
    task: Literal["ner"] = "ner"
    data: NerData = Field(default_factory=NerData)
    model: NerModelConfig = Field(default_factory=NerModelConfig)
