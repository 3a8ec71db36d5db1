"""What a task implements to speak the Open Inference Protocol: a :class:`V2Adapter`.

An adapter names the task's input tensor (``BYTES [N]``, one string per text), its request parameters,
its output tensors, and turns a model's results into those tensors. The shared routes
(``service.protocols.v2.routes``) do the rest: model lookup by name and version, body parsing, limits,
output selection, errors. A task adds v2 support with ``service/tasks/<task>/v2.py`` defining
``ADAPTER`` and names it in its plug-in (``TaskPlugin(..., v2=ADAPTER)``).

Request parameters are a subset of the fields of the task's own request body (``request_model``, e.g.
``TranslateRequest``), validated by that model, so both protocols enforce the same types, ranges and
defaults.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ValidationError

from service.api.texts import unless_disconnected
from service.errors import BadRequest, LimitExceeded
from service.protocols.v2 import tensors
from service.protocols.v2.schemas import RequestInput, RequestOutput
from service.serving import BatchedModel, ServedModel

if TYPE_CHECKING:
    from fastapi import Request

    from service.config import LimitsConfig
    from service.manifest import ModelManifest

#: request parameters Triton's clients send on their own; accepted, and answered in JSON regardless
CLIENT_PARAMETERS = frozenset({"binary_data_output"})
#: per-output parameters accepted (and answered in JSON regardless)
OUTPUT_PARAMETERS = frozenset({"binary_data"})


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1: variable

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


class V2Adapter(abc.ABC):
    """One task's mapping between v2 tensors and parameters and its served model."""

    input: ClassVar[TensorSpec] = TensorSpec("text", tensors.BYTES, (-1,))
    #: the task's request body: the v2 parameters are its fields named in ``parameters``, checked by it,
    #: and its ``allow_blank`` says whether an empty or white-space-only text is answered
    request_model: ClassVar[type[BaseModel] | None] = None
    parameters: ClassVar[tuple[str, ...]] = ()

    # -- description -----------------------------------------------------------------------------
    @abc.abstractmethod
    def outputs(self, manifest: ModelManifest) -> Sequence[TensorSpec]:
        """Every output tensor the task can answer with."""

    def model_parameters(self, manifest: ModelManifest) -> dict[str, Any]:
        """What model metadata adds under ``parameters`` besides the task and request parameters
        (e.g. the label order of a probabilities output)."""
        return {}

    @cached_property
    def parameter_schema(self) -> dict[str, Any]:
        """JSON schema of each request parameter (type, range, default, description)."""
        if self.request_model is None or not self.parameters:
            return {}
        properties = self.request_model.model_json_schema()["properties"]
        return {name: properties[name] for name in self.parameters}

    def metadata(self, manifest: ModelManifest, version: int | None) -> dict[str, Any]:
        return {
            "name": manifest.name,
            "versions": [] if version is None else [str(version)],
            "platform": "rnnserve_onnx",
            "inputs": [self.input.metadata()],
            "outputs": [spec.metadata() for spec in self.outputs(manifest)],
            "parameters": {
                "task": manifest.task,
                **self.model_parameters(manifest),
                "request_parameters": self.parameter_schema,
            },
        }

    # -- a request -------------------------------------------------------------------------------
    def texts(self, inputs: list[RequestInput], limits: LimitsConfig) -> list[str]:
        """The request's texts: exactly one input, this task's, within the text limits."""
        name = self.input.name
        if len(inputs) != 1 or inputs[0].name != name:
            given = [i.name for i in inputs]
            raise BadRequest(f"expected exactly one input, '{name}' (BYTES, shape [N]); got {given}")
        texts = tensors.strings(inputs[0])
        if not texts:
            raise BadRequest(f"input '{name}' has no elements")
        if len(texts) > limits.max_texts:
            raise LimitExceeded(
                f"input '{name}' has {len(texts)} elements; the limit is {limits.max_texts}",
                limit=limits.max_texts,
            )
        longest = max(map(len, texts))
        if longest > limits.max_text_chars:
            index = next(i for i, text in enumerate(texts) if len(text) == longest)
            raise LimitExceeded(
                f"input '{name}' element {index} has {longest} characters; "
                f"the limit is {limits.max_text_chars}",
                limit=limits.max_text_chars,
            )
        if not getattr(self.request_model, "allow_blank", True):
            for index, text in enumerate(texts):
                if not text.strip():
                    raise BadRequest(f"input '{name}' element {index} is empty or white space only")
        return texts

    def options(self, parameters: dict[str, Any] | None) -> Any:
        """The request parameters, checked by the task's request model (None when the task has none)."""
        given = {k: v for k, v in (parameters or {}).items() if k not in CLIENT_PARAMETERS}
        unknown = sorted(set(given) - set(self.parameters))
        if unknown:
            accepted = ", ".join(self.parameters) or "none"
            raise BadRequest(f"unsupported parameter(s) {unknown}; this model accepts: {accepted}")
        if self.request_model is None or not self.parameters:
            return None
        if not given:
            return self._default_options
        try:
            return self.request_model.model_validate(given)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in error["loc"])
            raise BadRequest(f"parameters.{where}: {error['msg']}") from None

    @cached_property
    def _default_options(self) -> Any:
        return self.request_model.model_validate({})

    def output_names(
        self, requested: list[RequestOutput] | None, options: Any, manifest: ModelManifest
    ) -> list[str]:
        """The outputs to answer with, in order: the requested ones, else the task's defaults."""
        if requested is None:
            return self.default_outputs(options, manifest)
        known = [spec.name for spec in self.outputs(manifest)]
        names = []
        for output in requested:
            if output.name not in known:
                raise BadRequest(f"unknown output '{output.name}'; this model has {known}")
            if output.name in names:
                raise BadRequest(f"output '{output.name}' is requested twice")
            extra = sorted(set(output.parameters or {}) - OUTPUT_PARAMETERS)
            if extra:
                raise BadRequest(f"output '{output.name}': unsupported output parameter(s) {extra}")
            names.append(output.name)
        return names

    def default_outputs(self, options: Any, manifest: ModelManifest) -> list[str]:
        return [spec.name for spec in self.outputs(manifest)]

    def with_outputs(self, options: Any, names: list[str]) -> Any:
        """The options adjusted to what the chosen outputs need (e.g. attention weights)."""
        return options

    @abc.abstractmethod
    async def run(self, model: ServedModel, texts: list[str], options: Any, request: Request) -> list[Any]:
        """One result per text, in order, through the model's own batcher or scheduler."""

    @abc.abstractmethod
    def encode(self, name: str, results: list[Any], model: ServedModel) -> dict[str, Any]:
        """The output tensor ``name`` of every result."""


class BatchedV2Adapter(V2Adapter):
    """For ``BatchedModel`` tasks: the texts join the model's dynamic batcher like the task route's."""

    async def run(self, model: ServedModel, texts: list[str], options: Any, request: Request) -> list[Any]:
        """As the task route: the model's batcher, cancelled (texts still queued skipped) if the client
        leaves first."""
        assert isinstance(model, BatchedModel)
        return await unless_disconnected(request, model.infer_many(model.request_items(options, texts)))
