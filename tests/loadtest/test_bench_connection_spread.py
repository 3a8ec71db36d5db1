"""The connection-spread benchmark: counts per serving process, and its table."""

from __future__ import annotations

import pytest

from loadtest.bench_connection_spread import main, table


def test_the_table_gives_the_busiest_process_share_and_how_often_one_took_all() -> None:
    text = table({"shared": {8: [[8, 0], [6, 2]]}, "per process": {8: [[5, 3], [4, 4]]}}, workers=2)
    assert "| shared | 8 | 88% | 100% | 1 of 2 | 8/0, 6/2 |" in text
    assert "| per process | 8 | 56% | 62% | 0 of 2 | 5/3, 4/4 |" in text
    assert "busiest process 50%" in text


@pytest.mark.slow
def test_a_short_run_reaches_both_processes_through_sockets_of_their_own(tmp_path, capsys) -> None:
    doc = tmp_path / "doc.md"
    main(["--connections", "32", "--tries", "2", "--doc", str(doc)])
    rows = [line for line in doc.read_text().splitlines() if line.startswith("| one per process")]
    assert len(rows) == 1 and "| 0 of 2 |" in rows[0], rows
