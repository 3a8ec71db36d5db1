"""``python -m training average``: the mean weights of a run's last kept epochs, as one ordinary model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from service.manifest import ModelManifest
from training.averaging import average_states
from training.cli import load_checkpoint, main
from training.config import ConfigError
from training.settings import get_training_settings


@pytest.fixture
def run(workspace: Path) -> Path:
    """A 3-epoch run of the tiny config that keeps its last 2 epochs' weights."""
    config = str(workspace / "cli.toml")
    assert main(["train", "--config", config, "--trainer.epochs=3", "--trainer.keep_epochs=2"]) == 0
    return workspace / "runs" / "cli-tiny"


def test_keep_epochs_keeps_the_last_n_and_a_fresh_run_starts_clean(run: Path, workspace: Path) -> None:
    kept = sorted(p.name for p in (run / "epochs").glob("*.pt"))
    assert kept == ["epoch-002.pt", "epoch-003.pt"]
    saved = torch.load(run / "epochs" / "epoch-003.pt", weights_only=False)
    assert saved["epoch"] == 3 and "accuracy" in saved["dev"]
    history = json.loads((run / "metrics.json").read_text())["history"]
    assert saved["dev"] == history[-1]["dev"]
    # a new (not resumed) run under the same name never averages with the old run's epochs
    assert main(["train", "--config", str(workspace / "cli.toml"), "--trainer.epochs=1"]) == 0
    assert not (run / "epochs").exists()


def test_average_is_the_mean_of_the_kept_epochs_and_exports(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["average", str(run), "--last", "2", "--name", "avg", "--default"]) == 0
    printed = json.loads(capsys.readouterr().out)
    settings = get_training_settings()
    task, model, checkpoint = load_checkpoint(settings.runs_dir / "avg" / "best.pt", settings)
    epochs = [torch.load(run / "epochs" / f"epoch-00{e}.pt", weights_only=False) for e in (2, 3)]
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, (epochs[0]["state_dict"][key] + epochs[1]["state_dict"][key]) / 2)
    assert checkpoint["averaged"]["epochs"] == [2, 3] and checkpoint["best_epoch"] == 3
    assert checkpoint["command"].startswith("python -m training train --config")
    assert checkpoint["command"].endswith(f"average {run} --last 2 --name avg --default")
    assert printed["dev"]["accuracy"] == checkpoint["metrics"]["dev"]["accuracy"]
    task.load_data()
    assert task.evaluate(model, "dev")["accuracy"] == checkpoint["metrics"]["dev"]["accuracy"]

    assert main(["export", "--checkpoint", str(settings.runs_dir / "avg" / "best.pt")]) == 0
    manifest = ModelManifest.load(settings.models_dir / "avg")
    assert manifest.default and manifest.description.startswith("Mean weights of epochs 2-3")


def test_average_refuses_what_it_cannot_average(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["average", str(run), "--last", "3", "--name", "avg"]) == 2
    assert "holds 2 epoch(s), fewer than --last 3" in capsys.readouterr().err
    assert main(["average", str(run), "--last", "1", "--name", "avg"]) == 2
    assert main(["average", str(run.parent / "missing"), "--last", "2", "--name", "avg"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (run.parent / "avg").exists()


def test_average_states_keeps_counters_and_rejects_other_parameters() -> None:
    a = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(4)}
    b = {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor(7)}
    averaged = average_states([a, b])
    torch.testing.assert_close(averaged["w"], torch.tensor([2.0, 4.0]))
    assert int(averaged["n"]) == 7
    with pytest.raises(ConfigError, match="different parameters"):
        average_states([a, {"w": torch.zeros(2)}])
