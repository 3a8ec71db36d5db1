"""Distillation: the soft loss, label alignment, and students of exported sentiment and NER teachers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from service.manifest import ModelManifest, version_dirs
from service.tasks.ner.codec import NerCodec, crf_marginals, softmax
from service.tasks.sentiment.codec import SentimentCodec
from service.tasks.sentiment.contract import PROBABILITIES
from tests.training.test_ner import tiny_task
from tests.utils.model_factory import make_sentiment_repository, sentiment_config, write_sentiment_splits
from training.augmentation import PosReplacer, perturbed_texts, pos_lexicon
from training.config import ConfigError, DistillConfig
from training.distillation import label_order, soft_loss
from training.export import ort_session
from training.readers import file_sha256, read_conll
from training.settings import TrainingSettings
from training.tasks.sentiment.task import NO_GOLD, SentimentTask
from training.trainer import Trainer


def test_soft_loss_is_zero_for_the_teachers_own_distribution_and_positive_otherwise() -> None:
    teacher = torch.softmax(torch.randn(5, 3), dim=-1)
    for temperature in (1.0, 2.0, 4.0):
        assert soft_loss(torch.log(teacher), teacher, temperature).item() == pytest.approx(0, abs=1e-6)
        assert soft_loss(torch.zeros(5, 3), teacher, temperature).item() > 0


def test_soft_loss_pulls_the_student_towards_the_teacher() -> None:
    teacher = torch.tensor([[0.9, 0.1]])
    student = torch.zeros(1, 2, requires_grad=True)
    soft_loss(student, teacher, 2.0).backward()
    assert student.grad[0, 0] < 0 < student.grad[0, 1]  # gradient descent raises class 0


def test_labels_are_aligned_by_name() -> None:
    assert label_order(["positive", "negative"], ["negative", "positive"]) == [1, 0]
    with pytest.raises(ConfigError, match="do not match"):
        label_order(["a", "b"], ["a", "c"])


@pytest.fixture(scope="module")
def sentiment_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sentiment_repository(tmp_path_factory.mktemp("teacher"), name="teacher", epochs=2)


def _student(tmp_path: Path, train: int, distill: DistillConfig) -> tuple[SentimentTask, list[str]]:
    """A tiny sentiment student of ``distill``'s teacher with its data loaded, and its training texts."""
    data = write_sentiment_splits(tmp_path / "data", train=train, dev=32, test=32)
    config = sentiment_config(data, name="student", hidden_size=8, embedding_dim=8)
    config.distill = distill
    settings = TrainingSettings(
        data_dir=tmp_path / "data", runs_dir=tmp_path / "runs", models_dir=tmp_path / "m"
    )
    task = SentimentTask(config, settings)
    task.load_data()
    return task, [line.split("\t")[0] for line in data["train"].read_text().splitlines()[1:]]


def _teacher(model_dir: Path) -> tuple[SentimentCodec, ort.InferenceSession]:
    """The teacher's codec and its graph's session, as the service serves them."""
    manifest = ModelManifest.load(model_dir)
    _, version_dir = version_dirs(model_dir)[-1]
    return SentimentCodec.from_manifest(manifest, version_dir), ort_session(version_dir / "model.onnx")


def test_a_sentiment_student_learns_from_the_teachers_probabilities(
    tmp_path: Path, sentiment_teacher
) -> None:
    distill = DistillConfig(teacher=str(sentiment_teacher), temperature=2.0, alpha=0.5)
    task, texts = _student(tmp_path, 120, distill)

    # the soft targets are the teacher's served probabilities on every training text, in the student's order
    codec, session = _teacher(sentiment_teacher)
    served = session.run([PROBABILITIES], codec.collate([codec.encode(t) for t in texts[:5]]))[0]
    assert task.soft_targets.shape == (120, 2)
    np.testing.assert_allclose(task.soft_targets[:5], served, atol=1e-6)

    batch = task.batch_tensors("train", [0, 1, 2])
    assert batch["soft"].shape == (3, 2) and "soft" not in task.batch_tensors("dev", [0, 1])
    task.config.trainer.epochs = 1
    runs, models = task.settings.runs_dir, task.settings.models_dir
    checkpoint = Trainer.for_task(task, runs / "student").fit()
    model_dir = task.export(Trainer.for_task(task, runs / "x").model.eval(), models, checkpoint)
    recorded = ModelManifest.load(model_dir).training.config["distill"]
    assert recorded["teacher"] == str(sentiment_teacher) and recorded["alpha"] == 0.5


def test_perturbed_copies_join_the_training_split_with_the_teachers_targets_only(
    tmp_path: Path, sentiment_teacher
) -> None:
    distill = DistillConfig(teacher=str(sentiment_teacher), augment=2, mask_prob=0.3)
    task, texts = _student(tmp_path, 60, distill)
    ids, labels = task.splits["train"]
    assert task.augmented > 0 and len(ids) == 60 + task.augmented == len(task.soft_targets)
    assert labels[60:] == [NO_GOLD] * task.augmented and NO_GOLD not in labels[:60]
    info = task.data_info()["train"]
    assert info["rows"] == 60 and info["perturbed_copies"] == task.augmented

    # a copy's target is the teacher's probability for the copy's own text
    codec, session = _teacher(sentiment_teacher)
    words = [codec.tokenizer.words(t) for t in texts]
    copy = perturbed_texts(words, 2, np.random.default_rng(task.config.seed), mask_prob=0.3)[0]
    served = session.run([PROBABILITIES], codec.collate([codec.encode(copy)]))[0]
    np.testing.assert_allclose(task.soft_targets[60], served[0], atol=1e-6)

    # the gold loss skips the copies: a batch of copies only is trained by the soft loss alone
    model = task.build_model()
    copies_only = task.batch_tensors("train", [60, 61])
    task.config.distill.alpha = 1.0
    soft_only = task.loss(model, copies_only)
    task.config.distill.alpha = 0.5
    assert torch.isfinite(soft_only) and task.loss(model, copies_only).item() == pytest.approx(
        soft_only.item() / 2, rel=1e-5
    )


def test_copies_with_part_of_speech_replacement_record_their_lexicon(
    tmp_path: Path, sentiment_teacher
) -> None:
    lexicon = tmp_path / "data" / "ner" / "train.txt"
    lexicon.parent.mkdir(parents=True)
    lexicon.write_text("good JJ I-NP O\nbad JJ I-NP O\nfilm NN I-NP O\n\nplot NN I-NP O\n")
    distill = DistillConfig(
        teacher=str(sentiment_teacher), augment=2, pos_prob=0.5, pos_lexicon="ner/train.txt"
    )
    task, texts = _student(tmp_path, 60, distill)
    info = task.data_info()["train"]
    assert info["pos_lexicon"] == {"path": str(lexicon), "sha256": file_sha256(lexicon)}
    # the copies are those drawn with the lexicon's words replaced, and the teacher labels them
    codec, session = _teacher(sentiment_teacher)
    words = [codec.tokenizer.words(t) for t in texts]
    replacer = PosReplacer(words, pos_lexicon(lexicon))
    rng = np.random.default_rng(task.config.seed)
    copies = perturbed_texts(words, 2, rng, pos_prob=0.5, replacer=replacer)
    assert task.augmented == len(copies)
    assert copies != perturbed_texts(words, 2, np.random.default_rng(task.config.seed))  # words replaced
    served = session.run([PROBABILITIES], codec.collate([codec.encode(c) for c in copies[:3]]))[0]
    np.testing.assert_allclose(task.soft_targets[60:63], served, atol=1e-6)
    without = _student(tmp_path / "plain", 60, DistillConfig(teacher=str(sentiment_teacher), augment=2))[0]
    assert "pos_lexicon" not in without.data_info()["train"]


@pytest.mark.parametrize("targets", ["probabilities", "marginals"])
def test_a_ner_student_gets_the_teachers_tag_distributions(tmp_path: Path, targets: str) -> None:
    teacher_task = tiny_task(tmp_path / "teacher", crf=True)
    teacher_task.config.trainer.epochs = 1
    checkpoint = Trainer.for_task(teacher_task, teacher_task.settings.runs_dir / "t").fit()
    net = teacher_task.build_model(checkpoint["model_args"])
    net.load_state_dict(checkpoint["state_dict"])
    teacher_dir = teacher_task.export(net.eval(), teacher_task.settings.models_dir, checkpoint)

    student = tiny_task(tmp_path / "student", hidden_size=4)
    student.config.distill = DistillConfig(teacher=str(teacher_dir), targets=targets)
    student.load_data()
    words = student.splits["train"][0]
    assert len(student.soft_targets) == len(words)
    assert all(
        s.shape == (len(w), len(student.labels)) for s, w in zip(student.soft_targets, words, strict=True)
    )
    np.testing.assert_allclose(student.soft_targets[0].sum(axis=1), 1.0, atol=1e-5)

    manifest = ModelManifest.load(teacher_dir)
    _, version_dir = version_dirs(teacher_dir)[-1]
    codec = NerCodec.from_manifest(manifest, version_dir)
    tokens = read_conll(tmp_path / "student" / "data" / "ner" / "train.txt")[0].tokens
    word_ids, char_ids = codec.encode_tokens(tokens)
    emissions = ort_session(version_dir / "model.onnx").run(
        ["emissions"], codec.collate([word_ids], [char_ids])
    )[0][0]
    expected = (
        crf_marginals(emissions.astype(np.float64), codec.crf.constrained(codec.labels))
        if targets == "marginals"
        else softmax(emissions.astype(np.float64))
    )
    order = label_order(list(manifest.labels), list(student.labels))
    np.testing.assert_allclose(student.soft_targets[0], expected[:, order], atol=1e-5)

    batch = student.batch_tensors("train", [0, 1])
    loss = student.loss(student.build_model(), batch)
    assert torch.isfinite(loss) and batch["soft"].shape[:2] == batch["word_ids"].shape

    # perturbed copies: the teacher's distributions, and the tags it decodes (as served) as their gold
    augmented = tiny_task(tmp_path / "augmented", hidden_size=4)
    augmented.config.distill = DistillConfig(teacher=str(teacher_dir), targets=targets, augment=2)
    augmented.load_data()
    train = [row.tokens for row in read_conll(tmp_path / "augmented" / "data" / "ner" / "train.txt")]
    sentences = len(train)
    words, _, tags = augmented.splits["train"]
    assert augmented.augmented > 0 and len(words) == sentences + augmented.augmented
    assert len(augmented.soft_targets) == len(words)
    assert augmented.data_info()["train"]["perturbed_copies"] == augmented.augmented
    first_copy = perturbed_texts(train, 2, np.random.default_rng(augmented.config.seed))[0].split(" ")
    assert words[sentences] == augmented.codec.encode_tokens(first_copy)[0]
    word_ids, char_ids = codec.encode_tokens(first_copy)
    emissions = ort_session(version_dir / "model.onnx").run(
        ["emissions"], codec.collate([word_ids], [char_ids])
    )
    served_tags = codec.best_tags(emissions[0][0].astype(np.float64))
    assert [augmented.labels[t] for t in tags[sentences]] == served_tags
    batch = augmented.batch_tensors("train", [sentences, sentences + 1])
    loss = augmented.loss(augmented.build_model(), batch)
    assert torch.isfinite(loss)
