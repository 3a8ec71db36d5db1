"""A sentiment model that also reads each token's characters: trained, resumed, exported and served."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from service.manifest import ModelManifest, version_dirs
from service.tasks.sentiment.codec import SentimentCodec, SpelledIds
from service.tasks.sentiment.contract import CHAR_IDS, INPUT_IDS, LENGTHS, PROBABILITIES
from service.text import Vocab
from tests.utils.model_factory import sentiment_config, train_sentiment, write_sentiment_splits
from tests.utils.served import served_probabilities
from training.export import ort_session
from training.tasks.sentiment.task import SentimentTask

TEXTS = ["an unboring , unfunny story", "lovelyish acting", "", "the film is good", "a dull , tedious plot"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[SentimentTask, torch.nn.Module, Path]:
    work = tmp_path_factory.mktemp("chars")
    data = write_sentiment_splits(work / "data", train=200, dev=32, test=32)
    config = sentiment_config(data, name="chars", char_filters=6, char_dim=4, max_word_chars=5)
    config.trainer.epochs = 1
    return train_sentiment(config, work, work / "m")


def test_an_unseen_word_keeps_its_spelling(trained) -> None:
    task, _, _ = trained
    encoded = task.codec.encode("the unfunny film")
    assert isinstance(encoded, SpelledIds) and len(encoded) == 3
    assert encoded.ids[1] == Vocab.unk_id  # not a training word ...
    assert len(encoded.chars[1]) == 5 and Vocab.unk_id not in encoded.chars[1]  # ... but its letters are
    assert task.codec.encode("").chars == [[Vocab.unk_id]]
    batch = task.batch_tensors("dev", [0, 1, 2])
    assert batch[CHAR_IDS].shape[:2] == batch[INPUT_IDS].shape


def test_the_characters_change_the_answer(trained) -> None:
    task, model, _ = trained
    feeds = task.codec.collate([task.codec.encode(t) for t in ("a zzzzz film", "a qqqqq film")])
    out = task.reference_output(model, feeds)
    assert (feeds[INPUT_IDS][0] == feeds[INPUT_IDS][1]).all() and not np.allclose(out[0], out[1])


def test_the_served_codec_and_graph_answer_what_pytorch_computes(trained) -> None:
    task, model, model_dir = trained
    manifest = ModelManifest.load(model_dir)
    _, version_dir = version_dirs(model_dir)[-1]
    assert manifest.files["chars"] == "chars.json" and manifest.task_options["max_word_chars"] == 5
    served = SentimentCodec.from_manifest(manifest, version_dir)
    encoded = [served.encode(t) for t in TEXTS]
    assert encoded == [task.codec.encode(t) for t in TEXTS]
    feeds = served.collate(encoded)
    assert set(feeds) == {INPUT_IDS, LENGTHS, CHAR_IDS}
    onnx = ort_session(version_dir / manifest.graphs["model"].file).run([PROBABILITIES], feeds)[0]
    np.testing.assert_allclose(onnx, task.reference_output(model, feeds), atol=1e-5)


def test_a_resumed_task_has_the_same_characters(trained) -> None:
    task, _, _ = trained
    again = SentimentTask(task.config, task.settings)
    again.load_task_state(task.task_state())
    assert again.codec.chars.itos == task.codec.chars.itos
    assert [again.codec.encode(t) for t in TEXTS] == [task.codec.encode(t) for t in TEXTS]


def test_the_report_measures_the_graph_with_its_characters(trained) -> None:
    _, _, model_dir = trained
    row = SentimentTask.report_row(model_dir, ModelManifest.load(model_dir))
    assert row["architecture"].endswith(", char-CNN 6") and row["latency 32×20 tokens"].endswith(" ms")


def test_the_service_answers_each_text_as_pytorch_does_alone(trained) -> None:
    task, model, model_dir = trained
    texts = [t for t in TEXTS if t]  # the service refuses an empty text
    served = served_probabilities(model_dir, texts)
    for text, answer in zip(texts, served, strict=True):
        alone = task.reference_output(model, task.codec.collate([task.codec.encode(text)]))[0]
        np.testing.assert_allclose(answer, alone, atol=1e-5)
