"""Translation training: SentencePiece vocabularies, a tiny run that learns, export, BLEU, shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.manifest import ModelManifest
from service.tasks.text import SPECIALS, build_tokenizer
from service.tasks.translation import TranslationCodec, train_sentencepiece
from tests.service.translation.tiny_model import pairs, shared_tiny_translation
from training.config import build_config, load_config_data
from training.settings import REPO_ROOT
from training.tasks.translation import corpus_scores
from training.tasks.translation_config import TranslationConfig

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
    assert "".join(text[t.start : t.end] for t in tokens).replace(" ", "") == text.replace(" ", "")
    rebuilt = build_tokenizer(tokenizer.spec(), tmp_path)  # the manifest spec, resolved in the version folder
    assert rebuilt.encode_ids(text) == ids
    codec = TranslationCodec(tokenizer, tokenizer, max_source_tokens=4)
    assert len(codec.encode_source(text)) == 4 and codec.encode_source(text)[-1] == 3
    assert codec.decode([*ids, 3, *ids]) == text


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
