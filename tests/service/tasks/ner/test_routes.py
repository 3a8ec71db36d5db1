"""POST /tag on a tiny NER model repository built without torch: shapes, offsets, limits, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from service.manifest import GraphSpec, ModelManifest, TensorSpec
from service.tasks.ner.codec import CrfScores, is_valid_bio
from service.tasks.ner.plugin import PLUGIN as NER
from service.tasks.sentiment.plugin import PLUGIN as SENTIMENT
from service.text import Vocab, WordTokenizer
from tests.service.conftest import serving, settings_for
from tests.service.tiny_onnx import make_tiny_sentiment

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
WORDS = ["peter", "blackburn", "lives", "in", "paris", "the", "eu", "."]


def emission_graph(words: int, chars: int, k: int, seed: int) -> onnx.ModelProto:
    """``emissions[b, t] = word_table[word] + sum(char_table[chars of the word])``: the NER contract."""
    rng = np.random.default_rng(seed)
    char_table = rng.normal(0, 0.3, (chars, k)).astype(np.float32)
    char_table[Vocab.pad_id] = 0  # padding adds nothing: answers do not depend on the batch
    inits = [
        numpy_helper.from_array(rng.normal(0, 2, (words, k)).astype(np.float32), "word_table"),
        numpy_helper.from_array(char_table, "char_table"),
        numpy_helper.from_array(np.array([2], np.int64), "axis2"),
    ]
    nodes = [
        helper.make_node("Gather", ["word_table", "word_ids"], ["w"]),
        helper.make_node("Gather", ["char_table", "char_ids"], ["c4"]),
        helper.make_node("ReduceSum", ["c4", "axis2"], ["c"], keepdims=0),
        helper.make_node("Add", ["w", "c"], ["emissions"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_ner",
        [
            helper.make_tensor_value_info("word_ids", TensorProto.INT64, ["batch", "time"]),
            helper.make_tensor_value_info("char_ids", TensorProto.INT64, ["batch", "time", "chars"]),
            helper.make_tensor_value_info("lengths", TensorProto.INT64, ["batch"]),
        ],
        [helper.make_tensor_value_info("emissions", TensorProto.FLOAT, ["batch", "time", k])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def make_tiny_ner(root: Path, name: str, crf: bool, default: bool, seed: int = 0) -> Path:
    words = Vocab.build([WORDS])
    chars = Vocab.build([list("".join(WORDS) + "PBELU")])
    version_dir = root / name / "1"
    version_dir.mkdir(parents=True)
    onnx.save(emission_graph(len(words), len(chars), len(LABELS), seed), version_dir / "model.onnx")
    words.save(version_dir / "vocab.json")
    chars.save(version_dir / "chars.json")
    files = {"vocab": "vocab.json", "chars": "chars.json"}
    if crf:
        rng = np.random.default_rng(seed + 1)
        k = len(LABELS)
        scores = CrfScores(rng.normal(size=(k, k)), rng.normal(size=k), rng.normal(size=k))
        (version_dir / "transitions.json").write_text(json.dumps(scores.to_json(LABELS)))
        files["transitions"] = "transitions.json"
    ModelManifest(
        name=name,
        task="ner",
        default=default,
        architecture={"type": "tiny table tagger"},
        graphs={
            "model": GraphSpec(
                file="model.onnx",
                inputs=[
                    TensorSpec(name="word_ids", dtype="int64", dims=[-1, -1]),
                    TensorSpec(name="char_ids", dtype="int64", dims=[-1, -1, -1]),
                    TensorSpec(name="lengths", dtype="int64", dims=[-1]),
                ],
                outputs=[TensorSpec(name="emissions", dtype="float32", dims=[-1, -1, len(LABELS)])],
            )
        },
        labels=LABELS,
        tokenizer=WordTokenizer().spec(),
        files=files,
        task_options={"lowercase_words": True, "max_tokens": 512},
        parameters=0,
        size_bytes=(version_dir / "model.onnx").stat().st_size,
    ).save(root / name)
    return root / name


@pytest.fixture(scope="module")
def ner_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ner-models")
    make_tiny_ner(root, "ner-tiny", crf=True, default=True)
    make_tiny_ner(root, "ner-tiny-softmax", crf=False, default=False, seed=3)
    make_tiny_sentiment(root, "sentiment-tiny", default=True)
    return root


@pytest.fixture(scope="module")
def client(ner_repo):
    with serving(settings_for(ner_repo), [SENTIMENT, NER]) as c:
        yield c


def _check(text: str, result: dict) -> None:
    tokens = result["tokens"]
    assert [t["text"] for t in tokens] == [t.text for t in WordTokenizer().tokenize(text)]
    for token in tokens:
        assert text[token["start"] : token["end"]] == token["text"] and token["tag"] in LABELS
    assert is_valid_bio([t["tag"] for t in tokens])
    for entity in result["entities"]:
        assert text[entity["start"] : entity["end"]] == entity["text"]
        assert entity["label"] in {"PER", "LOC", "ORG"} and 0 < entity["score"] <= 1 + 1e-6


@pytest.mark.parametrize("model", [None, "ner-tiny-softmax"])
def test_one_text_is_tagged_with_offsets_and_valid_bio(client, model):
    text = "Peter Blackburn lives in Paris ."
    r = client.post("/tag", json={"text": text} | ({"model": model} if model else {}))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == (model or "ner-tiny")
    (result,) = body["results"]
    assert len(result["tokens"]) == 6
    _check(text, result)


def test_several_texts_come_back_in_order_and_equal_single_answers(client):
    texts = ["Peter lives in Paris .", "", "  \t\n ", "the EU", "Blackburn " * 30, "café ☕ Zürich 🇫🇷 !"]
    batch = client.post("/tag", json={"texts": texts}).json()["results"]
    assert len(batch) == len(texts)
    for text, result in zip(texts, batch, strict=True):
        _check(text, result)
        single = client.post("/tag", json={"text": text}).json()["results"][0]
        assert [t["tag"] for t in single["tokens"]] == [t["tag"] for t in result["tokens"]]
        for a, b in zip(single["entities"], result["entities"], strict=True):
            assert a["score"] == pytest.approx(b["score"], abs=1e-5)
    assert batch[1] == {"tokens": [], "entities": []} and batch[2] == batch[1]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=80))
def test_offsets_hold_for_any_unicode_text(client, text):
    r = client.post("/tag", json={"text": text})
    assert r.status_code == 200
    _check(text, r.json()["results"][0])


def test_errors_match_sentiment(client):
    r = client.post("/tag", json={"text": "x", "model": "nope"})
    assert r.status_code == 404 and r.json()["error"]["field"] == "model"
    r = client.post("/tag", json={"text": "x", "model": "sentiment-tiny"})  # not an NER model
    assert r.status_code == 404 and r.json()["error"]["field"] == "model"
    assert client.post("/tag", json={}).json()["error"]["field"] == "text"
    assert client.post("/tag", json={"texts": ["a", 3]}).json()["error"]["field"] == "texts[1]"
    assert client.post("/tag", json={"text": "a", "colour": 1}).json()["error"]["field"] == "colour"
    r = client.post("/tag", content=b'{"text": ', headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def test_limits_name_the_field_and_the_limit(ner_repo):
    limits = {"max_text_chars": 10, "max_texts": 3}
    with serving(settings_for(ner_repo, limits=limits), [SENTIMENT, NER]) as c:
        r = c.post("/tag", json={"text": "x" * 11})
        assert r.status_code == 422 and r.json()["error"]["limit"] == 10
        assert c.post("/tag", json={"texts": ["a"] * 4}).json()["error"]["field"] == "texts"
        assert c.post("/tag", json={"texts": ["a", "y" * 11]}).json()["error"]["field"] == "texts[1]"
        assert c.post("/tag", json={"texts": ["a"] * 3}).status_code == 200


def test_tag_is_in_the_openapi_under_the_ner_tag(client):
    operation = client.get("/openapi.json").json()["paths"]["/tag"]["post"]
    assert operation["tags"] == ["ner"]
