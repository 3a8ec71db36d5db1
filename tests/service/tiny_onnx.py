"""Builds tiny, valid sentiment model-repository entries without torch (onnx.helper, random weights).

A real recurrent graph (embedding -> ONNX ``LSTM`` with ``sequence_lens`` -> linear -> softmax) that follows
the sentiment contract, so API tests run in milliseconds and do not depend on training. The parity test
uses the training package's exported models instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from service.manifest import GraphSpec, ModelManifest, TensorSpec
from service.text import Vocab, WordTokenizer

WORDS = [
    *("good", "great", "fine", "bad", "awful", "dull", "film", "movie", "plot"),
    *("acting", "the", "a", "is", "was", "not", "very", "and"),
]


def sentiment_graph(vocab_size: int, embed: int = 8, hidden: int = 8, classes: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    f32 = np.float32
    inits = [
        numpy_helper.from_array(rng.normal(0, 1, (vocab_size, embed)).astype(f32), "emb"),
        numpy_helper.from_array(rng.normal(0, 0.5, (1, 4 * hidden, embed)).astype(f32), "W"),
        numpy_helper.from_array(rng.normal(0, 0.5, (1, 4 * hidden, hidden)).astype(f32), "R"),
        numpy_helper.from_array(np.zeros((1, 8 * hidden), f32), "B"),
        numpy_helper.from_array(rng.normal(0, 1, (hidden, classes)).astype(f32), "Wout"),
        numpy_helper.from_array(np.zeros(classes, f32), "bout"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
    ]
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["x_bte"]),
        helper.make_node("Transpose", ["x_bte"], ["x_tbe"], perm=[1, 0, 2]),
        helper.make_node("Cast", ["lengths"], ["lens32"], to=TensorProto.INT32),
        helper.make_node("LSTM", ["x_tbe", "W", "R", "B", "lens32"], ["", "h_last"], hidden_size=hidden),
        helper.make_node("Squeeze", ["h_last", "axis0"], ["h"]),
        helper.make_node("MatMul", ["h", "Wout"], ["logits0"]),
        helper.make_node("Add", ["logits0", "bout"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_sentiment",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "time"]),
            helper.make_tensor_value_info("lengths", TensorProto.INT64, ["batch"]),
        ],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def make_tiny_sentiment(
    root: Path,
    name: str = "sentiment-tiny",
    version: int = 1,
    default: bool = True,
    seed: int = 0,
    max_batch_size: int = 64,
    embed: int = 8,
    hidden: int = 8,
    words: list[str] | None = None,
) -> Path:
    """Writes ``root/name/config.json`` and ``root/name/<version>/{model.onnx,vocab.json}``."""
    vocab = Vocab.build([words or WORDS])
    model_dir = root / name
    version_dir = model_dir / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    onnx.save(sentiment_graph(len(vocab), embed=embed, hidden=hidden, seed=seed), version_dir / "model.onnx")
    vocab.save(version_dir / "vocab.json")
    ModelManifest(
        name=name,
        task="sentiment",
        description="tiny random LSTM for tests",
        default=default,
        architecture={"cell": "lstm", "embed": embed, "hidden": hidden},
        graphs={
            "model": GraphSpec(
                file="model.onnx",
                inputs=[
                    TensorSpec(name="input_ids", dtype="int64", dims=[-1, -1]),
                    TensorSpec(name="lengths", dtype="int64", dims=[-1]),
                ],
                outputs=[TensorSpec(name="probabilities", dtype="float32", dims=[-1, 2])],
            )
        },
        max_batch_size=max_batch_size,
        labels=["negative", "positive"],
        tokenizer=WordTokenizer(lowercase=True).spec(),
        files={"vocab": "vocab.json"},
        parameters=0,
        size_bytes=(version_dir / "model.onnx").stat().st_size,
    ).save(model_dir)
    return model_dir
