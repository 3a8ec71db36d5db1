"""A sentiment model that reads rare and unseen words as pieces: trained, resumed, exported and served."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from service.manifest import ModelManifest, version_dirs
from service.tasks.sentiment.codec import SentimentCodec
from service.tasks.sentiment.contract import PROBABILITIES
from service.text import Vocab
from tests.utils.model_factory import sentiment_config, train_sentiment, write_sentiment_splits
from tests.utils.served import served_probabilities
from training.export import ort_session
from training.tasks.sentiment.task import SentimentTask

RARE = "an ungood and unlovely film\t0\nsuperbly moving\t1\n"
UNSEEN = ["an unboring , unfunny story", "lovelyish acting", "goodly"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[SentimentTask, torch.nn.Module, Path]:
    work = tmp_path_factory.mktemp("pieces")
    data = write_sentiment_splits(work / "data", train=200, dev=32, test=32)
    with data["train"].open("a", encoding="utf-8") as f:
        f.write(RARE)
    config = sentiment_config(data, name="pieces")
    config.data.tokenizer, config.data.pieces, config.data.whole_word_min_freq = "word_pieces", 100, 2
    config.trainer.epochs = 1
    return train_sentiment(config, work, work / "m")


def test_rare_training_words_and_unseen_ones_are_read_as_known_pieces(trained) -> None:
    task, _, _ = trained
    codec = task.codec
    assert codec.tokenizer.words("the film") == ["the", "film"]
    for word in ("ungood", "unlovely", "unfunny"):  # once in training, once, never
        pieces = codec.tokenizer.words(word)
        assert len(pieces) > 1 and all(p in codec.vocab for p in pieces[:1]), pieces
    ids = codec.encode("an unfunny film")
    assert len(ids) > 3 and ids.count(Vocab.unk_id) < len(ids) - 2


def test_the_served_codec_and_graph_answer_what_pytorch_computes(trained) -> None:
    task, model, model_dir = trained
    manifest = ModelManifest.load(model_dir)
    _, version_dir = version_dirs(model_dir)[-1]
    assert manifest.tokenizer["type"] == "word_pieces"
    assert {"pieces", "words"} <= manifest.files.keys()
    assert all((version_dir / name).is_file() for name in manifest.files.values())

    served = SentimentCodec.from_manifest(manifest, version_dir)
    texts = [*UNSEEN, "the film is good", "a dull , tedious plot"]
    encoded = [served.encode(t) for t in texts]
    assert encoded == [task.codec.encode(t) for t in texts]
    feeds = served.collate(encoded)
    onnx = ort_session(version_dir / manifest.graphs["model"].file).run([PROBABILITIES], feeds)[0]
    np.testing.assert_allclose(onnx, task.reference_output(model, feeds), atol=1e-5)


def test_a_resumed_task_rebuilds_the_tokenizer_from_its_state_not_by_retraining(trained, tmp_path) -> None:
    task, _, _ = trained
    state = task.task_state()
    again = SentimentTask(task.config, task.settings)
    again.load_task_state(state)
    assert again.tokenizer_files == task.tokenizer_files
    for text in UNSEEN:
        assert again.codec.encode(text) == task.codec.encode(text)
    again.load_data()  # as an export from a checkpoint does: the same files, not a new model
    assert again.tokenizer_files == task.tokenizer_files and again.codec.vocab.itos == task.codec.vocab.itos


def test_the_report_says_the_model_reads_rare_words_as_pieces(trained) -> None:
    _, _, model_dir = trained
    row = SentimentTask.report_row(model_dir, ModelManifest.load(model_dir))
    assert row["architecture"].endswith(", rare words as pieces")


def test_the_service_answers_each_text_as_pytorch_does_alone(trained) -> None:
    task, model, model_dir = trained
    texts = [*UNSEEN, "the film is good"]
    served = served_probabilities(model_dir, texts)
    for text, answer in zip(texts, served, strict=True):
        alone = task.reference_output(model, task.codec.collate([task.codec.encode(text)]))[0]
        np.testing.assert_allclose(answer, alone, atol=1e-5)
