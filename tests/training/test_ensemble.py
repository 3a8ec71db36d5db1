"""``python -m training ensemble``: separately trained runs become one model that averages its members."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from service.manifest import ModelManifest, version_dirs
from service.tasks.sentiment.contract import INPUT_IDS, LENGTHS, PROBABILITIES
from training.cli import load_checkpoint, main
from training.export import ort_session
from training.settings import get_training_settings


@pytest.fixture
def runs(workspace: Path) -> Path:
    """Three runs of one config: seeds 1 and 2, and seed 3 with another hidden size."""
    config = str(workspace / "cli.toml")
    for seed, extra in ((1, []), (2, []), (3, ["--model.hidden_size=6"])):
        assert main(["train", "--config", config, f"--seed={seed}", f"--name=s{seed}", *extra]) == 0
    return workspace / "runs"


def test_ensemble_averages_its_members_and_exports(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    members = [runs / f"s{seed}" / "best.pt" for seed in (1, 2)]
    capsys.readouterr()
    assert main(["ensemble", "--name", "duo", *map(str, members), "--default"]) == 0
    printed = json.loads(capsys.readouterr().out)
    settings = get_training_settings()
    task, duo, checkpoint = load_checkpoint(runs / "duo" / "best.pt", settings)
    assert checkpoint["model_args"]["members"] == 2 and len(checkpoint["members"]) == 2
    assert [m["seed"] for m in checkpoint["members"]] == [1, 2]
    assert (
        checkpoint["command"].count("python -m training train --config") == 2  # each member's, then
        and checkpoint["command"].count(" && ") == 2
        and checkpoint["command"].endswith(f"ensemble --name duo {members[0]} {members[1]} --default")
    )
    assert printed["dev"]["accuracy"] == checkpoint["metrics"]["dev"]["accuracy"]

    task.load_data()
    feeds = task.codec.collate([task.codec.encode(t) for t in ("a fine film", "dull , dull , dull", "ok")])
    inputs = [torch.from_numpy(feeds[k]) for k in (INPUT_IDS, LENGTHS)]
    with torch.no_grad():
        alone = [torch.softmax(load_checkpoint(p, settings)[1](*inputs), -1) for p in members]
        together = torch.softmax(duo(*inputs), -1)
    torch.testing.assert_close(together, (alone[0] + alone[1]) / 2)
    assert task.evaluate(duo, "dev")["accuracy"] == checkpoint["metrics"]["dev"]["accuracy"]

    assert main(["export", "--checkpoint", str(runs / "duo" / "best.pt")]) == 0
    model_dir = settings.models_dir / "duo"
    manifest = ModelManifest.load(model_dir)
    assert manifest.default and manifest.architecture["members"] == 2
    assert manifest.description.startswith("Ensemble of 2 separately trained runs")
    (_, version_dir), *_ = version_dirs(model_dir)
    served = ort_session(version_dir / manifest.graphs["model"].file).run([PROBABILITIES], feeds)[0]
    np.testing.assert_allclose(served, together.numpy(), atol=1e-5)


def test_runs_that_differ_cannot_form_an_ensemble(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = [str(runs / "s1" / "best.pt"), str(runs / "s3" / "best.pt")]
    assert main(["ensemble", "--name", "bad", *other]) == 2
    error = capsys.readouterr().err
    assert "cannot join" in error and "model arguments" in error and "model.hidden_size" in error
    assert main(["ensemble", "--name", "one", str(runs / "s1" / "best.pt")]) == 2
    assert not (runs / "bad").exists() and not (runs / "one").exists()


def test_members_may_differ_in_what_their_seed_drew_but_not_in_their_data(
    runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Distilled runs draw their perturbed copies from their seed, so the copies' count may differ
    between members as the seed does; the data files may not."""
    paths = [runs / f"s{seed}" / "best.pt" for seed in (1, 2)]
    checkpoints = [torch.load(p, map_location="cpu", weights_only=False) for p in paths]
    for checkpoint, copies, path in zip(checkpoints, (140, 151), paths, strict=True):
        checkpoint["data"]["train"]["perturbed_copies"] = copies
        torch.save(checkpoint, path)
    assert main(["ensemble", "--name", "drawn", *map(str, paths)]) == 0
    checkpoints[1]["data"]["train"]["sha256"] = "0" * 64
    torch.save(checkpoints[1], paths[1])
    capsys.readouterr()
    assert main(["ensemble", "--name", "other-data", *map(str, paths)]) == 2
    assert "different training data" in capsys.readouterr().err
