"""The generation v2 adapter: /generate's options as parameters; a stop parameter may be one string."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from service.errors import BadRequest
from service.tasks.generation.v2 import ADAPTER


def test_parameters_are_generates_options() -> None:
    options = ADAPTER.options({"max_new_tokens": 20, "seed": 3, "stop": "\n", "temperature": 0})
    assert (options.max_new_tokens, options.seed, options.stop, options.temperature) == (20, 3, ["\n"], 0)
    assert ADAPTER.options({"stop": ["a", "b"]}).stop == ["a", "b"]
    with pytest.raises(BadRequest, match=r"parameters\.seed"):
        ADAPTER.options({"seed": -1})
    with pytest.raises(BadRequest, match=r"unsupported parameter\(s\) \['stream'\]"):
        ADAPTER.options({"stream": True})


def test_the_input_is_prompt_and_tokens_are_int32() -> None:
    manifest = SimpleNamespace(name="generation-x", task="generation", labels=[])
    metadata = ADAPTER.metadata(manifest, 1)
    assert metadata["inputs"] == [{"name": "prompt", "datatype": "BYTES", "shape": [-1]}]
    results = [{"text": "ab", "finish_reason": "length", "tokens": 2}]
    assert ADAPTER.encode("tokens", results, SimpleNamespace())["datatype"] == "INT32"
    assert ADAPTER.encode("finish_reason", results, SimpleNamespace())["data"] == ["length"]
