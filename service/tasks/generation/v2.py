"""Generation over the Open Inference Protocol: ``prompt`` (BYTES ``[N]``) in, one generation per prompt;
``text`` (BYTES ``[N]``, the generated characters), ``finish_reason`` (BYTES ``[N]``: ``stop`` or
``length``) and ``tokens`` (INT32 ``[N]``, characters generated) out. The parameters are ``/generate``'s
(``max_new_tokens``, ``temperature``, ``top_k``, ``top_p``, ``seed``, ``stop``: a string or a list of
strings) and apply to every prompt; with a ``seed``, each prompt's text equals ``/generate``'s for that
prompt and seed. The N generations are submitted together and run as rows of the same step batch."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from service.api.streaming import disconnected
from service.manifest import ModelManifest
from service.protocols.v2.adapter import TensorSpec, V2Adapter
from service.protocols.v2.tensors import BYTES, INT32, bytes_tensor, tensor
from service.serving import ServedModel
from service.tasks.generation.schemas import GenerateRequest

if TYPE_CHECKING:
    from fastapi import Request

    from service.tasks.generation.model import GenerationModel

_OUTPUTS = (
    TensorSpec("text", BYTES, (-1,)),
    TensorSpec("finish_reason", BYTES, (-1,)),
    TensorSpec("tokens", INT32, (-1,)),
)


class GenerationV2(V2Adapter):
    input = TensorSpec("prompt", BYTES, (-1,))
    request_model = GenerateRequest
    parameters = ("max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop")

    def outputs(self, manifest: ModelManifest) -> tuple[TensorSpec, ...]:
        return _OUTPUTS

    def options(self, parameters: dict[str, Any] | None) -> GenerateRequest:
        if parameters and isinstance(parameters.get("stop"), str):  # a parameter value is a scalar
            parameters = {**parameters, "stop": [parameters["stop"]]}
        return super().options(parameters)

    async def run(
        self, model: ServedModel, texts: list[str], options: GenerateRequest, request: Request
    ) -> list[dict[str, Any]]:
        generation: GenerationModel = model  # type: ignore[assignment]
        payloads = [options.model_copy(update={"prompt": text}) for text in texts]
        return await generation.generate_many(payloads, partial(disconnected, request))

    def encode(self, name: str, results: list[dict[str, Any]], model: ServedModel) -> dict[str, Any]:
        if name == "tokens":
            return tensor(name, INT32, (len(results),), [r["tokens"] for r in results])
        return bytes_tensor(name, [r[name] for r in results])


ADAPTER = GenerationV2()
