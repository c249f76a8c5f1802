"""The dashboard's API is never open: a token or an operator's certificate (mutual TLS)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import pytest

from otawire import tls
from server.dashboard.source import RegistrySource
from server.dashboard.web import DashboardAuth, serve_dashboard


def _get(
    url: str, token: str | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, object]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_dashboard_is_never_open(dashboard) -> None:
    api = dashboard.base_url + "api/vehicles"
    assert _get(api)[0] == 401
    assert _get(api, "wrong-token")[0] == 401
    assert _get(api, "s3cret-token") == (200, [])
    with pytest.raises(ValueError, match="never open"):
        DashboardAuth()


def test_dashboard_mutual_tls_takes_operators_not_vehicles(registry_server, pki) -> None:
    """HTTPS with the fleet CA: a publisher (operator) certificate reads, a vehicle's is refused."""
    dash = serve_dashboard(
        "127.0.0.1:0",
        RegistrySource(registry_server.registry),
        DashboardAuth(tls_files=tls.TlsFiles.in_dir(pki, "server", "registry")),
    )
    try:

        def ctx(files: tls.TlsFiles) -> ssl.SSLContext:
            c = ssl.create_default_context(cafile=str(files.ca))
            c.load_cert_chain(files.cert, files.key)
            return c

        api = dash.base_url + "api/models"
        assert _get(api, context=ctx(tls.TlsFiles.in_dir(pki, "publisher", "ml-team"))) == (200, [])
        assert _get(api, context=ctx(tls.ensure(pki, "vehicle", "car-9")))[0] == 401
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            _get(
                api, context=ssl.create_default_context(cafile=str(pki / tls.CA_CERT))
            )  # no certificate at all
    finally:
        dash.stop()
