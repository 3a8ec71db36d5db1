"""The payload sampler on tiny data, and the committed payloads.json against the script."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from loadtest.make_payloads import OUT, SOURCES, generation_prompts, main, make_payloads
from training.settings import get_training_settings

TASKS = ("sentiment", "tag", "translate", "generate")


def write_tiny_data(root: Path) -> None:
    (root / "sentiment").mkdir(parents=True)
    rows = [f"review number {i} .\t{i % 2}" for i in range(30)]
    (root / "sentiment" / "dev.tsv").write_text("text\tlabel\n" + "\n".join(rows) + "\n")
    (root / "ner").mkdir()
    blocks = ["-DOCSTART- -X- -X- O"] + [f"Alice{i} NNP B-NP I-PER\nruns VBZ B-VP O" for i in range(20)]
    (root / "ner" / "valid.txt").write_text("\n\n".join(blocks) + "\n")
    (root / "translation").mkdir()
    (root / "translation" / "val.en").write_text(
        "\n".join(f"A dog number {i} runs." for i in range(25)) + "\n"
    )
    (root / "generation").mkdir()
    head = "".join(f"TRAIN LINE {i} with words\n" for i in range(90))
    tail = "".join(f"VALID LINE {i} with words\n" for i in range(10))
    (root / "generation" / "input.txt").write_text(head + tail)


def test_make_payloads_samples_every_task_from_its_dev_split(tmp_path: Path) -> None:
    write_tiny_data(tmp_path)
    counts = {"sentiment": 10, "tag": 5, "translate": 50, "generate": 4}
    payloads = make_payloads(tmp_path, seed=1, counts=counts)
    assert len(payloads["sentiment"]) == 10
    assert all(t.startswith("review number ") for t in payloads["sentiment"])
    assert len(payloads["tag"]) == 5 and all(
        t.startswith("Alice") and t.endswith(" runs") for t in payloads["tag"]
    )
    assert "-DOCSTART-" not in " ".join(payloads["tag"])
    assert len(payloads["translate"]) == 25  # all there are
    assert len(set(payloads["translate"])) == 25
    assert len(payloads["generate"]) == 4
    assert all(p.startswith("VALID LINE") for p in payloads["generate"]), (
        "prompts come from the last 10 % only"
    )
    assert set(payloads["about"]["sources"]) == set(TASKS)
    assert payloads == make_payloads(tmp_path, seed=1, counts=counts), "same seed, same payloads"
    assert payloads != make_payloads(tmp_path, seed=2, counts=counts)


def test_generation_prompts_are_cut_at_a_word() -> None:
    text = ("x" * 102 + "\n") * 90 + "".join(f"{i} {'word ' * 20}\n" for i in range(10))  # 103-char lines
    prompts = generation_prompts(text, 5, random.Random(0))
    assert len(prompts) == 5
    assert all(len(p) <= 48 and p.endswith(" word") and not p.startswith(" ") for p in prompts), prompts


def test_cli_writes_json(tmp_path: Path) -> None:
    write_tiny_data(tmp_path / "data")
    out = tmp_path / "payloads.json"
    main(["--data-dir", str(tmp_path / "data"), "--out", str(out)])
    assert set(TASKS) <= set(json.loads(out.read_text()))


def test_committed_payloads_are_small_and_complete() -> None:
    assert OUT.stat().st_size < 100_000
    payloads = json.loads(OUT.read_text(encoding="utf-8"))
    for task in TASKS:
        assert len(payloads[task]) >= 50, task
        assert all(isinstance(t, str) and t.strip() for t in payloads[task]), task


def test_committed_payloads_are_what_the_script_makes() -> None:
    data_dir = get_training_settings().data_dir
    if not all((data_dir / rel).is_file() for rel in SOURCES.values()):
        pytest.skip(f"datasets not present under {data_dir}")
    committed = json.loads(OUT.read_text(encoding="utf-8"))
    assert make_payloads(data_dir, seed=committed["about"]["seed"]) == committed
