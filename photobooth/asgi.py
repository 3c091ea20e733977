"""ASGI entry point: Django wrapped in the ingest body guard and the correlation id middleware.

Served by uvicorn (`make run`, Docs/deployment.md). Waiting ingest requests are coroutines, so
one process holds many of them without a thread each.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "photobooth.settings")

django_application = get_asgi_application()

from django.conf import settings  # noqa: E402  (settings are ready only after the line above)
from django.urls import get_resolver  # noqa: E402

from photobooth.body_guard import IngestBodyGuard  # noqa: E402
from photobooth.request_id import RequestIdMiddleware  # noqa: E402


def _max_photo_bytes() -> int:
    return int(settings.INGEST_MAX_UPLOAD_BYTES)


# The correlation id is outermost: the body guard's own answers carry it too.
application = RequestIdMiddleware(
    IngestBodyGuard(
        django_application,
        max_photo_bytes=_max_photo_bytes,
        form_overhead_bytes=settings.INGEST_MAX_FORM_OVERHEAD_BYTES,
        body_timeout_seconds=settings.INGEST_BODY_TIMEOUT_SECONDS,
    )
)

# Import every view now, not on the first request: the first booth photo after a restart should
# not wait for the URL configuration to load.
get_resolver().url_patterns  # noqa: B018
