"""The registry's read-only web dashboard: a static page over a small JSON API.

``/`` serves one page (HTML, JS, CSS from ``static/``) that holds no data; the
page polls ``/api/vehicles``, ``/api/campaigns``, ``/api/models`` and
``/api/audit`` and renders them. Only ``GET`` exists: nothing here can change
the fleet.

Never open by default. Every ``/api`` call is authenticated, by one of:

- a **bearer token** (``Authorization: Bearer …``); the page takes it from the
  URL fragment (``/#token=…``), which browsers do not send to servers or logs;
- **mutual TLS** with the fleet CA: the client certificate must carry the
  ``publisher`` role (an operator's certificate), never a vehicle's.

The standard library's threaded HTTP server is enough: a dashboard has a few
readers polling every few seconds, and it keeps the registry's install lean.
"""

from __future__ import annotations

import hmac
import http.server
import json
import logging
import secrets
import ssl
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from otawire import tls

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
# The page loads only its own files and talks only to its own origin.
_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:"
ALLOWED_ROLES = ("publisher",)


class DashboardError(Exception):
    """A request the dashboard cannot answer (bad filter, unknown campaign); shown to the reader."""


class DashboardSource(Protocol):
    """What the dashboard reads; each method returns JSON-ready data."""

    def vehicles(self, filter: str) -> list[dict[str, Any]]: ...
    def campaigns(self) -> list[dict[str, Any]]: ...
    def models(self) -> list[dict[str, Any]]: ...
    def audit(self, limit: int) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class DashboardAuth:
    """How readers prove who they are: a token, mutual TLS, or both (either suffices)."""

    token: str = ""
    tls_files: tls.TlsFiles | None = None

    def __post_init__(self) -> None:
        if not self.token and self.tls_files is None:
            raise ValueError("a dashboard needs a token or mutual TLS; it is never open")

    @classmethod
    def with_fresh_token(cls, tls_files: tls.TlsFiles | None = None) -> DashboardAuth:
        return cls(secrets.token_urlsafe(24), tls_files)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    server_version = "ota-dashboard"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("dashboard %s: " + format, self.address_string(), *args)

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", _CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, data: Any) -> None:
        self._send(code, json.dumps(data, default=str).encode(), "application/json")

    def _authorised(self) -> str | None:
        """The reader's name, or None. A token is compared in constant time."""
        auth = self.server.auth
        if auth.tls_files is not None and isinstance(self.connection, ssl.SSLSocket):
            der = self.connection.getpeercert(binary_form=True)
            if der:  # the handshake already checked it is from the fleet CA
                try:
                    ident = tls.identity_of(ssl.DER_cert_to_PEM_cert(der).encode())
                except tls.TlsError:
                    return None
                return f"{ident.role}:{ident.name}" if ident.role in ALLOWED_ROLES else None
        header = self.headers.get("Authorization", "")
        if (
            auth.token
            and header.startswith("Bearer ")
            and hmac.compare_digest(header[7:].strip(), auth.token)
        ):
            return "token"
        return None

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if not url.path.startswith("/api/"):
            self._static(url.path)
            return
        if self._authorised() is None:
            self._json(
                401,
                {
                    "error": "not authenticated: open the dashboard URL the registry printed "
                    "(it carries #token=…), or use an operator certificate"
                },
            )
            return
        query = urllib.parse.parse_qs(url.query)
        src = self.server.source
        try:
            match url.path:
                case "/api/vehicles":
                    data = src.vehicles(query.get("filter", [""])[0])
                case "/api/campaigns":
                    data = src.campaigns()
                case "/api/models":
                    data = src.models()
                case "/api/audit":
                    data = src.audit(min(int(query.get("limit", ["200"])[0]), 1000))
                case _:
                    self._json(404, {"error": f"no such endpoint {url.path}"})
                    return
        except (DashboardError, ValueError) as e:
            self._json(400, {"error": str(e)})
            return
        except Exception as e:
            log.exception("dashboard %s failed", url.path)
            self._json(500, {"error": f"{type(e).__name__}: {e}"})
            return
        self._json(200, data)

    def _static(self, path: str) -> None:
        name = "index.html" if path in ("", "/") else path.lstrip("/")
        file = (STATIC / name).resolve()
        if file.parent != STATIC.resolve() or not file.is_file():
            self._send(404, b"not found", "text/plain")
            return
        self._send(200, file.read_bytes(), _TYPES.get(file.suffix, "application/octet-stream"))


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], source: DashboardSource, auth: DashboardAuth) -> None:
        self.source = source
        self.auth = auth
        super().__init__(addr, _Handler)


@dataclass
class Dashboard:
    """A running dashboard; ``url`` is what to open (with the token in its fragment)."""

    httpd: _Server
    thread: threading.Thread
    auth: DashboardAuth

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def base_url(self) -> str:
        host = str(self.httpd.server_address[0])
        scheme = "https" if self.auth.tls_files is not None else "http"
        return f"{scheme}://{'localhost' if host in ('127.0.0.1', '::1') and scheme == 'https' else host}:{self.port}/"

    @property
    def url(self) -> str:
        return self.base_url + (f"#token={self.auth.token}" if self.auth.token else "")

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def serve_dashboard(listen: str, source: DashboardSource, auth: DashboardAuth) -> Dashboard:
    """Serve the dashboard on ``host:port`` (port 0: a free one) in a daemon thread.

    With ``auth.tls_files`` it speaks HTTPS and asks for a client certificate
    from the fleet CA (a token still works for browsers without one).
    """
    host, _, port_text = listen.rpartition(":")
    port = parse_port(port_text, "--dashboard-listen")
    httpd = _Server((host or "127.0.0.1", port), source, auth)
    if auth.tls_files is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(auth.tls_files.cert, auth.tls_files.key)
        ctx.load_verify_locations(auth.tls_files.ca)
        # Optional so a token-holding browser without a certificate can still read.
        ctx.verify_mode = ssl.CERT_OPTIONAL if auth.token else ssl.CERT_REQUIRED
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, name="dashboard", daemon=True)
    thread.start()
    dash = Dashboard(httpd, thread, auth)
    log.info("dashboard on %s", dash.base_url)
    return dash


def parse_port(text: str, option: str) -> int:
    """A TCP port 0..65535, or a one-line error naming the option (0 means any free port)."""
    try:
        port = int(text)
    except ValueError:
        raise ValueError(
            f"{option}: {text!r} is not a port number; give HOST:PORT, e.g. 127.0.0.1:8080"
        ) from None
    if not 0 <= port <= 65535:
        raise ValueError(
            f"{option}: port {port} is out of range; use 1-65535 (or 0 for any free port)"
        )
    return port
