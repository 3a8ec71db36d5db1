"""The bundled model repository stays within its size budget (it ships in git and in the image)."""

from __future__ import annotations

from pathlib import Path

MODELS = Path(__file__).resolve().parents[2] / "models"
BUDGET_BYTES = 60_000_000  # 60 MB, decimal: the project's budget for bundled models


def test_models_folder_is_under_60_mb() -> None:
    files = [f for f in MODELS.rglob("*") if f.is_file()]
    total = sum(f.stat().st_size for f in files)
    largest = sorted(((f.stat().st_size, str(f.relative_to(MODELS))) for f in files), reverse=True)[:5]
    assert total < BUDGET_BYTES, f"models/ holds {total:,} bytes (> {BUDGET_BYTES:,}); largest: {largest}"
