"""``python -m service``: uvicorn on the settings' host and port (what ``make serve`` runs)."""

from __future__ import annotations

import uvicorn

from service.config import get_settings
from service.logs import configure_logging


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        "service.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
        workers=1,
    )


if __name__ == "__main__":
    main()
