"""Served answers equal the PyTorch model's answers for the same real sentences.

The model is trained and exported by the training package; the service serves the ONNX export through
HTTP (batched, bucketed and padded with other sentences), and PyTorch runs each sentence alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.manifest import ModelManifest, version_dirs
from service.tasks.sentiment.codec import SentimentCodec
from tests.service.conftest import serving, settings_for

REAL_SENTENCES = [
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "the acting , costumes , music , cinematography and sound are all astounding given the production 's "
    "austere locales .",
    "a dull , simple-minded and stereotypical tale of drugs , death and mind-numbing indifference .",
    "good",
    "the plot is nothing but boilerplate clichés from start to finish , and the script assumes that not only "
    "would subtlety be lost on the target audience , but that it 's also too stupid to realize that they 've "
    "already seen this exact same movie a hundred times",
    "Not bad at all — quite FUN, actually!",
    "?",
]
DEV_TSV = Path(__file__).resolve().parents[3] / "shared" / "data" / "sentiment" / "dev.tsv"


def sentences() -> list[str]:
    out = list(REAL_SENTENCES)
    if DEV_TSV.is_file():
        out += [line.split("\t")[0] for line in DEV_TSV.read_text(encoding="utf-8").splitlines()[1:41]]
    return out


def test_served_probabilities_match_pytorch(trained_sentiment):
    torch = pytest.importorskip("torch")
    root, name, module = trained_sentiment
    texts = sentences()
    with serving(settings_for(root)) as client:
        r = client.post("/sentiment", json={"texts": texts, "model": name})
        assert r.status_code == 200, r.text
        served = r.json()["results"]

    manifest = ModelManifest.load(root / name)
    (_, version_dir), *_ = reversed(version_dirs(root / name))
    codec = SentimentCodec.from_manifest(manifest, version_dir)
    worst = 0.0
    for text, answer in zip(texts, served, strict=True):
        feeds = codec.collate([codec.encode(text)])
        with torch.no_grad():
            expected = module(torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["lengths"]))[
                0
            ].numpy()
        got = np.array([answer["scores"][label] for label in manifest.labels])
        worst = max(worst, float(np.abs(got - expected).max()))
        assert answer["label"] == manifest.labels[int(np.argmax(expected))]
    assert worst < 1e-5, worst


def test_the_trained_model_learned_its_synthetic_rule(trained_sentiment):
    root, name, _ = trained_sentiment
    with serving(settings_for(root)) as client:
        results = client.post(
            "/sentiment", json={"texts": ["a great and superb film", "a dull and awful plot"], "model": name}
        ).json()["results"]
    assert [r["label"] for r in results] == ["positive", "negative"]
