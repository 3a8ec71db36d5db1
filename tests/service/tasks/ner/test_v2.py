"""The NER v2 adapter: entities and tokens of each text as one JSON string each."""

from __future__ import annotations

import json
from types import SimpleNamespace

from service.tasks.ner.v2 import ADAPTER

RESULT = {
    "tokens": [{"text": "Paris", "start": 0, "end": 5, "tag": "B-LOC"}],
    "entities": [{"text": "Paris", "label": "LOC", "start": 0, "end": 5, "score": 0.99}],
}


def test_structures_are_json_encoded_bytes_per_text() -> None:
    for name in ("entities", "tokens"):
        tensor = ADAPTER.encode(name, [RESULT, {"tokens": [], "entities": []}], SimpleNamespace())
        assert tensor["datatype"] == "BYTES" and tensor["shape"] == [2]
        assert [json.loads(item) for item in tensor["data"]] == [RESULT[name], []]


def test_metadata_lists_the_tags() -> None:
    manifest = SimpleNamespace(name="ner-x", task="ner", labels=["O", "B-PER", "I-PER"])
    metadata = ADAPTER.metadata(manifest, 1)
    assert metadata["parameters"]["tags"] == ["O", "B-PER", "I-PER"]
    assert [o["name"] for o in metadata["outputs"]] == ["entities", "tokens"]
