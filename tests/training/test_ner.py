"""NER training plug-in on tiny synthetic CoNLL data: conversion, CRF loss, padding invariance, training,
and ONNX export parity (emissions and decoded tags)."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from service.manifest import ModelManifest, version_dirs
from service.tasks.ner.codec import NerCodec, is_valid_bio
from service.tasks.ner.contract import CHAR_IDS, EMISSIONS, LENGTHS, WORD_IDS
from training.config import ExportConfig, TrainerConfig, build_config, load_config_data
from training.export import ort_session
from training.settings import REPO_ROOT, TrainingSettings
from training.tasks.ner.config import NerConfig, NerModelConfig
from training.tasks.ner.network import CRF
from training.tasks.ner.task import NerTask
from training.trainer import Trainer

CONFIGS = sorted((REPO_ROOT / "training" / "configs").glob("ner_*.toml"))
PEOPLE = [["John", "Smith"], ["Mary"], ["Ana", "de", "Souza"], ["Li", "Wei"]]
PLACES = [["Paris"], ["New", "York"], ["Berlin"], ["Rio", "de", "Janeiro"]]
FILLER = ["went", "to", "said", "the", "in", "yesterday", "met", "and", "1996", "."]


def _sentence(rng: random.Random) -> list[tuple[str, str]]:
    """IOB1-tagged: entities start with I-, and B- only where two entities of one type touch."""
    out: list[tuple[str, str]] = []
    previous_kind = None
    for _ in range(rng.randint(2, 7)):
        choice = rng.random()
        if choice < 0.5:
            out.append((rng.choice(FILLER), "O"))
            previous_kind = None
            continue
        kind, names = ("PER", PEOPLE) if choice < 0.75 else ("LOC", PLACES)
        words = rng.choice(names)
        first = "B" if previous_kind == kind else "I"
        out.extend((w, f"{first if i == 0 else 'I'}-{kind}") for i, w in enumerate(words))
        previous_kind = kind
    return out


def write_conll(path: Path, sentences: int, seed: int) -> Path:
    rng = random.Random(seed)
    lines = ["-DOCSTART- -X- -X- O", ""]
    for _ in range(sentences):
        lines += [f"{w} NNP I-NP {t}" for w, t in _sentence(rng)] + [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def tiny_task(tmp_path: Path, train: int = 160, quantize: str = "never", **model) -> NerTask:
    data = tmp_path / "data" / "ner"
    write_conll(data / "train.txt", train, 1)
    write_conll(data / "valid.txt", 30, 2)
    write_conll(data / "test.txt", 30, 3)
    sizes = {"word_dim": 8, "char_dim": 4, "char_filters": 8, "hidden_size": 8, "dropout": 0.0}
    config = NerConfig(
        name="ner-tiny",
        model=NerModelConfig(**(sizes | model)),
        trainer=TrainerConfig(epochs=4, batch_size=16, lr=2e-2, patience=4, progress=False, warmup_ratio=0.0),
        export=ExportConfig(name="ner-tiny", quantize=quantize, quantize_tolerance=10.0, parity_examples=30),
    )
    settings = TrainingSettings(
        data_dir=tmp_path / "data", runs_dir=tmp_path / "runs", models_dir=tmp_path / "m"
    )
    task = NerTask(config, settings)
    task.load_data()
    return task


def test_conll_iob1_is_read_as_bio(tmp_path: Path) -> None:
    path = tmp_path / "data" / "ner" / "x.txt"
    path.parent.mkdir(parents=True)
    path.write_text("-DOCSTART- O\n\nJohn I-PER\nMary B-PER\nin O\nNew I-LOC\nYork I-LOC\n\nParis I-LOC\n")
    task = tiny_task(tmp_path)
    task.config.data.dev = "ner/x.txt"
    task.splits, task.codec = {}, task.codec
    task.load_data()
    assert task.gold["dev"] == [["B-PER", "B-PER", "O", "B-LOC", "I-LOC"], ["B-LOC"]]
    assert task.labels == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def test_crf_loss_equals_brute_force() -> None:
    torch.manual_seed(0)
    labels = ["O", "B-PER", "I-PER"]
    crf = CRF(labels)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    emissions = torch.randn(2, 4, 3)
    lengths = torch.tensor([4, 3])
    tags = torch.tensor([[1, 2, 0, 1], [0, 1, 2, 0]])
    transitions, start, end = crf.scores()

    def score(em, path):
        s = start[path[0]] + end[path[-1]] + sum(em[t, p] for t, p in enumerate(path))
        return s + sum(transitions[a, b] for a, b in itertools.pairwise(path))

    expected = []
    for b, n in enumerate(lengths.tolist()):
        em, gold = emissions[b, :n], tags[b, :n].tolist()
        log_z = torch.logsumexp(torch.stack([score(em, p) for p in itertools.product(range(3), repeat=n)]), 0)
        expected.append(log_z - score(em, gold))
    got = crf.neg_log_likelihood(emissions, tags, lengths)
    assert got.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-5)


def test_ensemble_decodes_the_product_of_its_members(tmp_path: Path) -> None:
    """Viterbi over the members' mean scores finds the path with the highest summed member score."""
    task = tiny_task(tmp_path, train=20, members=3)
    torch.manual_seed(1)
    net = task.build_model().eval()
    with torch.no_grad():
        for crf in (m.crf for m in net.members):
            for p in crf.parameters():
                p.normal_()
    encoded = task.codec.encode("John met Ana de Souza")
    feeds = task.codec.collate([encoded.word_ids], [encoded.char_ids])
    inputs = [torch.from_numpy(feeds[k]) for k in (WORD_IDS, CHAR_IDS, LENGTHS)]
    with torch.no_grad():
        mean = net(*inputs)[0]
        member_emissions = [m.tagger(*inputs)[0] for m in net.members]
    torch.testing.assert_close(mean, torch.stack(member_emissions).mean(0))

    def score(member, em, path):
        transitions, start, end = member.crf.scores()
        s = start[path[0]] + end[path[-1]] + sum(em[t, p] for t, p in enumerate(path))
        return s + sum(transitions[a, b] for a, b in itertools.pairwise(path))

    labels, n = task.labels, len(encoded.tokens)
    valid = [
        p for p in itertools.product(range(len(labels)), repeat=n) if is_valid_bio([labels[i] for i in p])
    ]
    with torch.no_grad():
        best = max(
            valid,
            key=lambda p: sum(score(m, e, p) for m, e in zip(net.members, member_emissions, strict=True)),
        )
    assert task.decoding_codec(net).best_tags(mean.numpy()) == [labels[i] for i in best]


@pytest.mark.parametrize("model", [{}, {"cell": "gru", "bidirectional": False}, {"members": 2}])
def test_emissions_do_not_depend_on_padding(tmp_path: Path, model) -> None:
    task = tiny_task(tmp_path, train=20, **model)
    net = task.build_model().eval()
    short = task.codec.encode("John went to Paris")
    long = task.codec.encode("Ana de Souza met Mary in Rio de Janeiro yesterday , Supercalifragilistic")
    alone = task.codec.collate([short.word_ids], [short.char_ids])
    padded = task.codec.collate([short.word_ids, long.word_ids], [short.char_ids, long.char_ids])
    with torch.no_grad():
        a = net(*(torch.from_numpy(alone[k]) for k in (WORD_IDS, CHAR_IDS, LENGTHS)))
        b = net(*(torch.from_numpy(padded[k]) for k in (WORD_IDS, CHAR_IDS, LENGTHS)))
    torch.testing.assert_close(a[0], b[0, : a.size(1)], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "model",
    [
        {},
        {"crf": False, "cell": "gru"},
        {"bidirectional": False},
        {"members": 2},
        {"members": 2, "crf": False},
    ],
    ids=["bilstm-crf", "bigru-softmax", "lstm-crf", "2x-bilstm-crf", "2x-bilstm-softmax"],
)
def test_training_learns_and_export_matches_pytorch(tmp_path: Path, model) -> None:
    task = tiny_task(tmp_path, **model)
    checkpoint = Trainer.for_task(task, task.settings.runs_dir / "ner-tiny").fit()
    history = checkpoint["history"]
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    assert checkpoint["metrics"]["dev"]["f1"] > 0.5  # the synthetic entities are learnable
    assert {"PER_f1", "LOC_precision", "LOC_recall"} <= checkpoint["metrics"]["test"].keys()

    saved = torch.load(task.settings.runs_dir / "ner-tiny" / "best.pt", weights_only=False)
    restored = NerTask.from_checkpoint(saved, task.settings)
    net = restored.build_model(saved["model_args"])
    net.load_state_dict(saved["state_dict"])
    model_dir = restored.export(net.eval(), task.settings.models_dir, saved)

    manifest = ModelManifest.load(model_dir)
    (_, version_dir), *_ = version_dirs(model_dir)
    assert manifest.parity.max_abs_diff < 1e-4
    assert manifest.metrics["test"]["f1"] == pytest.approx(checkpoint["metrics"]["test"]["f1"], abs=0.02)
    assert ("transitions" in manifest.files) == model.get("crf", True)
    codec = NerCodec.from_manifest(manifest, version_dir)
    session = ort_session(version_dir / "model.onnx")
    texts = ["John Smith went to New York .", "Mary met Li Wei in Berlin yesterday", "Paris"]
    encoded = [codec.encode(t) for t in texts]
    feeds = codec.collate([e.word_ids for e in encoded], [e.char_ids for e in encoded])
    (onnx_emissions,) = session.run([EMISSIONS], feeds)
    with torch.no_grad():
        torch_emissions = net(*(torch.from_numpy(feeds[k]) for k in (WORD_IDS, CHAR_IDS, LENGTHS))).numpy()
    np.testing.assert_allclose(onnx_emissions, torch_emissions, atol=1e-4)
    torch_codec = restored.decoding_codec(net)
    for text, e, onnx_row, torch_row in zip(texts, encoded, onnx_emissions, torch_emissions, strict=True):
        n = len(e.tokens)
        served = codec.decode(text, e, onnx_row[:n])
        tags = [t["tag"] for t in served["tokens"]]
        assert tags == torch_codec.best_tags(torch_row[:n]) and is_valid_bio(tags)
    # the trained model finds the (seen) entities of the first text
    first = codec.decode(texts[0], encoded[0], onnx_emissions[0, : len(encoded[0].tokens)])
    assert {(x["text"], x["label"]) for x in first["entities"]} >= {("John Smith", "PER")}
    row = NerTask.report_row(model_dir, manifest)
    assert set(row) == set(NerTask.report_columns())
    assert (
        row["test F1"] == f"{100 * manifest.metrics['test']['f1']:.2f}" and "PER" in row["test F1 per type"]
    )


def test_int8_export_records_both_precisions_and_ships_int8(tmp_path: Path) -> None:
    task = tiny_task(tmp_path, quantize="always")
    checkpoint = Trainer.for_task(task, task.settings.runs_dir / "ner-tiny").fit()
    net = task.build_model(checkpoint["model_args"])
    net.load_state_dict(checkpoint["state_dict"])
    model_dir = task.export(net.eval(), task.settings.models_dir, checkpoint)

    manifest = ModelManifest.load(model_dir)
    (_, version_dir), *_ = version_dirs(model_dir)
    report = manifest.quantization
    assert report is not None and report.metrics["shipped"]["graph"] == "int8"
    assert {"dev_f1", "test_f1"} <= report.metrics["fp32"].keys() == report.metrics["int8"].keys()
    assert manifest.metrics["dev"]["f1"] == report.metrics["int8"]["dev_f1"]
    assert 0 < report.max_abs_diff <= 10.0  # int8 weights change the scores, a little
    model_file = version_dir / "model.onnx"
    assert manifest.size_bytes == model_file.stat().st_size < report.fp32_size_bytes
    graph = onnx.load(str(model_file))
    dequantized = {n.output[0] for n in graph.graph.node if n.op_type == "DequantizeLinear"}
    lstm_weights = {name for n in graph.graph.node if n.op_type == "LSTM" for name in n.input[1:3]}
    assert lstm_weights and lstm_weights <= dequantized  # int8 on disk, folded to fp32 at load
    # weight-only int8: a sentence's scores do not depend on the other sentences of its batch
    session = ort_session(model_file)
    texts = ["John Smith went to New York .", "Paris", "Mary met Li Wei in Berlin yesterday , twice over"]
    encoded = [task.codec.encode(t) for t in texts]
    together = session.run(
        [EMISSIONS], task.codec.collate([e.word_ids for e in encoded], [e.char_ids for e in encoded])
    )[0]
    for row, e in enumerate(encoded):
        alone = session.run([EMISSIONS], task.codec.collate([e.word_ids], [e.char_ids]))[0][0]
        np.testing.assert_allclose(together[row, : len(e.tokens)], alone[: len(e.tokens)], atol=1e-5)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    config = build_config(NerConfig, load_config_data(path))
    assert config.export.name == config.name
    assert config.data.dev == "ner/valid.txt"  # selection on dev; test only reported


def test_exactly_one_shipped_config_is_the_default() -> None:
    defaults = [p.name for p in CONFIGS if build_config(NerConfig, load_config_data(p)).export.default]
    assert defaults == ["ner_distill_augmented_h220.toml"]
