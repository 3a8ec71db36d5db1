"""Serves the try-it page: ``/`` and ``/ui`` redirect to ``/ui/``, files come from ``static/``.

Only the files shipped in ``static/`` are served (the name must be one of them: no path from the request
reaches the file system). The page is same-origin only: its Content-Security-Policy allows no other host.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

STATIC_DIR = Path(__file__).resolve().parent / "static"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Scripts, styles and connections to this origin only; styles set from script (CSSOM) are not inline.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_FILES = {p.name: p for p in STATIC_DIR.iterdir() if p.is_file() and p.suffix in MEDIA_TYPES}

router = APIRouter(tags=["ui"])


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("ui/", status_code=307)


@router.get("/ui", include_in_schema=False)
async def ui_without_slash() -> RedirectResponse:
    # The page's relative URLs (static/app.js, ../models) need the trailing slash.
    return RedirectResponse("ui/", status_code=307)


@router.get(
    "/ui/",
    response_class=HTMLResponse,
    summary="Try every model in a browser: a page with a tab per task and a status tab (/ redirects here)",
)
async def page() -> Response:
    return _file("index.html")


@router.get("/ui/static/{name}", include_in_schema=False)
async def static(name: str) -> Response:
    return _file(name)


def _file(name: str) -> Response:
    path = _FILES.get(name)
    if path is None:  # the app's error handlers answer it in the uniform JSON error shape
        raise HTTPException(404, f"no such file: {name}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=_HEADERS)
