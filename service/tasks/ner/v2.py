"""NER over the Open Inference Protocol: ``text`` (BYTES ``[N]``) in; per text, JSON-encoded strings out
(BYTES ``[N]``): ``entities`` (a list of ``{text, label, start, end, score}``) and ``tokens`` (a list of
``{text, start, end, tag}``), exactly the ``entities`` and ``tokens`` of ``POST /tag``'s results."""

from __future__ import annotations

import json
from typing import Any

from service.manifest import ModelManifest
from service.protocols.v2.adapter import BatchedV2Adapter, TensorSpec
from service.protocols.v2.tensors import BYTES, bytes_tensor
from service.serving import ServedModel
from service.tasks.ner.schemas import TagRequest


class NerV2(BatchedV2Adapter):
    request_model = TagRequest

    def outputs(self, manifest: ModelManifest) -> tuple[TensorSpec, ...]:
        return (TensorSpec("entities", BYTES, (-1,)), TensorSpec("tokens", BYTES, (-1,)))

    def model_parameters(self, manifest: ModelManifest) -> dict[str, Any]:
        return {"tags": list(manifest.labels), "encoding": "entities and tokens: one JSON list per text"}

    def encode(self, name: str, results: list[dict[str, Any]], model: ServedModel) -> dict[str, Any]:
        return bytes_tensor(name, [json.dumps(r[name], ensure_ascii=False) for r in results])


ADAPTER = NerV2()
