"""Configuration of a sentiment experiment (one TOML file per experiment in training/configs/)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from training.config import ExperimentConfig, Section


class SentimentData(Section):
    train: str = "sentiment/train.tsv"
    dev: str = "sentiment/dev.tsv"
    test: str | None = "sentiment/test.tsv"
    text_column: str = "text"
    label_column: str = "label"
    labels: list[str] | None = Field(None, description="raw label values in class order; default: sorted")
    label_names: list[str] | None = Field(None, description="served label names, one per class")
    tokenizer: Literal["word", "whitespace", "word_pieces"] = Field(
        "word", description="word_pieces: words, the rare and unseen ones spelled in SentencePiece pieces"
    )
    lowercase: bool = True
    pieces: int = Field(4000, ge=100, description="word_pieces: SentencePiece pieces trained on the words")
    whole_word_min_freq: int = Field(
        5, ge=1, description="word_pieces: training occurrences for a word to keep an embedding of its own"
    )
    min_freq: int = Field(1, ge=1)
    max_vocab: int | None = Field(None, ge=5)
    max_tokens: int = Field(512, ge=1, description="longer texts are truncated (training and serving)")


class SentimentModel(Section):
    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    bidirectional: bool = False
    num_layers: int = Field(1, ge=1)
    embedding_dim: int = Field(128, ge=1)
    hidden_size: int = Field(128, ge=1)
    dropout: float = Field(0.3, ge=0, lt=1)
    embedding_dropout: float = Field(0.2, ge=0, lt=1)
    word_dropout: float = Field(0.0, ge=0, lt=1)
    pooling: Literal["last", "mean", "max", "attention", "max_mean"] = "max"
    head_dropout: float = Field(0.3, ge=0, lt=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    members: int = Field(1, ge=1, description="ensemble size: independent members averaged in one graph")
    char_filters: int = Field(
        0, ge=0, description="a character CNN's features beside each token's embedding (0: none)"
    )
    char_dim: int = Field(30, ge=1)
    char_kernel: int = Field(3, ge=1)
    max_word_chars: int = Field(30, ge=1, description="characters of a token the character CNN reads")


class SentimentConfig(ExperimentConfig):
    task: Literal["sentiment"] = "sentiment"
    data: SentimentData = Field(default_factory=SentimentData)
    model: SentimentModel = Field(default_factory=SentimentModel)
