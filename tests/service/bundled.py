"""Model repositories made of the bundled models (``models/``), for tests that need every task without
training anything: each model folder is linked (or copied, for tests that damage it) into a temporary
repository, so the models load in seconds and no test touches ``models/`` itself."""

from __future__ import annotations

import shutil
from pathlib import Path

BUNDLED = Path(__file__).resolve().parents[2] / "models"
#: the smallest bundled model of each task
SMALL = {
    "sentiment": "sentiment-gru",
    "ner": "ner-bigru-crf",
    "translation": "translation-gru",
    "generation": "generation-gru",
}


def bundled_repository(root: Path, names: list[str] | None = None, copy: tuple[str, ...] = ()) -> Path:
    """``root`` holding the bundled ``names`` (default: the smallest model of each task) as symlinks,
    except the ones in ``copy`` (real copies, safe to delete or corrupt)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in names or list(SMALL.values()):
        source = BUNDLED / name
        if not (source / "config.json").is_file():
            raise FileNotFoundError(f"no bundled model {name} in {BUNDLED}")
        if name in copy:
            shutil.copytree(source, root / name)
        else:
            (root / name).symlink_to(source, target_is_directory=True)
    return root
