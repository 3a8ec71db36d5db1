"""Reading locust's stats CSV and rendering the benchmark section."""

from __future__ import annotations

from pathlib import Path

from loadtest.loadrun import LoadRun, markdown_table, read_stats, report

HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,"
    "Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,"
    "99.99%,100%"
)
ROWS = [
    "POST,/sentiment,900,0,15,15.7,2,60,226,15.0,0.0,15,17,19,20,23,27,30,34,50,60,60",
    "POST,/generate,100,2,120,130.2,80,400,300,1.7,0.03,120,130,140,150,170,200,250,300,400,400,400",
    ",Aggregated,1000,2,16,27.1,2,400,233,16.7,0.03,16,18,20,22,30,90,160,210,400,400,400",
]


def test_read_stats_and_table(tmp_path: Path) -> None:
    csv = tmp_path / "locust_stats.csv"
    csv.write_text("\n".join([HEADER, *ROWS]) + "\n")
    stats = read_stats(csv)
    assert [s.name for s in stats] == ["/sentiment", "/generate", "Aggregated"]
    generate = stats[1]
    assert (generate.requests, generate.failures, generate.p50_ms, generate.p95_ms, generate.p99_ms) == (
        100, 2, 120.0, 200.0, 300.0,
    )  # fmt: skip
    run = LoadRun([], 1, stats, tmp_path / "f.csv", tmp_path / "r.html", "")
    assert run.failures == 2, "per-endpoint failures, the Aggregated row not counted twice"
    table = markdown_table(stats).splitlines()
    assert table[2] == "| `POST /sentiment` | 900 | 15.0 | 15 | 27 | 34 | 15.7 | 0 |"
    assert table[-1].startswith("| **all** | 1000 | 16.7 |")
    models = [
        {"name": "sentiment-gru", "task": "sentiment", "state": "ready", "default": True},
        {"name": "sentiment-rnn", "task": "sentiment", "state": "ready", "default": False},
    ]
    section = report(run, "python -m loadtest.loadrun --run-time 60s", 16, models, 0.5, "2-core CPU, no GPU")
    assert "`sentiment-gru` (sentiment)" in section and "sentiment-rnn" not in section
    assert (
        "python -m loadtest.loadrun --run-time 60s" in section and "Machine: 2-core CPU, no GPU;" in section
    )
    assert "\n".join(table) in section
