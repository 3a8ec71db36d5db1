"""Sentiment over the Open Inference Protocol: ``text`` (BYTES ``[N]``) in; ``label`` (BYTES ``[N]``) and
``probabilities`` (FP32 ``[N, C]``, columns in the order of model metadata's ``parameters.labels``) out."""

from __future__ import annotations

from typing import Any

from service.manifest import ModelManifest
from service.protocols.v2.adapter import BatchedV2Adapter, TensorSpec
from service.protocols.v2.tensors import BYTES, FP32, bytes_tensor, tensor
from service.serving import ServedModel
from service.tasks.sentiment.schemas import SentimentRequest


class SentimentV2(BatchedV2Adapter):
    request_model = SentimentRequest

    def outputs(self, manifest: ModelManifest) -> tuple[TensorSpec, ...]:
        return (
            TensorSpec("label", BYTES, (-1,)),
            TensorSpec("probabilities", FP32, (-1, len(manifest.labels))),
        )

    def model_parameters(self, manifest: ModelManifest) -> dict[str, Any]:
        return {"labels": list(manifest.labels)}

    def encode(self, name: str, results: list[dict[str, Any]], model: ServedModel) -> dict[str, Any]:
        if name == "label":
            return bytes_tensor(name, [r["label"] for r in results])
        labels = model.manifest.labels
        data = [r["scores"][label] for r in results for label in labels]
        return tensor(name, FP32, (len(results), len(labels)), data)


ADAPTER = SentimentV2()
