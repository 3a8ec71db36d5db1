"""Translation over the Open Inference Protocol: ``text`` (BYTES ``[N]``) in; ``translation`` (BYTES
``[N]``), ``score`` (FP32 ``[N]``) and, with ``return_attention`` or when asked for, ``attention`` (BYTES
``[N]``: per text a JSON object ``{source_tokens, target_tokens, attention}``) out. The parameters are
``/translate``'s: ``beam_size``, ``max_length``, ``length_penalty``, ``return_attention``."""

from __future__ import annotations

import json
from typing import Any

from service.manifest import ModelManifest
from service.protocols.v2.adapter import BatchedV2Adapter, TensorSpec
from service.protocols.v2.tensors import BYTES, FP32, bytes_tensor, tensor
from service.serving import ServedModel
from service.tasks.translation.schemas import TranslateRequest

_OUTPUTS = (
    TensorSpec("translation", BYTES, (-1,)),
    TensorSpec("score", FP32, (-1,)),
    TensorSpec("attention", BYTES, (-1,)),
)
_ATTENTION_KEYS = ("source_tokens", "target_tokens", "attention")


class TranslationV2(BatchedV2Adapter):
    request_model = TranslateRequest
    parameters = ("beam_size", "max_length", "length_penalty", "return_attention")

    def outputs(self, manifest: ModelManifest) -> tuple[TensorSpec, ...]:
        return _OUTPUTS

    def default_outputs(self, options: TranslateRequest, manifest: ModelManifest) -> list[str]:
        return ["translation", "score", "attention"] if options.return_attention else ["translation", "score"]

    def with_outputs(self, options: TranslateRequest, names: list[str]) -> TranslateRequest:
        if "attention" in names and not options.return_attention:
            return options.model_copy(update={"return_attention": True})
        return options

    def encode(self, name: str, results: list[dict[str, Any]], model: ServedModel) -> dict[str, Any]:
        if name == "translation":
            return bytes_tensor(name, [r["translation"] for r in results])
        if name == "score":
            return tensor(name, FP32, (len(results),), [r["score"] for r in results])
        return bytes_tensor(
            name,
            [json.dumps({key: r[key] for key in _ATTENTION_KEYS}, ensure_ascii=False) for r in results],
        )


ADAPTER = TranslationV2()
