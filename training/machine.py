"""A one-line description of the machine, written beside every measured figure (training runs, reports
and benchmarks alike)."""

from __future__ import annotations

import os
import platform
import subprocess


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_names() -> list[str]:
    """The GPUs as the NVIDIA driver lists them (``nvidia-smi``), whatever PyTorch or ONNX Runtime build
    is installed (a CPU-only wheel sees no GPU); none where there is no driver."""
    try:
        listed = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in listed.splitlines() if line.strip()]


def machine_description() -> str:
    gpus = gpu_names()
    if not gpus:
        gpu = "no GPU"
    elif len(gpus) == 1:
        gpu = f"GPU {gpus[0]}"
    elif len(set(gpus)) == 1:
        gpu = f"{len(gpus)} GPUs {gpus[0]}"
    else:
        gpu = "GPUs " + ", ".join(gpus)
    return f"{os.cpu_count()}-core CPU ({_cpu_model()}), {gpu}"
