"""Generation training: data split, padding-invariant prefill graph, export parity (GRU), resuming."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from service.manifest import ModelManifest
from training.config import build_config, load_config_data
from training.settings import REPO_ROOT, TrainingSettings
from training.tasks.generation.config import GenerationConfig
from training.tasks.generation.data import CharCorpus, stream_segments, training_batch
from training.tasks.generation.network import CharLM, PrefillGraph, StepGraph
from training.tasks.generation.task import GenerationTask
from training.trainer import CHECKPOINT_FILE, Trainer

CONFIGS = sorted((REPO_ROOT / "training" / "configs").glob("generation_*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path):
    config = build_config(GenerationConfig, load_config_data(path))
    assert config.export.name == config.name
    assert config.data.val_fraction == 0.1


def test_the_last_tenth_is_held_out():
    text = "".join(chr(ord("a") + i % 26) for i in range(1000)) + "XYZ" * 34
    corpus = CharCorpus.from_text(text, 0.1)
    cut = int(len(text) * 0.9)
    assert len(corpus.train) == cut and len(corpus.val) == len(text) - cut
    assert corpus.codec.decode(corpus.train) == text[:cut]
    assert "X" not in corpus.codec.vocab  # the vocabulary comes from the training part only
    assert corpus.info["train_chars"] == cut


def test_training_windows_start_with_bos_and_predict_the_next_character():
    corpus = CharCorpus.from_text("abcdefghij" * 50, 0.1)
    inputs, targets = training_batch(corpus.train, 4, 12, np.random.default_rng(0), corpus.codec.vocab.bos_id)
    assert inputs.shape == targets.shape == (4, 12)
    assert (inputs[:, 0] == corpus.codec.vocab.bos_id).all()
    assert torch.equal(inputs[:, 1:], targets[:, :-1])
    inputs, targets = stream_segments(corpus.val, 2, corpus.codec.vocab.bos_id)
    assert torch.equal(torch.cat([targets[0], targets[1]]), torch.from_numpy(corpus.val[: targets.numel()]))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_prefill_graph_is_padding_invariant_and_matches_the_model(cell):
    torch.manual_seed(0)
    model = CharLM(12, 6, 10, num_layers=3, cell=cell).eval()
    prompts = [[2, 5, 6, 7, 8, 9, 10, 11, 4], [2, 4, 5], [2], [2, 9, 9, 9, 9, 9]]
    width = max(map(len, prompts)) + 3  # extra padding on every row
    ids = torch.zeros(len(prompts), width, dtype=torch.int64)
    for row, p in enumerate(prompts):
        ids[row, : len(p)] = torch.tensor(p)
        ids[row, len(p) :] = 7  # padding that is not <pad>: it must not matter either
    lengths = torch.tensor([len(p) for p in prompts])
    with torch.no_grad():
        logits, *states = PrefillGraph(model)(ids, lengths)
        for row, p in enumerate(prompts):
            want_logits, want_state = model(torch.tensor([p]))
            torch.testing.assert_close(logits[row], want_logits[0, -1], atol=1e-5, rtol=1e-5)
            for got, want in zip(states, want_state, strict=True):
                torch.testing.assert_close(got[:, row], want[:, 0], atol=1e-5, rtol=1e-5)
        step_logits, *_ = StepGraph(model)(torch.tensor([3, 4, 5, 6]), *states)
        full = [model(torch.tensor([[*p, t]]))[0][0, -1] for p, t in zip(prompts, [3, 4, 5, 6], strict=True)]
        torch.testing.assert_close(step_logits, torch.stack(full), atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def tiny_gru(tmp_path_factory: pytest.TempPathFactory):
    from tests.service.tasks.generation.tiny_model import make_generation_repository

    return make_generation_repository(tmp_path_factory.mktemp("gru"), cell="gru", name="generation-tiny-gru")


def test_gru_variant_exports_with_rollout_parity(tiny_gru):
    manifest = ModelManifest.load(tiny_gru.root / tiny_gru.name)
    assert manifest.task == "generation" and manifest.architecture["cell"] == "gru"
    assert set(manifest.graphs) == {"prefill", "step"}
    assert manifest.files == {"vocab": "vocab.json", "weights": "weights.bin"}
    assert manifest.task_options["state_names"] == ["h"]
    assert [t.name for t in manifest.graphs["step"].inputs] == ["input_ids", "h"]
    assert [t.name for t in manifest.graphs["step"].outputs] == ["logits", "h_out"]
    assert manifest.parity is not None and manifest.parity.max_abs_diff <= manifest.parity.tolerance
    assert "greedy steps" in manifest.parity.compared
    assert manifest.metrics["dev"]["loss"] < 2.0  # it learned the repeated text
    assert manifest.training is not None and manifest.training.epochs_run >= 1


def test_gru_variant_serves_its_pytorch_greedy_rollout(tiny_gru):
    from service.tasks.generation.plugin import PLUGIN
    from tests.service.conftest import serving, settings_for
    from tests.service.tasks.generation.test_routes import torch_greedy

    with serving(settings_for(tiny_gru.root), plugins=[PLUGIN]) as client:
        answer = client.post("/generate", json={"prompt": "All:\n", "temperature": 0, "max_new_tokens": 60})
    assert answer.status_code == 200, answer.text
    assert answer.json()["text"] == torch_greedy(tiny_gru, "All:\n", 60)


def test_task_plugin_batches_and_evaluates(tmp_path):
    from tests.service.tasks.generation.tiny_model import TEXT, generation_config

    data = tmp_path / "tiny.txt"
    data.write_text(TEXT)
    config = generation_config(data)
    task = GenerationTask(config, TrainingSettings(data_dir=tmp_path, runs_dir=tmp_path / "runs"))
    task.load_data()
    batches = list(task.train_batches(torch.Generator().manual_seed(0)))
    assert len(batches) == task.num_train_batches() >= 1
    assert batches[0]["input_ids"].shape == (config.trainer.batch_size, config.lm.seq_len)
    model = task.build_model().eval()
    metrics = task.evaluate(model, "dev")
    assert set(metrics) == {"loss", "window_loss"}
    assert abs(metrics["loss"] - np.log(len(task.codec.vocab))) < 1.0  # untrained: about uniform
    with pytest.raises(ValueError, match="dev"):
        task.evaluate(model, "test")


def test_language_model_training_resumes_exactly_after_an_interruption(tmp_path):
    """The windows come from a numpy generator seeded by the trainer's torch generator once per epoch, and
    dropout from the global torch RNG: both continue after a resume as if nothing had happened."""
    from tests.service.tasks.generation.tiny_model import TEXT, generation_config
    from tests.training.test_trainer import Interrupted, count_steps, without_timings

    data = tmp_path / "tiny.txt"
    data.write_text(TEXT)
    settings = TrainingSettings(data_dir=tmp_path, runs_dir=tmp_path / "runs")

    def run(name: str, resume: bool = False, crash_after: int | None = None):
        config = generation_config(data, name=name, epochs=3)
        config.trainer.max_steps_per_epoch = 3
        config.trainer.schedule = "cosine"
        config.trainer.min_lr_ratio = 0.1
        config.model.dropout = 0.2
        task = GenerationTask(config, settings)
        task.load_data()
        calls = count_steps(task, crash_after)
        checkpoint = Trainer.for_task(task, settings.runs_dir / name).fit(resume=resume)
        return checkpoint, len(calls)

    reference, _ = run("whole")
    with pytest.raises(Interrupted):
        run("cut", crash_after=4)  # in epoch 2
    assert (settings.runs_dir / "cut" / CHECKPOINT_FILE).exists()
    resumed, steps = run("cut", resume=True)
    assert steps == 6 and not (settings.runs_dir / "cut" / CHECKPOINT_FILE).exists()
    for name, tensor in reference["state_dict"].items():
        assert torch.equal(tensor, resumed["state_dict"][name]), name
    assert without_timings(resumed["history"]) == without_timings(reference["history"])
    assert resumed["metrics"] == reference["metrics"] and resumed["best_epoch"] == reference["best_epoch"]
    assert reference["history"][-1]["lr"] == pytest.approx(0.1 * 1e-2)  # decayed to the floor
