"""``python -m loadtest.soak``: the bars' arithmetic, and a 0.3-minute soak of the real server."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.soak import CSV_FIELDS, Outcome, Soak, by_endpoint, verdict, windows
from tests.service.bundled import bundled_repository

REPO_ROOT = Path(__file__).resolve().parents[2]


def _soak(seconds: float, rss: list[float], latencies_first: float, latencies_last: float, errors=0) -> Soak:
    step = seconds / len(rss)
    samples = [{"t_s": (i + 1) * step, "rss_mb": v} for i, v in enumerate(rss)]
    outcomes = [
        Outcome(at, latencies_first if at < seconds / 2 else latencies_last, None)
        for at in range(int(seconds))
    ]
    outcomes += [Outcome(1.0, 0.01, "HTTP 500")] * errors
    return Soak(
        samples=samples, outcomes=outcomes, errors={"HTTP 500": errors} if errors else {}, duration_s=seconds
    )


def test_latency_and_errors_per_endpoint():
    outcomes = [Outcome(float(i), 0.001 * (i + 1), None, "/sentiment") for i in range(100)]
    outcomes += [Outcome(1.0, 2.5, None, "/translate"), Outcome(2.0, 0.0, "HTTP 503", "/translate")]
    rows = by_endpoint(Soak(samples=[], outcomes=outcomes, errors={}, duration_s=100))
    assert rows[0][:3] == ["`/sentiment`", 100, 0] and rows[0][5] == "100.0"
    assert rows[1] == ["`/translate`", 2, 1, "2500.0", "2500.0", "2500.0"]


def test_the_windows_are_the_bars_for_30_minutes_and_scale_for_shorter_runs():
    assert windows(1800) == (1200, 300)
    assert windows(3600) == (1200, 300)
    assert windows(18) == pytest.approx((12, 3))


def test_the_bars():
    steady = verdict(_soak(1800, [100.0] * 60 + [104.0] * 120, 0.010, 0.014))
    assert [bar.ok for bar in steady] == [True, True, True], steady
    leaking = verdict(_soak(1800, [100.0 + i for i in range(180)], 0.010, 0.010))
    assert [bar.ok for bar in leaking] == [True, False, True], leaking
    drifting = verdict(_soak(1800, [100.0] * 180, 0.010, 0.016, errors=1))
    assert [bar.ok for bar in drifting] == [False, True, False], drifting


def test_a_short_soak_of_the_real_server(tmp_path):
    pytest.importorskip("matplotlib")
    models = bundled_repository(tmp_path / "models")
    out = tmp_path / "soak"
    command = [
        *(sys.executable, "-m", "loadtest.soak", "--minutes", "0.3", "--sample-s", "3"),
        *("--ramp-step-s", "1.5", "--max-clients", "4", "--models", str(models), "--out", str(out)),
        *("--doc", str(tmp_path / "docs" / "benchmarks.md")),
    ]
    run = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    printed = run.stdout + run.stderr
    assert "capacity" in printed and "soaking at 70%" in printed, printed[-3000:]
    assert "PASS  errors: 0 of" in printed, printed[-3000:]
    summary = printed.split("soak summary", 1)[1]
    bars = [line.strip() for line in summary.splitlines() if line.strip().startswith(("PASS", "FAIL"))]
    assert len(bars) == 3, summary
    # 18 s are too short for the memory and latency bars to mean much: they are computed, not required
    assert run.returncode == (0 if all(b.startswith("PASS") for b in bars) else 1), printed[-3000:]
    with (out / "soak.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == CSV_FIELDS
    assert len(rows) == 6  # 18 s, a sample every 3 s
    assert all(float(r["rss_mb"]) > 50 and int(float(r["threads"])) > 1 for r in rows)
    assert sum(int(r["requests"]) for r in rows) > 20 and sum(int(r["errors"]) for r in rows) == 0
    png = (out / "soak.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    doc = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert "<!-- soak:start -->" in doc and "python -m loadtest.soak --minutes 0.3" in doc
    assert "](images/soak.png)" in doc and (tmp_path / "docs" / "images" / "soak.png").read_bytes() == png
    assert doc.count("| yes |") + doc.count("| **no** |") == 3
