"""The production configuration files in deploy/ (nginx, systemd, environment, Docker).

Static checks run everywhere: the files agree with the application's own limits and settings.
With nginx installed, nginx checks our server block (`nginx -t`) and then runs it in front of a
real uvicorn + run_workers stack (TLS with a certificate made here, the body limit, the headers
it sets). With systemd-analyze, the units are verified and their sandboxing scored.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.conf import settings
from PIL import ImageStat

from ingest.services import update_slot
from jobqueue.deadlines import SYNC_RESPONSE_MAX_SECONDS
from jobqueue.models import Job, ProcessingLog
from tests.conftest import Stack
from tests.support.images import open_image
from tests.support.stack import REPO_ROOT, ManagedProcess, free_port, wait_until

DEPLOY = REPO_ROOT / "deploy"
NGINX_CONF = DEPLOY / "nginx" / "photobooth.conf"
SYSTEMD = DEPLOY / "systemd"
ENV_EXAMPLE = DEPLOY / "env.example"
PRODUCT_PACKAGES = ("photobooth", "ingest", "jobqueue", "providers", "accounts", "api", "adminui")
# What a production install must set (deploy/env.example sets each; the rest have safe defaults).
REQUIRED_IN_PRODUCTION = (
    "DATABASE_URL",
    "SECRET_KEY",
    "SECRETS_ENCRYPTION_KEYS",
    "JWT_SIGNING_KEY",
    "ALLOWED_HOSTS",
    "PUBLIC_BASE_URL",
    "HTTPS",
    "PHOTOBOOTH_DATA_DIR",
    "MEDIA_ROOT",
)


def _nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(path, os.X_OK)),
        None,
    )


NGINX = _nginx_binary()
needs_nginx = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (CI: apt-get install -y nginx)"
)


# --- Static checks -------------------------------------------------------------------------------


def _directive(text: str, name: str) -> list[str]:
    return re.findall(rf"^\s*{name}\s+([^;]+);", text, flags=re.MULTILINE)


def _location(text: str, head: str) -> str:
    """The body of the `location <head> { ... }` block (no nested blocks in ours)."""
    match = re.search(rf"location\s+{re.escape(head)}\s*\{{(.*?)\n\s*\}}", text, flags=re.DOTALL)
    assert match, f"no location {head}"
    return match.group(1)


def _size_in_bytes(value: str) -> int:
    units = {"k": 1024, "m": 1024 * 1024, "g": 1024 * 1024 * 1024}
    value = value.strip().lower()
    return int(value[:-1]) * units[value[-1]] if value[-1] in units else int(value)


def test_nginx_body_limit_is_the_applications_limit() -> None:
    text = NGINX_CONF.read_text()
    (limit,) = _directive(text, "client_max_body_size")
    assert _size_in_bytes(limit) == (
        settings.INGEST_MAX_UPLOAD_BYTES + settings.INGEST_MAX_FORM_OVERHEAD_BYTES
    )
    # nginx's own 413 names the same photo limit as the application's.
    body = re.search(r"return 413 '(.*)';", text)
    assert body
    error = json.loads(body.group(1))["error"]
    assert error["code"] == "payload_too_large"
    assert error["details"] == {"max_bytes": settings.INGEST_MAX_UPLOAD_BYTES}


def test_nginx_ingest_location_streams_and_outwaits_the_deadline() -> None:
    text = NGINX_CONF.read_text()
    ingest = _location(text, "^~ /ingest/")
    assert _directive(ingest, "proxy_request_buffering") == ["off"]
    (read_timeout,) = _directive(ingest, "proxy_read_timeout")
    assert int(read_timeout.rstrip("s")) > SYNC_RESPONSE_MAX_SECONDS
    # Headers the application trusts are overwritten, never appended to.
    headers = dict(h.split(None, 1) for h in _directive(text, "proxy_set_header"))
    assert headers["X-Forwarded-For"] == "$remote_addr"
    assert headers["X-Forwarded-Proto"] == "$scheme"
    assert headers["X-Request-Id"] == "$request_id"
    assert headers["Connection"] == '""'  # upstream keepalive
    # A location with its own proxy_set_header would silently drop all of the above.
    for block in re.findall(r"location[^{]*\{(.*?)\n\s*\}", text, flags=re.DOTALL):
        assert "proxy_set_header" not in block
    metrics = _location(text, "= /metrics")
    assert _directive(metrics, "deny") == ["all"]


def _unit(name: str) -> dict[str, list[str]]:
    """A unit file's settings (continuation lines joined); repeated keys keep every value."""
    values: dict[str, list[str]] = {}
    text = (SYSTEMD / name).read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            values.setdefault(key.strip(), []).append(" ".join(value.split()))
    return values


def _seconds(value: str) -> float:
    return float(value.rstrip("s"))


def _env_example() -> dict[str, str]:
    """The variables deploy/env.example sets (not the commented-out ones)."""
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if re.match(r"^[A-Z][A-Z0-9_]*=", line):
            key, value = line.split("=", 1)
            pairs[key] = value
    return pairs


def test_systemd_units_stop_gracefully_and_are_confined() -> None:
    web, workers = _unit("photobooth-web.service"), _unit("photobooth-workers@.service")
    (web_command,) = web["ExecStart"]
    for flag in (
        "photobooth.asgi:application",
        "--host 127.0.0.1",
        "--port 8000",
        "--proxy-headers",
        "--forwarded-allow-ips 127.0.0.1",
    ):
        assert flag in web_command
    graceful = float(re.search(r"--timeout-graceful-shutdown (\d+)", web_command).group(1))
    # Waiting booths (up to the longest T_sync_response) are answered before uvicorn exits,
    # and systemd waits for that.
    assert SYNC_RESPONSE_MAX_SECONDS < graceful < _seconds(web["TimeoutStopSec"][0])
    # Workers hand their jobs back within the grace period, before systemd would SIGKILL them.
    assert _seconds(workers["TimeoutStopSec"][0]) > settings.WORKER_SHUTDOWN_GRACE_SECONDS + 5
    assert workers["KillMode"] == ["mixed"]
    env = _env_example()
    for unit in (web, workers):
        assert unit["KillSignal"] == ["SIGTERM"]
        assert unit["Restart"] == ["on-failure"]
        assert unit["User"] == ["photobooth"]
        assert unit["EnvironmentFile"] == ["/etc/photobooth/env"]
        assert unit["ProtectSystem"] == ["strict"]
        assert unit["NoNewPrivileges"] == ["yes"]
        assert unit["PrivateTmp"] == ["yes"]
        # Everything the processes write (data folder, media, upload spool) is writable.
        (writable,) = unit["ReadWritePaths"]
        for key in ("PHOTOBOOTH_DATA_DIR", "MEDIA_ROOT"):
            assert any(Path(env[key]).is_relative_to(path) for path in writable.split()), (
                f"{key} is outside ReadWritePaths"
            )


def test_env_example_sets_what_production_needs_and_names_only_real_variables() -> None:
    env = _env_example()
    for key in REQUIRED_IN_PRODUCTION:
        assert env.get(key), f"{key} is not set in deploy/env.example"
    assert env["HTTPS"] == "true"
    assert env["DATABASE_URL"].startswith("postgres://")
    assert "DEBUG" not in env
    mentioned = set(re.findall(r"^#?\s?([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.M))
    sources = "\n".join(
        path.read_text()
        for package in PRODUCT_PACKAGES
        for path in (REPO_ROOT / package).rglob("*.py")
    )
    unknown = sorted(name for name in mentioned if f'"{name}"' not in sources)
    assert not unknown, f"deploy/env.example names variables the code never reads: {unknown}"


def test_env_example_passes_djangos_deployment_checks(tmp_path: Path) -> None:
    """`manage.py check --deploy` with the example's values (secrets filled in) finds nothing."""
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL"}}
    for key, value in _env_example().items():
        env[key] = value.replace("/var/lib/photobooth", str(tmp_path / "data"))
    env.update(
        SECRET_KEY=secrets.token_urlsafe(50),
        JWT_SIGNING_KEY=secrets.token_urlsafe(50),
        SECRETS_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        DJANGO_SETTINGS_MODULE="photobooth.settings",
    )
    assert "CHANGE_ME" not in "".join(v for k, v in env.items() if k != "DATABASE_URL")
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_describes_web_workers_and_postgres() -> None:
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "web", "workers"} <= set(services)
    assert "photobooth.asgi:application" in " ".join(services["web"]["command"])
    assert "run_workers" in services["workers"]["command"]
    assert (
        _seconds(services["workers"]["stop_grace_period"]) > settings.WORKER_SHUTDOWN_GRACE_SECONDS
    )
    assert _seconds(services["web"]["stop_grace_period"]) > SYNC_RESPONSE_MAX_SECONDS
    for name in ("Dockerfile", "compose.yaml"):
        assert "not built or tested here" in (REPO_ROOT / name).read_text()


# --- systemd-analyze --------------------------------------------------------------------------


def _systemd_analyze() -> str | None:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        return None
    probe = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    return binary if probe.returncode == 0 else None


SYSTEMD_ANALYZE = _systemd_analyze()


@pytest.fixture
def runnable_units(tmp_path: Path) -> dict[str, Path]:
    """Copies of our units whose paths exist on this machine (verify checks ExecStart)."""
    folder = tmp_path / "units"
    folder.mkdir()
    venv_bin = Path(sys.executable).parent
    replacements = {
        "/opt/photobooth/venv/bin/": f"{venv_bin}/",
        "/opt/photobooth/app": str(REPO_ROOT),
        "/etc/photobooth/env": str(ENV_EXAMPLE),
    }
    units = {}
    for source in SYSTEMD.iterdir():
        text = source.read_text()
        for old, new in replacements.items():
            assert old in text or source.suffix == ".target", f"{old} not in {source.name}"
            text = text.replace(old, new)
        name = source.name.replace("@.service", "@9101.service")  # an instance of the template
        (folder / name).write_text(text)
        units[source.name] = folder / name
    assert (venv_bin / "uvicorn").exists()
    return units


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not available")
def test_systemd_analyze_verifies_the_units(runnable_units: dict[str, Path]) -> None:
    assert SYSTEMD_ANALYZE is not None
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", *map(str, runnable_units.values())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Unknown keys and bad values are only warnings (exit 0): any output at all is a finding.
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
    assert result.stdout.strip() == "", result.stdout


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not available")
@pytest.mark.parametrize("unit", ["photobooth-web.service", "photobooth-workers@.service"])
def test_systemd_units_are_sandboxed(runnable_units: dict[str, Path], unit: str) -> None:
    assert SYSTEMD_ANALYZE is not None
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(runnable_units[unit])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze cannot score unit files offline (systemd < 250)")
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout + result.stderr)
    assert score, result.stdout + result.stderr
    # 0 = fully confined, 10 = not at all; systemd calls up to 2.0 "OK".
    assert float(score.group(1)) <= 2.0, result.stdout


# --- nginx ----------------------------------------------------------------------------------------


@dataclass
class NginxSite:
    conf: Path
    prefix: Path
    cert: Path
    https_port: int
    http_port: int

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def access_log(self) -> Path:
        return self.prefix / "logs" / "photobooth.access.log"

    def command(self, *args: str) -> list[str]:
        assert NGINX is not None
        error_log = self.prefix / "logs" / "error.log"
        return [NGINX, "-p", str(self.prefix), "-e", str(error_log), "-c", str(self.conf), *args]

    def access_entries(self) -> list[dict[str, object]]:
        if not self.access_log.exists():
            return []
        return [json.loads(line) for line in self.access_log.read_text().splitlines() if line]


def _self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "fullchain.pem", folder / "privkey.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, f"{old!r} is no longer in deploy/nginx/photobooth.conf"
    return text.replace(old, new)


def make_site(
    folder: Path, *, upstream_port: int = 8000, metrics_from_loopback: bool = True
) -> NginxSite:
    """Our server blocks inside a minimal nginx.conf, with test ports, certificate and paths."""
    prefix = folder / "nginx"
    for sub in ("logs", "temp", "tls"):
        (prefix / sub).mkdir(parents=True)
    cert, key = _self_signed_certificate(prefix / "tls")
    https_port, http_port = free_port(), free_port()
    text = NGINX_CONF.read_text()
    text = _replace(text, "listen 80;", f"listen 127.0.0.1:{http_port};")
    text = _replace(text, "listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;")
    # The test binds loopback only (IPv6 may be missing in a container).
    text = re.sub(r"^\s*listen \[::\]:.*$", "", text, flags=re.MULTILINE)
    text = _replace(text, "server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};")
    text = _replace(text, "/etc/ssl/photobooth/fullchain.pem", str(cert))
    text = _replace(text, "/etc/ssl/photobooth/privkey.pem", str(key))
    text = _replace(text, "/var/log/nginx/", f"{prefix}/logs/")
    text = _replace(text, "/var/www/certbot", str(prefix / "acme"))
    if not metrics_from_loopback:
        text = _replace(text, "allow 127.0.0.1;", "")
        text = _replace(text, "allow ::1;", "")
    (prefix / "photobooth.conf").write_text(text)
    temp = prefix / "temp"
    # Running as root, nginx would switch its workers to www-data, which cannot enter pytest's
    # private temporary folders.
    user = "user root;\n" if os.geteuid() == 0 else ""
    wrapper = f"""{user}worker_processes 1;
pid {prefix}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    default_type application/octet-stream;
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {prefix}/photobooth.conf;
}}
"""
    conf = prefix / "nginx.conf"
    conf.write_text(wrapper)
    return NginxSite(
        conf=conf,
        prefix=prefix,
        cert=cert,
        https_port=https_port,
        http_port=http_port,
    )


@needs_nginx
def test_nginx_accepts_the_configuration(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    result = subprocess.run(site.command("-t"), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    assert "[emerg]" not in result.stderr


@pytest.fixture
def nginx_in_front(
    stack_factory: Callable[..., Stack], tmp_path: Path
) -> Iterator[tuple[Stack, NginxSite]]:
    """uvicorn + run_workers (HTTPS=true, as in production) behind our nginx configuration."""
    if NGINX is None:
        pytest.skip("nginx is not installed (CI: apt-get install -y nginx)")
    stack = stack_factory(HTTPS="true")
    site = make_site(
        tmp_path, upstream_port=int(stack.base_url.rsplit(":", 1)[1]), metrics_from_loopback=False
    )
    nginx = ManagedProcess(
        name="nginx",
        command=site.command("-g", "daemon off;"),
        env=os.environ,
        log_path=tmp_path / "nginx.log",
    ).start()

    def answers() -> bool:
        if nginx.process is not None and nginx.process.poll() is not None:
            raise AssertionError(f"nginx exited:\n{nginx.output()}")
        try:
            url = f"{site.https_url}/healthz"
            return requests.get(url, verify=str(site.cert), timeout=5).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_until(answers, timeout=30, interval=0.1)
        yield stack, site
    finally:
        nginx.stop()


def _web_log_lines(stack: Stack) -> list[dict[str, object]]:
    lines = []
    for line in stack.web.process.output().splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


def _raw_tls_request(site: NginxSite, head: str) -> tuple[str, dict[str, str], bytes]:
    """Sends only a request's head (no body) and reads the answer: status, headers, body."""
    context = ssl.create_default_context(cafile=str(site.cert))
    with (
        socket.create_connection(("127.0.0.1", site.https_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(head.encode("ascii"))
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = tls.recv(65536)
            if not chunk:
                break
            received += chunk
        header_block, _, body = received.partition(b"\r\n\r\n")
        status_line, *header_lines = header_block.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, value in (line.split(":", 1) for line in header_lines)
        }
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = tls.recv(65536)
            if not chunk:
                break
            body += chunk
    return status_line, headers, body


def test_ingest_through_nginx(
    nginx_in_front: tuple[Stack, NginxSite], ingest_password: str, photo_jpeg: bytes
) -> None:
    stack, site = nginx_in_front
    update_slot(
        slot_id="slot-001",
        provider_id="local",
        operation_id="photo_look",
        settings={"look": "black_and_white"},
        is_active=True,
    )
    response = requests.post(
        f"{site.https_url}/ingest/slot-001",
        data={"password": ingest_password},
        files={"fileToUpload": ("IMG_0003.JPG", photo_jpeg, "image/jpeg")},
        # What a client may send is replaced by nginx: a forged address, a forged scheme (HTTPS
        # is on: a request the application took for plain HTTP would be redirected), an id.
        headers={
            "X-Request-Id": "client-chosen-id",
            "X-Forwarded-For": "203.0.113.9",
            "X-Forwarded-Proto": "http",
        },
        verify=str(site.cert),
        timeout=90,
    )

    assert response.status_code == 200, stack.logs()
    assert response.headers["Content-Type"] == "image/jpeg"
    red, green, blue = ImageStat.Stat(open_image(response.content)).mean
    assert abs(red - green) < 2 and abs(green - blue) < 2  # processed: black and white
    assert "Strict-Transport-Security" in response.headers  # the application saw HTTPS

    # nginx's request id replaced the client's; it is in nginx's log, the application's log
    # line for the request, and the job's own record.
    request_id = response.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    # nginx and the application write their lines just after answering: wait for them (bounded).
    entries = wait_until(
        lambda: [e for e in site.access_entries() if e["request_id"] == request_id], timeout=10
    )
    assert isinstance(entries, list)
    (logged,) = entries
    assert logged["uri"] == "/ingest/slot-001" and logged["status"] == 200
    job = Job.objects.get(id=response.headers["X-Job-Id"])
    received = job.logs.get(event=ProcessingLog.Event.RECEIVED)
    assert received.details["request_id"] == request_id
    app_lines = wait_until(
        lambda: [
            line
            for line in _web_log_lines(stack)
            if line.get("request_id") == request_id and line.get("message") == "request finished"
        ],
        timeout=10,
    )
    assert isinstance(app_lines, list)
    (app_line,) = app_lines
    # uvicorn took the address from nginx's X-Forwarded-For, which nginx overwrote.
    assert app_line["client_address"] == "127.0.0.1"
    assert "client-chosen-id" not in stack.web.process.output()

    # The result link works through nginx and is not re-compressed.
    download = requests.get(
        f"{site.https_url}/public/results/{job.id}",
        headers={"Accept-Encoding": "gzip"},
        verify=str(site.cert),
        timeout=10,
    )
    assert download.status_code == 200
    assert download.content == response.content
    assert "Content-Encoding" not in download.headers
    # Static text (served by the application) is compressed by nginx.
    static = requests.get(
        f"{site.https_url}/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css",
        headers={"Accept-Encoding": "gzip"},
        verify=str(site.cert),
        timeout=10,
    )
    assert static.status_code == 200
    assert static.headers["Content-Encoding"] == "gzip"

    # Without nginx's X-Forwarded-Proto the same application redirects to HTTPS.
    direct = requests.get(f"{stack.base_url}/api/docs/", allow_redirects=False, timeout=10)
    assert direct.status_code == 301
    assert direct.headers["Location"].startswith("https://")


def test_nginx_refuses_oversized_uploads_before_the_body_is_sent(
    nginx_in_front: tuple[Stack, NginxSite],
) -> None:
    stack, site = nginx_in_front
    limit = settings.INGEST_MAX_UPLOAD_BYTES + settings.INGEST_MAX_FORM_OVERHEAD_BYTES
    head = (
        "POST /ingest/slot-001 HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        "Content-Type: multipart/form-data; boundary=photobooth\r\n"
        f"Content-Length: {limit + 1}\r\n"
        "Expect: 100-continue\r\n"
        "\r\n"
    )
    status, headers, body = _raw_tls_request(site, head)

    assert status.split()[1] == "413", status
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == "payload_too_large"
    assert error["details"]["max_bytes"] == settings.INGEST_MAX_UPLOAD_BYTES
    # Refused by nginx itself: the application never saw the request.
    request_id = headers["x-request-id"]
    # nginx writes its access line just after answering: wait for it (bounded).
    entries = wait_until(
        lambda: [e for e in site.access_entries() if e["request_id"] == request_id], timeout=10
    )
    assert isinstance(entries, list)
    (logged,) = entries
    assert logged["status"] == 413 and logged["upstream_status"] == ""
    assert request_id not in stack.web.process.output()


def test_nginx_redirects_http_and_guards_metrics(
    nginx_in_front: tuple[Stack, NginxSite],
) -> None:
    _, site = nginx_in_front
    plain = requests.get(
        f"http://127.0.0.1:{site.http_port}/public/results/x?y=1", allow_redirects=False, timeout=10
    )
    assert plain.status_code == 301
    assert plain.headers["Location"] == "https://127.0.0.1/public/results/x?y=1"

    # Loopback is removed from the allow list in this copy: nginx itself refuses (the
    # application would have answered a loopback client).
    metrics = requests.get(f"{site.https_url}/metrics", verify=str(site.cert), timeout=10)
    assert metrics.status_code == 403
    assert "metrics_forbidden" not in metrics.text
    (logged,) = [e for e in site.access_entries() if e["uri"] == "/metrics"]
    assert logged["upstream_status"] == ""
