# Photobooth AI server image: the web (uvicorn) and the workers (run_workers) from one image.
#
# NOTE: not built or tested here (no registry access to base images in our CI). It is a minimal
# starting point; production on one Linux server is described (and tested) with systemd + nginx
# in Docs/deployment.md. Put nginx (deploy/nginx/photobooth.conf) or another TLS proxy in front.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/venv/bin:$PATH \
    PHOTOBOOTH_DATA_DIR=/data \
    MEDIA_ROOT=/data/media

RUN groupadd --system photobooth \
    && useradd --system --gid photobooth --home-dir /app --shell /usr/sbin/nologin photobooth \
    && python -m venv /venv

WORKDIR /app
# Dependencies first (a layer that changes only with pyproject.toml); the code runs from /app.
COPY pyproject.toml README.md ./
RUN pip install .
COPY . .
RUN python -m compileall -q accounts adminui api ingest jobqueue photobooth providers \
    && mkdir -p /data/media \
    && chown -R photobooth:photobooth /data

USER photobooth
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"]
# The web. The workers use the same image with `python manage.py run_workers` (compose.yaml).
# The proxy's address must be trusted for X-Forwarded-*: set FORWARDED_ALLOW_IPS.
CMD ["uvicorn", "photobooth.asgi:application", "--host", "0.0.0.0", "--port", "8000", \
     "--workers", "2", "--proxy-headers", "--timeout-graceful-shutdown", "70"]
