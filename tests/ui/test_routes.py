"""``service.ui.routes``: what the page is served with, and that every file ships with the package."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.ui import routes
from tests.ui.browser import REPO_ROOT

STATIC_FILES = sorted(p.name for p in routes.STATIC_DIR.iterdir() if p.is_file())


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    app.include_router(routes.router)
    return TestClient(app)


@pytest.mark.parametrize("path", ["/", "/ui"])
def test_root_and_ui_redirect_to_the_page(client: TestClient, path: str) -> None:
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "ui/"  # relative: works behind a path prefix
    assert client.get(path).url.path == "/ui/"


def test_the_page_and_its_files_are_served_with_a_same_origin_policy(client: TestClient) -> None:
    page = client.get("/ui/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "script-src 'self'" in csp
    for src in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        if src.startswith("static/"):
            asset = client.get(f"/ui/{src}")
            assert asset.status_code == 200, src
            assert asset.headers["content-security-policy"] == csp
    assert client.get("/ui/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/ui/static/app.css").headers["content-type"].startswith("text/css")


@pytest.mark.parametrize("name", ["nope.js", "..%2Froutes.py", "__init__.py", "%2Fetc%2Fpasswd"])
def test_only_the_shipped_files_are_served(client: TestClient, name: str) -> None:
    assert client.get(f"/ui/static/{name}").status_code == 404


@pytest.mark.parametrize("name", STATIC_FILES)
def test_no_file_loads_anything_from_another_host(name: str) -> None:
    text = (routes.STATIC_DIR / name).read_text(encoding="utf-8")
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import|url\((?!\s*['\"]?data:)", text), name


def test_every_static_file_is_package_data() -> None:
    """A non-editable install (the Docker image's ``pip install .``) must ship the page."""
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["service.ui"]
    for name in STATIC_FILES:
        assert any(fnmatch(f"static/{name}", pattern) for pattern in patterns), name
    assert {"index.html", "app.js", "app.css"} <= set(STATIC_FILES)


def test_the_service_serves_the_page_and_documents_only_the_page(tmp_path) -> None:
    from service.config import Settings
    from service.main import create_app

    app = create_app(Settings(model_repository=tmp_path))
    paths = app.openapi()["paths"]
    assert "/ui/" in paths and "text/html" in paths["/ui/"]["get"]["responses"]["200"]["content"]
    assert not {"/", "/ui", "/ui/static/{name}"} & set(paths), "redirects and files stay out of the API docs"
    with TestClient(app) as client:  # the whole app: middleware and error handlers included
        assert client.get("/", follow_redirects=False).headers["location"] == "ui/"
        assert client.get("/").url.path == "/ui/"
        missing = client.get("/ui/static/missing.js")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
