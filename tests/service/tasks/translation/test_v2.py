"""The translation v2 adapter: /translate's options as parameters, attention on request."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from service.errors import BadRequest
from service.protocols.v2.schemas import RequestOutput
from service.tasks.translation.v2 import ADAPTER

MANIFEST = SimpleNamespace(name="translation-x", task="translation", labels=[])


def test_parameters_are_checked_by_the_translate_request() -> None:
    options = ADAPTER.options({"beam_size": 3, "length_penalty": 0.5})
    assert (options.beam_size, options.length_penalty, options.max_length) == (3, 0.5, 100)
    assert ADAPTER.options(None).beam_size == 5
    with pytest.raises(BadRequest, match=r"parameters.max_length: Input should be less than or equal to 512"):
        ADAPTER.options({"max_length": 513})
    with pytest.raises(BadRequest, match=r"unsupported parameter\(s\) \['model', 'text'\]"):
        ADAPTER.options({"text": "x", "model": "y"})


def test_attention_is_an_output_when_asked_for_either_way() -> None:
    plain = ADAPTER.options(None)
    assert ADAPTER.default_outputs(plain, MANIFEST) == ["translation", "score"]
    flagged = ADAPTER.options({"return_attention": True})
    assert ADAPTER.default_outputs(flagged, MANIFEST) == ["translation", "score", "attention"]
    names = ADAPTER.output_names([RequestOutput(name="attention")], plain, MANIFEST)
    assert ADAPTER.with_outputs(plain, names).return_attention is True
    assert plain.return_attention is False  # the shared default is never changed


def test_score_is_fp32_and_attention_json() -> None:
    result = {
        "translation": "Un chien.",
        "score": -0.5,
        "source_tokens": ["▁A"],
        "target_tokens": ["▁Un"],
        "attention": [[1.0]],
    }
    assert ADAPTER.encode("score", [result], SimpleNamespace()) == {
        "name": "score",
        "datatype": "FP32",
        "shape": [1],
        "data": [-0.5],
    }
    (attention,) = ADAPTER.encode("attention", [result], SimpleNamespace())["data"]
    assert attention == '{"source_tokens": ["▁A"], "target_tokens": ["▁Un"], "attention": [[1.0]]}'
