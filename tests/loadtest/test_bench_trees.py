"""Before/after comparisons: trees are named checkouts of this project, and a real (short) run gives a
row per tree from services started in each."""

from __future__ import annotations

import argparse

import pytest

from loadtest.bench.server import REPO_ROOT
from loadtest.bench_trees import commit_of, main, parse_tree, parse_tree_env


def test_a_tree_is_a_name_and_a_checkout_of_this_project(tmp_path):
    assert parse_tree(f"after={REPO_ROOT}") == ("after", REPO_ROOT)
    for bad in ("after", f"={REPO_ROOT}", f"after={tmp_path}"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_tree(bad)


def test_a_tree_may_have_settings_of_its_own():
    setting = ("split", "RNNSERVE_INFERENCE_PROCESS", "true")
    assert parse_tree_env("split:RNNSERVE_INFERENCE_PROCESS=true") == setting
    for bad in ("split", "split:WORKERS=1", "RNNSERVE_WORKERS=1", "split:RNNSERVE_WORKERS"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_tree_env(bad)
    with pytest.raises(SystemExit):  # a setting for a tree that is not given
        main(["--tree", f"one={REPO_ROOT}", "--tree-env", "two:RNNSERVE_WORKERS=1"])


def test_a_tree_is_labelled_by_its_commit(tmp_path):
    assert commit_of(tmp_path) == "(not a git checkout)"
    assert commit_of(REPO_ROOT) != "(not a git checkout)"


@pytest.mark.slow
def test_a_short_run_measures_every_tree(tmp_path, capsys):
    doc = tmp_path / "doc.md"
    main(
        [
            *("--tree", f"one={REPO_ROOT}", "--tree", f"two={REPO_ROOT}"),
            *("--rounds", "1", "--seconds", "1", "--warmup", "0.5", "--clients", "2"),
            *("--doc", str(doc), "--env", "RNNSERVE_WORKERS=1"),
        ]
    )
    text = doc.read_text()
    rows = [line for line in text.splitlines() if line.startswith(("| one |", "| two |"))]
    assert len(rows) == 2 and all("| 2 |" in row for row in rows), text
    assert "`RNNSERVE_WORKERS=1`" in text and "<!-- bench-trees:start -->" in text
