"""Just enough Dockerfile and settings parsing for the deployment tests (no Docker engine needed)."""

from __future__ import annotations

import fnmatch
import json
import shlex
import typing
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from service.config import ENV_PREFIX, Settings

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for args in self.all("ENV"):
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                out[key] = value
        return out

    def exec_form(self, keyword: str) -> list[str]:
        """The last ``CMD``/``ENTRYPOINT``/``HEALTHCHECK ... CMD`` in JSON (exec) form."""
        args = self.all(keyword)[-1]
        if keyword == "HEALTHCHECK":
            args = args[args.index("CMD") + len("CMD") :]
        return json.loads(args)


def instructions(path: Path) -> list[tuple[str, str]]:
    """``(KEYWORD, arguments)`` per instruction, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), " ".join(args.split())))
    return out


def stages(path: Path) -> dict[str, Stage]:
    """Stages by name, in order; build arguments declared before the first ``FROM`` are substituted."""
    global_args: dict[str, str] = {}
    result: dict[str, Stage] = {}
    current: Stage | None = None
    for keyword, args in instructions(path):
        if keyword == "ARG" and current is None:
            name, _, default = args.partition("=")
            global_args[name] = default
        elif keyword == "FROM":
            words = args.split()
            base = words[0]
            for name, value in global_args.items():
                base = base.replace("${" + name + "}", value)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(result))
            current = result[name] = Stage(name, base)
        elif current is not None:
            current.instructions.append((keyword, args))
    return result


def dockerignore_patterns(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    """Whether the build context drops ``relative`` (leading-component and glob matches; no ``!``)."""
    parts = Path(relative).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        pattern = pattern.removeprefix("**/")
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(Path(p).name, pattern) for p in prefixes):
            return True
    return False


def setting_problem(variable: str) -> str | None:
    """``None`` when ``variable`` is a service setting (``RNNSERVE_X`` or nested ``RNNSERVE_X__Y``)."""
    if not variable.startswith(ENV_PREFIX):
        return f"{variable} lacks the {ENV_PREFIX} prefix"
    parts = variable.removeprefix(ENV_PREFIX).lower().split("__")
    model: type[BaseModel] = Settings
    i = 0
    while True:
        name = parts[i]
        if name not in model.model_fields:
            return f"{variable}: {name!r} is not a setting of {model.__name__} ({sorted(model.model_fields)})"
        annotation = model.model_fields[name].annotation
        i += 1
        if typing.get_origin(annotation) is dict and i < len(parts):
            i += 1  # a free-form key (e.g. a task name) before the value model's fields
            annotation = typing.get_args(annotation)[1]
        if i >= len(parts):
            return None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return f"{variable}: {name!r} has no nested settings"
        model = annotation
