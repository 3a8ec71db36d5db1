"""Experiment configuration: pydantic models loaded from TOML files, with typed command-line overrides.

An experiment file names its ``task``; the task plug-in's ``config_class`` (a subclass of
:class:`ExperimentConfig`) validates the whole file, so every section is typed and an unknown key anywhere
is an error. Overrides use dotted paths: ``--seed=3``, ``--trainer.lr=2e-3``, ``--model.cell=gru``. Values are
coerced to the field's type by pydantic (``"2e-3"`` -> float, ``"true"`` -> bool); JSON is accepted for lists
and tables (``--data.labels='["neg","pos"]'``).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Section(BaseModel):
    """Base of every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class TrainerConfig(Section):
    """The generic training loop's knobs (see :mod:`training.trainer`)."""

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1)
    eval_batch_size: int = Field(256, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["constant", "linear", "cosine"] = "linear"
    warmup_ratio: float = Field(0.05, ge=0, le=1, description="share of all steps spent warming up")
    min_lr_ratio: float = Field(
        0.0, ge=0, le=1, description="floor of the linear/cosine decay, as a share of lr (0: decay to zero)"
    )
    clip_norm: float = Field(1.0, gt=0, description="gradient-norm clipping threshold (BPTT)")
    patience: int = Field(3, ge=1, description="epochs without dev improvement before stopping")
    threads: int = Field(1, ge=1, description="torch intra-op threads")
    progress: bool = True
    max_steps_per_epoch: int | None = Field(None, ge=1, description="cap for smoke runs")
    keep_epochs: int = Field(
        0,
        ge=0,
        description="keep the weights of the last N epochs in runs/<name>/epochs/ "
        "(for checkpoint averaging: python -m training average)",
    )
    init_from: str | None = Field(
        None,
        description="a run's best.pt whose weights the model starts from instead of random ones (a warm "
        "start; the architecture must be the same)",
    )


class ExportConfig(Section):
    """How a trained model goes into the model repository (see :mod:`training.export`)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    description: str = ""
    default: bool = False
    version: int = Field(1, ge=1)
    max_batch_size: int = Field(64, ge=1)
    parity_tolerance: float = Field(1e-4, gt=0)
    parity_examples: int = Field(256, ge=1)
    quantize: Literal["never", "auto", "always"] = Field(
        "auto", description="int8 graphs (see quantize_method); 'auto' ships them if the dev metric holds"
    )
    quantize_max_drop: float = Field(0.005, ge=0, description="largest dev-metric loss 'auto' accepts")
    quantize_tolerance: float = Field(0.05, gt=0, description="max abs prob difference int8 vs fp32")
    quantize_method: Literal["weights", "dynamic"] = Field(
        "weights",
        description="'weights': weight-only int8 (MatMul/Gemm/RNN weights and embedding tables; the service "
        "folds them to fp32 at load, so every row of a batch is independent of the others); 'dynamic': "
        "onnxruntime quantize_dynamic (int8 activations with one scale per batch tensor: a row's result "
        "depends on its batch neighbours)",
    )


class DistillConfig(Section):
    teacher: str = Field(description="the teacher: an exported model folder, models/<name> (newest version)")
    temperature: float = Field(2.0, gt=0, description="softens both distributions in the soft loss")
    alpha: float = Field(0.7, ge=0, le=1, description="weight of the soft loss; 1 - alpha on the gold loss")
    targets: Literal["probabilities", "marginals"] = Field(
        "probabilities",
        description="NER: the teacher's per-token tag distribution from its emission scores (softmax) or "
        "its CRF marginals; sentiment always uses class probabilities",
    )
    augment: int = Field(
        0,
        ge=0,
        description="perturbed copies of each training text (training.augmentation) added to the transfer "
        "set with the teacher's targets (sentiment: its probabilities alone; NER: its distributions, and its "
        "decoded tags as gold)",
    )
    mask_prob: float = Field(0.1, ge=0, le=1, description="augment: chance that a word of a copy is masked")
    ngram_prob: float = Field(0.25, ge=0, le=1, description="augment: chance that a copy keeps one n-gram")
    pos_prob: float = Field(
        0.0,
        ge=0,
        le=1,
        description="augment: chance that a word of a copy that is not masked is replaced by a training word "
        "of its part of speech (pos_lexicon)",
    )
    pos_lexicon: str | None = Field(
        None,
        description="augment with pos_prob: a CoNLL-format file under the data folder whose second column "
        "tags its words (e.g. ner/train.txt); each word takes its most frequent tag",
    )

    @model_validator(mode="after")
    def _replacement_needs_a_lexicon(self) -> DistillConfig:
        if self.pos_prob and not self.pos_lexicon:
            raise ValueError("distill.pos_prob needs distill.pos_lexicon")
        if self.mask_prob + self.pos_prob > 1:
            raise ValueError("distill.mask_prob + distill.pos_prob must be at most 1")
        return self


class ExperimentConfig(Section):
    """Top level of an experiment file; task plug-ins subclass it and add ``data`` and ``model`` sections."""

    task: str
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", description="run name: runs/<name>/")
    seed: int = 13
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    export: ExportConfig
    distill: DistillConfig | None = Field(
        None, description="train as a student of an exported teacher (training.distillation)"
    )


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


def _parse_value(raw: str) -> Any:
    """JSON for lists, objects and ``null`` (unset an optional key); any other text stays a string, which
    pydantic converts to the field's type."""
    stripped = raw.strip()
    if stripped == "null":
        return None
    if stripped[:1] in "[{":
        try:
            return json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"cannot parse {raw!r} as JSON: {exc}") from exc
    return raw


def _field_type(model: type[BaseModel], path: list[str]) -> None:
    """Raises ConfigError if a dotted path names no field of the config schema."""
    current: Any = model
    for depth, key in enumerate(path):
        fields = getattr(current, "model_fields", None)
        if fields is None or key not in fields:
            known = sorted(fields) if fields else []
            raise ConfigError(f"unknown config key {'.'.join(path[: depth + 1])!r}; known here: {known}")
        annotation = fields[key].annotation
        current = annotation if isinstance(annotation, type) else None
        if current is None and depth < len(path) - 1:
            # Optional/union sections: pick the BaseModel member.
            for arg in getattr(annotation, "__args__", ()):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    current = arg


def parse_overrides(args: Sequence[str]) -> list[tuple[list[str], Any]]:
    """``["--trainer.lr=1e-3", ...]`` -> ``[(["trainer", "lr"], "1e-3"), ...]``."""
    parsed = []
    for arg in args:
        if not arg.startswith("--") or "=" not in arg:
            raise ConfigError(f"overrides look like --key=value or --section.key=value, got {arg!r}")
        key, raw = arg[2:].split("=", 1)
        if not key:
            raise ConfigError(f"empty key in {arg!r}")
        parsed.append((key.split("."), _parse_value(raw)))
    return parsed


def apply_overrides(data: dict[str, Any], overrides: Sequence[tuple[list[str], Any]]) -> dict[str, Any]:
    data = json.loads(json.dumps(data))  # deep copy of plain data
    for path, value in overrides:
        node = data
        for key in path[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{'.'.join(path)}: {key!r} is not a section")
        node[path[-1]] = value
    return data


def load_config_data(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def require_export_overrides(overrides: Sequence[str], command: str) -> None:
    """``command`` (re-exporting or re-quantizing a trained model) may change only how it ships."""
    bad = [o for o in overrides if not o.startswith("--export.")]
    if bad:
        raise ConfigError(f"{command} takes only --export.* overrides, got {bad}")


def build_config(
    config_class: type[ExperimentConfig], data: dict[str, Any], overrides: Sequence[str] = ()
) -> ExperimentConfig:
    """Validates file data plus overrides against the task's schema; every problem is a ConfigError."""
    parsed = parse_overrides(overrides)
    for path, _ in parsed:
        _field_type(config_class, path)
    merged = apply_overrides(data, parsed)
    try:
        return config_class.model_validate(merged)
    except Exception as exc:  # pydantic.ValidationError, reported with the file's context
        raise ConfigError(str(exc)) from exc
