"""Translation training: SentencePiece vocabularies, a tiny run that learns, export, BLEU, shipped configs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.manifest import ModelManifest
from service.subwords import train_sentencepiece
from service.tasks.translation.codec import TranslationCodec
from service.tasks.translation.search import SearchParams
from service.text import SPECIALS, build_tokenizer
from tests.service.tasks.translation.tiny_model import pairs, shared_tiny_translation
from training.cli import main
from training.config import build_config, load_config_data
from training.settings import REPO_ROOT, get_training_settings
from training.tasks.translation.config import TranslationConfig
from training.tasks.translation.export import served_translator, translate_served
from training.tasks.translation.task import corpus_scores

CONFIGS = sorted((REPO_ROOT / "training" / "configs").glob("translation_*.toml"))


@pytest.fixture(scope="module")
def tiny():
    return shared_tiny_translation()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path):
    config = build_config(TranslationConfig, load_config_data(path))
    assert config.export.name == config.name


def test_sentencepiece_ids_are_the_project_vocab_ids_and_detokenize(tmp_path):
    tokenizer = train_sentencepiece([fr for _, fr in pairs()], tmp_path / "fr", 40)
    assert tuple(tokenizer.pieces()[:4]) == SPECIALS
    text = "Un chien rouge court."
    ids = tokenizer.encode_ids(text)
    assert min(ids) > 3 and tokenizer.detokenize(ids) == text
    tokens = tokenizer.tokenize(text)
    assert tokenizer.words(text) == [t.text for t in tokens]
    assert "".join(text[t.start : t.end] for t in tokens).replace(" ", "") == text.replace(" ", "")
    rebuilt = build_tokenizer(tokenizer.spec(), tmp_path)  # the manifest spec, resolved in the version folder
    assert rebuilt.encode_ids(text) == ids
    codec = TranslationCodec(tokenizer, tokenizer, max_source_tokens=4)
    assert len(codec.encode_source(text)) == 4 and codec.encode_source(text)[-1] == 3
    assert codec.decode([*ids, 3, *ids]) == text
    # the model file does not record where it was trained: the same lines give the same bytes anywhere
    again = train_sentencepiece([fr for _, fr in pairs()], tmp_path / "elsewhere" / "fr", 40)
    assert Path(again.model_file).read_bytes() == Path(tokenizer.model_file).read_bytes()


def test_bleu_and_chrf_on_a_tiny_fixture():
    refs = ["Un chien rouge court.", "Un chat noir dort."]
    assert corpus_scores(refs, refs)["bleu"] == pytest.approx(100.0)
    partial = corpus_scores(["Un chien rouge court.", "Un cheval blanc mange."], refs)
    assert 0 < partial["bleu"] < 100 and 0 < partial["chrf"] < 100
    assert corpus_scores(["Un Chien rouge court.", refs[1]], refs)["bleu"] < 100  # cased


def test_a_tiny_run_lowers_the_loss_and_exports_a_valid_manifest(tiny):
    losses = [epoch["train_loss"] for epoch in tiny.history]
    assert losses[-1] < 0.7 * losses[0]
    config = (tiny.root / tiny.name / "config.json").read_text()
    manifest = ModelManifest.model_validate_json(config)
    assert set(manifest.graphs) == {"encoder", "step"}
    assert manifest.parity.max_abs_diff < 1e-4
    assert manifest.tokenizer["type"] == "sentencepiece"
    for file in manifest.files.values():
        assert (tiny.root / tiny.name / "1" / file).is_file()
    assert {"bleu", "chrf", "beam_bleu", "beam_chrf"} <= set(manifest.metrics["test"])


def test_the_manifest_figures_are_the_served_graphs_and_match_pytorch(tiny):
    manifest = ModelManifest.load(tiny.root / tiny.name)
    dev, test = manifest.metrics["dev"], manifest.metrics["test"]
    assert dev["sentences"] == 9 and test["sentences"] == 6  # whole splits (tiny_model.write_data)
    assert manifest.quantization is None  # translation configs opt in to int8
    # fp32 graphs at parity: the service's decoding over ONNX Runtime gives PyTorch's translations
    for key in ("bleu", "chrf"):
        assert dev[key] == pytest.approx(dev[f"{key}_pytorch"])
    for key in ("bleu", "chrf", "beam_bleu", "beam_chrf"):
        assert test[key] == pytest.approx(test[f"{key}_pytorch"])
    version_dir = tiny.root / tiny.name / "1"
    assert manifest.size_bytes == sum((version_dir / g.file).stat().st_size for g in manifest.graphs.values())


def test_translate_served_keeps_the_input_order(tiny):
    version_dir = tiny.root / tiny.name / "1"
    served = served_translator(ModelManifest.load(tiny.root / tiny.name), version_dir)
    sources = ["A red dog runs.", "A black horse eats fast and then sleeps.", "A cat."]
    params = SearchParams(beam_size=1, max_length=16)
    alone = [translate_served(served, [s], params)[0] for s in sources]
    assert translate_served(served, sources, params) == alone
    assert translate_served(served, sources[::-1], params) == alone[::-1]


@pytest.fixture
def export_cli(tiny, monkeypatch):
    """``python -m training export`` of the tiny checkpoint, with the tiny data as the data root."""
    monkeypatch.setenv("RNNSERVE_DATA_DIR", str(tiny.root.parent / "data"))
    get_training_settings.cache_clear()
    checkpoint = tiny.root.parent / "runs" / tiny.name / "best.pt"

    def run(models_dir: Path, *overrides: str) -> ModelManifest:
        args = ["export", "--checkpoint", str(checkpoint), "--models-dir", str(models_dir), *overrides]
        assert main(args) == 0
        return ModelManifest.load(models_dir / tiny.name)

    yield run
    get_training_settings.cache_clear()


@pytest.mark.parametrize(
    ("method", "int8_op"), [("weights", "DequantizeLinear"), ("dynamic", "MatMulInteger")]
)
def test_cli_export_ships_int8_when_dev_bleu_holds_and_measures_it(export_cli, tmp_path, method, int8_op):
    manifest = export_cli(
        tmp_path,
        "--export.quantize=auto",
        "--export.quantize_max_drop=100",
        f"--export.quantize_method={method}",
    )
    report = manifest.quantization
    assert report is not None and report.metrics["shipped"]["graph"] == "int8"
    assert report.method.startswith("weight-only" if method == "weights" else "onnxruntime quantize_dynamic")
    version_dir = tmp_path / manifest.name / "1"
    sizes = {g.file: (version_dir / g.file).stat().st_size for g in manifest.graphs.values()}
    assert manifest.size_bytes == sum(sizes.values()) < report.fp32_size_bytes
    assert sizes == report.metrics["int8"]["size_bytes"]
    ops = report.metrics["int8"]["quantized_ops"]
    assert ops["step.onnx"][int8_op] >= 1 and ops["step.onnx"]["GRU"] == 1
    assert report.metrics["int8"]["weight_bytes"]["step.onnx"]["int8"] > 0
    assert all((version_dir / f).is_file() for f in manifest.files.values())
    dev = manifest.metrics["dev"]
    assert dev["bleu"] == report.metrics["int8"]["dev_bleu"]
    assert report.fp32_size_bytes == sum(report.metrics["fp32"]["size_bytes"].values())
    assert 0 < report.max_abs_diff <= report.tolerance  # teacher-forced next-token probabilities
    # the figure is reproducible from the shipped files through the service's own model class
    served = served_translator(manifest, version_dir)
    sources, references = zip(*((en, fr) for en, fr in pairs()[::7]), strict=True)  # the tiny val split
    hyps = translate_served(served, list(sources), SearchParams(beam_size=1, max_length=16))
    assert corpus_scores(hyps, list(references))["bleu"] == pytest.approx(dev["bleu"])
    assert {"bleu", "chrf", "beam_bleu", "beam_chrf", "bleu_pytorch"} <= set(manifest.metrics["test"])
    if method == "weights":  # fp32 arithmetic: a sentence's result does not depend on its batch
        items = [(en, SearchParams(beam_size=3, max_length=16)) for en, _ in pairs()[:24]]
        together = served.predict_batch(items)
        for item, batched in zip(items, together, strict=True):
            alone = served.predict_batch([item])[0]
            assert alone["translation"] == batched["translation"]
            assert alone["score"] == pytest.approx(batched["score"], abs=1e-5)


def test_cli_export_keeps_fp32_when_the_drop_rule_or_never_says_so(export_cli, tmp_path):
    never = export_cli(tmp_path / "never", "--export.quantize=never")
    assert never.quantization is None
    auto = export_cli(tmp_path / "auto", "--export.quantize=auto", "--export.quantize_max_drop=0")
    metrics = auto.quantization.metrics
    drop = metrics["fp32"]["dev_bleu"] - metrics["int8"]["dev_bleu"]
    holds = drop <= 0 and auto.quantization.max_abs_diff <= auto.quantization.tolerance
    assert metrics["shipped"]["graph"] == ("int8" if holds else "fp32")
    if not holds:
        assert auto.size_bytes == auto.quantization.fp32_size_bytes == never.size_bytes


def test_report_row_shows_the_served_figures(tiny):
    from training.tasks.translation.task import TranslationTask

    manifest = ModelManifest.load(tiny.root / tiny.name)
    row = TranslationTask.report_row(tiny.root / tiny.name, manifest)
    assert set(TranslationTask.report_columns()) <= set(row)
    test = manifest.metrics["test"]
    assert row["dev BLEU"].startswith(f"{manifest.metrics['dev']['bleu']:.2f} (greedy, 9 sentences)")
    assert row["test2016 BLEU"] == f"greedy {test['bleu']:.2f} / beam-3 {test['beam_bleu']:.2f}"
    assert row["architecture"].endswith("fp32")
    speed = row["sentences/s, 1 thread (1 / 32 per call)"]
    assert re.fullmatch(r"greedy [\d,]+ / [\d,]+; beam-3 [\d,]+ / [\d,]+", speed), speed


def test_weight_only_int8_keeps_rows_independent_of_their_batch(tmp_path):
    """``quantize_weights_int8`` (used by the translation export) on an embedding + projection graph."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from training.export import quantize_weights_int8

    rng = np.random.default_rng(0)
    table, weight = rng.normal(size=(50, 16)).astype(np.float32), rng.normal(size=(16, 40)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "ids"], ["emb"]),
            helper.make_node("MatMul", ["emb", "w"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 40])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(weight, "w")],
    )
    fp32 = tmp_path / "fp32.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), fp32)
    int8 = quantize_weights_int8(fp32, tmp_path / "int8.onnx")
    assert int8.stat().st_size < fp32.stat().st_size / 2
    session = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    ids = np.arange(50, dtype=np.int64)
    together = session.run(None, {"ids": ids})[0]
    alone = np.concatenate([session.run(None, {"ids": ids[i : i + 1]})[0] for i in range(50)])
    np.testing.assert_allclose(alone, together, atol=1e-5)
    np.testing.assert_allclose(together, table @ weight, atol=0.05 * np.abs(table @ weight).max())
