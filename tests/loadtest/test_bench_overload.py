"""The overload benchmark's capacity sweep and its rows (no server: runs are given)."""

from __future__ import annotations

from loadtest.bench_overload import overload_rows, saturating_clients, until_saturated


def test_the_sweep_doubles_until_goodput_stops_rising():
    goodput = {1: 10.0, 2: 20.0, 4: 40.0, 8: 60.0, 16: 61.0, 32: 62.0, 64: 90.0}
    seen: list[int] = []

    def run(clients: int) -> dict:
        seen.append(clients)
        return {"clients": clients, "goodput": goodput[clients]}

    sweep = until_saturated(run, max_clients=256)
    assert seen == [1, 2, 4, 8, 16, 32]  # 16 and 32 gained under 5 %: two flat steps
    assert [r["clients"] for r in sweep] == seen


def test_the_sweep_stops_at_the_largest_count():
    seen: list[int] = []
    until_saturated(lambda c: seen.append(c) or {"clients": c, "goodput": float(c)}, max_clients=8)
    assert seen == [1, 2, 4, 8]


def _run(clients, goodput, cpu=1.0, rejections=0.0, p99=100.0):
    statuses = {"200": int(goodput * 8)}
    if rejections:
        statuses["503"] = int(rejections * 8)
    return {
        "clients": clients,
        "goodput": goodput,
        "server_cpu_s_per_s": cpu,
        "rejections_per_s": rejections,
        "ok_p99_ms": p99,
        "statuses": statuses,
        "rejections_without_retry_after": 0,
    }


def test_rows_report_goodput_against_capacity_and_the_cpu_of_a_rejection():
    sweep = [_run(1, 20.0, cpu=0.5), _run(2, 40.0, cpu=1.0), _run(4, 40.5, cpu=1.0)]
    overloads = [_run(8, 36.0, cpu=1.4, rejections=1000.0, p99=900.0)]
    rows, summary = overload_rows("sentiment", sweep, overloads, saturating_clients(sweep))
    assert summary["capacity"] == 40.5 and summary["saturating_clients"] == 2
    (over,) = summary["overload"]
    assert abs(over["goodput_ratio"] - 36.0 / 40.5) < 1e-9
    # 1.4 CPU-s/s, of which 36 answers at 1/40.5 s each; the rest over 1000 rejections
    assert abs(over["cpu_per_rejection_us"] - (1.4 - 36.0 / 40.5) / 1000 * 1e6) < 1e-6
    assert rows[-1][1] == "8 (4× s)"
