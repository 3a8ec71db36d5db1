"""The benchmark entry point: runs what exists, within its budget, and reports what failed."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest

from loadtest.bench import procs
from loadtest.run_benchmarks import BENCHMARKS, Benchmark, main, run

WRITES_SECTION = """
import importlib.util
import os
import sys
import time
from pathlib import Path
from loadtest.bench.report import replace_section
replace_section(Path(sys.argv[sys.argv.index("--doc") + 1]), "fake", "figures " + " ".join(sys.argv[1:-2]))
"""


@pytest.fixture
def fake_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "fake_ok.py").write_text(WRITES_SECTION)
    (tmp_path / "fake_fails.py").write_text("raise SystemExit(3)\n")
    (tmp_path / "fake_slow.py").write_text("import time\ntime.sleep(30)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{Path(__file__).resolve().parents[2]}")
    return tmp_path


def test_runs_each_available_benchmark_within_the_budget(fake_modules: Path) -> None:
    doc = fake_modules / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n<!-- other:start -->\nkept\n<!-- other:end -->\n")
    benchmarks = [
        Benchmark("ok", "fake_ok", args=("--full",), quick_args=("--quick",)),
        Benchmark("missing", "fake_not_written_yet"),
        Benchmark("fails", "fake_fails"),
        Benchmark("slow", "fake_slow"),
        Benchmark("after-budget", "fake_ok"),
    ]
    outcomes = {o.name: o for o in run(benchmarks, doc, budget_s=3, quick=True, min_left_s=0.5)}
    assert outcomes["ok"].status == "ok"
    assert outcomes["missing"].status == "skipped: no module fake_not_written_yet"
    assert outcomes["fails"].status == "failed (exit 3)"
    assert outcomes["slow"].status == "timed out" and outcomes["slow"].seconds < 5
    assert outcomes["after-budget"].status == "skipped: out of time budget"
    text = doc.read_text()
    assert "figures --quick" in text and "kept" in text, "its own section only"


def test_registry_covers_the_issues_and_lists(capsys: pytest.CaptureFixture[str]) -> None:
    names = [b.name for b in BENCHMARKS]
    assert len(names) == len(set(names))
    assert {"sentiment-serving", "generation", "loadtest-mix"} <= set(names)
    assert all(b.module.startswith("loadtest.") for b in BENCHMARKS)
    assert Benchmark("x", "loadtest.loadrun").available()
    assert main(["--list"]) == 0
    assert "loadtest-mix" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--only", "no-such-benchmark"])


def test_commands_end_with_the_doc(tmp_path: Path) -> None:
    bench = Benchmark("b", "loadtest.loadrun", args=("--run-time", "60s"), quick_args=("--run-time", "5s"))
    assert bench.command(tmp_path / "d.md", quick=False)[1:] == [
        "-m", "loadtest.loadrun", "--run-time", "60s", "--doc", str(tmp_path / "d.md"),
    ]  # fmt: skip
    assert bench.command(tmp_path / "d.md", quick=True)[0] == sys.executable
    own_file = Benchmark("g", "loadtest.bench_generate", quick_args=("--duration", "4"), writes_section=False)
    assert "--doc" not in own_file.command(tmp_path / "d.md", quick=True)


def test_only_section_writers_get_the_shared_doc() -> None:
    """A module given ``--doc docs/benchmarks.md`` must rewrite only its section, never the whole file
    (``replace_section``, or ``publish``, which calls it)."""
    for bench in BENCHMARKS:
        if bench.writes_section and bench.available():
            source = Path(importlib.util.find_spec(bench.module).origin).read_text(encoding="utf-8")
            writes_its_section = "replace_section" in source or "publish(" in source
            assert writes_its_section, f"{bench.module} would overwrite docs/benchmarks.md"


def test_a_timeout_stops_what_the_benchmark_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pid_file = tmp_path / "child.pid"
    (tmp_path / "fake_spawner.py").write_text(
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    [outcome] = run([Benchmark("spawner", "fake_spawner")], tmp_path / "d.md", budget_s=2, min_left_s=0.5)
    assert outcome.status == "timed out"
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while procs.running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not procs.running(child), "the benchmark's own child process outlived the timeout"
