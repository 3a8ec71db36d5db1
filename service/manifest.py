"""The model repository contract: ``models/<name>/config.json`` plus numbered version folders.

Layout (Triton-style)::

    models/<name>/config.json        this manifest
    models/<name>/<version>/*.onnx   graphs named in ``graphs``
    models/<name>/<version>/*.json   vocabularies and other files named in ``files``
    models/<name>/<version>/weights.bin   weights shared by several graphs (ONNX external data), in ``files``

Training writes manifests with these classes and the service validates them with the same classes,
so the two sides can never disagree on the format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MANIFEST_NAME = "config.json"
Dtype = Literal["int64", "int32", "float32", "float16", "bool"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class TensorSpec(_Strict):
    """One graph input or output; ``-1`` marks a dynamic dimension."""

    name: str
    dtype: Dtype
    dims: list[int]


class GraphSpec(_Strict):
    """One ONNX graph of a model (a model may have several: encoder and decoder step, prefill and step)."""

    file: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class ParityReport(_Strict):
    """ONNX Runtime against PyTorch on real dev examples."""

    max_abs_diff: float
    tolerance: float
    examples: int
    compared: str = Field(description="which output was compared, e.g. 'probabilities'")


class QuantizationReport(_Strict):
    method: str
    max_abs_diff: float
    tolerance: float
    metrics: dict[str, dict[str, Any]] = Field(default_factory=dict)
    fp32_size_bytes: int


class TrainingInfo(_Strict):
    data: dict[str, Any] = Field(description="dataset paths, sizes and checksums per split")
    config: dict[str, Any] = Field(description="the full resolved training configuration")
    epochs_run: int
    best_epoch: int
    train_time_s: float
    seed: int
    machine: str = ""
    command: str = ""


class ModelManifest(_Strict):
    """Everything the service (and a reader) needs to know about one model."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    task: str
    description: str = ""
    default: bool = Field(False, description="the task's default model unless settings pick another")
    architecture: dict[str, Any]
    graphs: dict[str, GraphSpec]
    max_batch_size: int = Field(64, ge=1)
    labels: list[str] = Field(default_factory=list)
    tokenizer: dict[str, Any]
    files: dict[str, str] = Field(default_factory=dict, description="vocabularies etc., per version folder")
    task_options: dict[str, Any] = Field(default_factory=dict)
    training: TrainingInfo | None = None
    metrics: dict[str, dict[str, Any]] = Field(default_factory=dict, description="split -> metric -> value")
    parameters: int = Field(ge=0)
    size_bytes: int = Field(ge=0, description="bytes of the version folder's graphs and their weights files")
    parity: ParityReport | None = None
    quantization: QuantizationReport | None = None

    @property
    def precision(self) -> str:
        """``int8`` when the export shipped the quantized graphs, else ``fp32``."""
        shipped = self.quantization.metrics.get("shipped", {}) if self.quantization else {}
        return "int8" if shipped.get("graph") == "int8" else "fp32"

    def save(self, model_dir: Path) -> Path:
        model_dir.mkdir(parents=True, exist_ok=True)
        path = model_dir / MANIFEST_NAME
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load(cls, model_dir: Path) -> ModelManifest:
        return cls.model_validate_json((model_dir / MANIFEST_NAME).read_text(encoding="utf-8"))


def version_dirs(model_dir: Path) -> list[tuple[int, Path]]:
    """Numbered version folders of a model, oldest first."""
    found = [(int(p.name), p) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(found)
