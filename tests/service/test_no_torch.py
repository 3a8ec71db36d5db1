"""The service never imports torch: every service module imports, and the app serves, with torch blocked."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

CHILD = textwrap.dedent(
    """
    import importlib, pkgutil, sys, time

    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("the service must not import torch")

    sys.meta_path.insert(0, BlockTorch())

    import service
    for info in pkgutil.walk_packages(service.__path__, "service."):
        importlib.import_module(info.name)

    from fastapi.testclient import TestClient
    from service.config import Settings
    from service.main import create_app

    app = create_app(Settings(model_repository=sys.argv[1], device="cpu"))
    with TestClient(app) as client:
        for _ in range(1000):
            if client.get("/ready").status_code == 200:
                break
            time.sleep(0.01)
        r = client.post("/sentiment", json={"texts": ["good", "bad"]})
        assert r.status_code == 200, r.text
    leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
    assert not leaked, leaked
    print("OK", len(sys.modules))
    """
)


def test_service_imports_and_serves_without_torch(tiny_repo: Path):
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tiny_repo)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("OK")
