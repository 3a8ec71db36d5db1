"""Medians over repeated runs, CPU per request, and a marked, regenerable section of a markdown file."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any


def cpu_us_per_request(cpu_s: float, requests: int, duration: float, warmup: float) -> float:
    """CPU over warm-up and measurement divided by the requests served in both (the warm-up's are
    extrapolated from the measured rate: the load generator counts only the measured ones)."""
    served = requests * (duration + warmup) / duration
    return cpu_s / max(served, 1) * 1e6


def median_of(runs: list[dict[str, Any]], keys=("rps", "p50_ms", "p95_ms", "p99_ms")) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def replace_section(path: Path, marker: str, content: str) -> None:
    """Replaces the text between ``<!-- marker:start -->`` and ``<!-- marker:end -->`` (appends if absent)."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    block = f"{start}\n{content.rstrip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = before + block + after
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + block + "\n"
    path.write_text(text, encoding="utf-8")


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:,.1f}" if isinstance(v, float) else str(v)

    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(" ---: " if i else " --- " for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def measured_with(command: str, when: str | None = None) -> list[str]:
    """The lines that date a figure and give the command that made it (``when``: now, in UTC)."""
    when = when or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return [f"Measured {when} with:", "", "```bash", command.strip(), "```"]


def publish(
    summary: str, machine: str, command: str, started: str, table: str, doc: Path | None, marker: str
) -> str:
    """A benchmark's section: what each row measured, the machine, the command and when, then the table;
    written into ``doc`` (section ``marker``) when given, and printed. Returns it."""
    text = "\n".join([summary, f"Machine: {machine}.", *measured_with(command, started), "", table])
    if doc:
        replace_section(doc, marker, text)
    print(text)
    return text
