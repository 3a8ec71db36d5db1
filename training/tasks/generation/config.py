"""Typed experiment configuration of the generation task (``training/configs/generation_*.toml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from training.config import ExperimentConfig, ExportConfig, Section


class GenerationData(Section):
    path: str = Field("generation/input.txt", description="plain text; relative paths resolve under data_dir")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="the last share of the text, held out")


class GenerationModel(Section):
    cell: Literal["lstm", "gru"] = "lstm"
    embed_dim: int = Field(64, ge=1)
    hidden_size: int = Field(384, ge=1)
    num_layers: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)


class LanguageModelling(Section):
    """An epoch is ``train_chars / (batch_size * seq_len)`` random windows; ``trainer.epochs`` counts them."""

    seq_len: int = Field(256, ge=2, description="characters per training window (BPTT length)")
    eval_segments: int = Field(16, ge=1, description="validation stream read as this many parallel segments")
    max_prompt_chars: int = Field(4096, ge=1, description="longest prompt the served model accepts")
    unknown_characters: Literal["reject", "drop"] = "reject"
    parity_steps: int = Field(64, ge=1, description="decoding steps compared between ONNX and PyTorch")


class GenerationExport(ExportConfig):
    """Export knobs; the int8 rule is in nats per character of the held-out stream loss, measured on the
    step graph through ONNX Runtime (int8 weights folded at load, as the service runs them).

    int8 is opt-in per config (``quantize = "auto"`` in the shipped configs), so tiny test models keep
    fp32 graphs that reproduce PyTorch's greedy rollouts exactly.
    """

    quantize: Literal["never", "auto", "always"] = Field(
        "never", description="int8 graphs (weight-only); 'auto' ships them only if the dev loss holds"
    )
    quantize_max_drop: float = Field(
        0.01,
        ge=0,
        description="largest dev stream-loss increase (nats/char) 'auto' accepts for int8 graphs; 0.01 nats "
        "is ln(1.01): at most 1% higher per-character perplexity",
    )
    quantize_tolerance: float = Field(
        0.25,
        gt=0,
        description="max abs logit difference int8 vs fp32 over a fixed rollout (padded prefill of dev "
        "prompts, then the fp32 graphs' greedy tokens fed to both); a logit shift of d moves every "
        "log-probability by at most 2d, so 0.25 keeps each next-character probability within e^+-0.5",
    )


class GenerationConfig(ExperimentConfig):
    task: Literal["generation"] = "generation"
    data: GenerationData = Field(default_factory=GenerationData)
    model: GenerationModel = Field(default_factory=GenerationModel)
    lm: LanguageModelling = Field(default_factory=LanguageModelling)
    export: GenerationExport
