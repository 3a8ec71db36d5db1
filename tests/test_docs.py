"""Every model, endpoint, command and path that README.md and docs/ name exists.

Model names must be shipped in ``models/`` or be a training config's name (``training/configs/<name>``
with ``-`` for ``_``) or a run that a documented command creates (``--name=...``); docs/experiments.md, the
record of runs that did not ship, is exempt from that rule only.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from service.config import Settings
from service.main import create_app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MODEL_NAME = re.compile(r"`((?:sentiment|ner|translation|generation)(?:-[a-z0-9]+)+)`")
ENDPOINT = re.compile(r"\b(?:GET|POST|PUT|DELETE) (/[\w/{}.-]*)|localhost:\d+(/[\w/.-]*)")
MODULE_COMMAND = re.compile(r"python -m ([\w.]+)(?: ([a-z][\w-]*))?")
MAKE_COMMAND = re.compile(r"\bmake ([a-z][\w-]*)")
PATH = re.compile(r"`((?:service|training|loadtest|deploy|tests|docs|models)/[\w./<>*-]+)`")
#: the task of docs/service.md's worked outline of adding a task: its files are examples, not the project's
EXAMPLE_TASK = "langid"


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _ids(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _known_models() -> set[str]:
    shipped = {p.name for p in (ROOT / "models").iterdir() if (p / "config.json").is_file()}
    configs = {p.stem.replace("_", "-") for p in (ROOT / "training" / "configs").glob("*.toml")}
    runs = set()
    for doc in DOCS:
        for name in re.findall(r"--name[= ]([\w${}.-]+)", _text(doc)):
            runs.add(name)
            if "$s" in name:  # the README's seed loop: --name=sentiment-lstm-s$s for s in 13..17
                runs.update(name.replace("$s", str(s)) for s in range(100))
    return shipped | configs | runs


@pytest.mark.parametrize("doc", [d for d in DOCS if d.name != "experiments.md"], ids=_ids)
def test_named_models_exist(doc: Path) -> None:
    unknown = sorted(set(MODEL_NAME.findall(_text(doc))) - _known_models())
    assert not unknown, f"{doc.name} names models that neither ship nor have a recipe: {unknown}"


@pytest.fixture(scope="module")
def served_paths() -> set[str]:
    app = create_app(Settings(model_repository=ROOT / "models"))
    return set(app.openapi()["paths"]) | {app.docs_url, app.openapi_url, app.redoc_url}


@pytest.mark.parametrize("doc", DOCS, ids=_ids)
def test_named_endpoints_are_served(doc: Path, served_paths: set[str]) -> None:
    named = {a or b for a, b in ENDPOINT.findall(_text(doc))}
    missing = sorted(p.rstrip(".") for p in named if p.rstrip(".:") not in served_paths)
    assert not missing, f"{doc.name} names endpoints the service does not serve: {missing}"


def _training_commands() -> set[str]:
    from training.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]  # argparse keeps sub-commands here
    return set(sub.choices)


@pytest.mark.parametrize("doc", DOCS, ids=_ids)
def test_named_commands_exist(doc: Path) -> None:
    text = _text(doc)
    problems = []
    for module, sub in MODULE_COMMAND.findall(text):
        module = module.rstrip(".")
        if module.split(".")[0] in ("json",):
            continue
        if importlib.util.find_spec(module) is None:
            problems.append(f"python -m {module}: no such module")
        elif module == "training" and sub and sub not in _training_commands():
            problems.append(f"python -m training {sub}: no such command")
    targets = set(re.findall(r"^([a-z][\w-]*):", _text(ROOT / "Makefile"), re.M))
    problems += [f"make {t}: no such target" for t in MAKE_COMMAND.findall(text) if t not in targets]
    assert not problems, f"{doc.name}: {problems}"


@pytest.mark.parametrize("doc", DOCS, ids=_ids)
def test_named_paths_exist(doc: Path) -> None:
    ignored = [
        line.rstrip("/") for line in _text(ROOT / ".gitignore").splitlines() if "/" in line.rstrip("/")
    ]
    missing = []
    for path in PATH.findall(_text(doc)):
        path = path.rstrip(".,:")
        if EXAMPLE_TASK in path.split("/") or any(path.startswith(i) for i in ignored):
            continue  # the worked example, or what a command writes (e.g. loadtest/reports/)
        if "<" in path or "*" in path:
            pattern = re.sub(r"<[^>]+>", "*", path)
            if not list(ROOT.glob(pattern)):
                missing.append(path)
        elif not (ROOT / path).exists():
            missing.append(path)
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"
