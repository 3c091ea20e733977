"""Settings for the pytest process: the product's settings plus test-only providers and paths.

Processes the tests start (uvicorn, run_workers) use the product's own settings, configured
through the environment that tests/support/stack.py builds from these.
"""

import os
import tempfile
from pathlib import Path

# Tests never touch an operator's data folder.
os.environ["PHOTOBOOTH_DATA_DIR"] = tempfile.mkdtemp(prefix="photobooth-test-data-")

from photobooth.settings import *  # noqa: E402,F403
from photobooth.settings import DATA_DIR, DATABASES, PHOTOBOOTH_PROVIDERS  # noqa: E402

TEST_MEDIA_BASE = Path(tempfile.mkdtemp(prefix="photobooth-test-media-"))
MEDIA_ROOT = TEST_MEDIA_BASE  # each test gets its own folder below (conftest.media_root)

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory: the server and worker processes the tests start must see it too.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}

TESTING_PROVIDER = "tests.support.providers.TestingProvider"
PHOTOBOOTH_PROVIDERS = [*PHOTOBOOTH_PROVIDERS, TESTING_PROVIDER]

INGEST_WAIT_POLL_SECONDS = 0.05
# In-process ingest tests run without a worker process; tests of the liveness check turn it on.
# Processes started by the tests (tests/support/stack.py) use the product's default: required.
INGEST_REQUIRE_LIVE_WORKER = False
# The pytest process itself polls: a listener thread would hold a connection to the test
# database past its teardown. The server processes the tests start do LISTEN (product default).
INGEST_WAIT_LISTEN = False
WORKER_POLL_SECONDS = 0.05
