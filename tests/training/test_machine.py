"""The machine line beside every figure names the GPUs the driver lists, whatever wheels are installed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from training.machine import gpu_names, machine_description


def _fake_nvidia_smi(folder: Path, listing: str, status: int = 0) -> None:
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\nprintf '{listing}'\nexit {status}\n")
    script.chmod(0o755)


def test_no_driver_means_no_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpu_names() == []
    assert machine_description().startswith(f"{os.cpu_count()}-core CPU (")
    assert machine_description().endswith(", no GPU")


def test_the_drivers_gpus_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    _fake_nvidia_smi(tmp_path, "NVIDIA H200\\n")
    assert gpu_names() == ["NVIDIA H200"]
    assert machine_description().endswith(", GPU NVIDIA H200")
    _fake_nvidia_smi(tmp_path, "NVIDIA H200\\nNVIDIA H200\\n")
    assert machine_description().endswith(", 2 GPUs NVIDIA H200")


def test_a_driver_that_fails_lists_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    _fake_nvidia_smi(tmp_path, "NVIDIA-SMI has failed\\n", status=9)
    assert gpu_names() == []
