"""WSGI entry point (kept for tooling; the server runs the ASGI application, see asgi.py)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "photobooth.settings")

application = get_wsgi_application()
