"""The documented nginx ``grpc_pass`` front (deploy/nginx/ota-registry.conf) over real replicas."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from otawire import tls
from server.client import PublisherClient
from tests.scaleout.conftest import vehicle_config
from tests.scaleout.helpers import tiny_onnx, update_each

pytestmark = pytest.mark.postgres

# Where nginx would otherwise write under /var/lib/nginx (Debian's modules compiled in).
_TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "ota-registry.conf"
MTLS_CONF = CONF.with_name("ota-registry-mtls.conf")


def _nginx_binary() -> str:
    """nginx from Debian, installed on first use when this is a root shell with apt."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(
            "nginx is not installed and cannot be (needs root and apt-get): apt-get install nginx-light"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "install", "-y", "-q", "nginx-light"],
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "nginx-light"],
    ):
        subprocess.run(cmd, env=env, capture_output=True, timeout=300, check=False)
        if found := shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin"):
            return found
    pytest.skip("nginx could not be installed with apt-get (no Debian mirror reachable?)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render(conf: str, upstreams: list[str], listen: str) -> str:
    """A documented file with its upstream servers and listen address replaced."""
    servers = "".join(f"        server {a} max_fails=1 fail_timeout=5s;\n" for a in upstreams)
    conf, n = re.subn(
        r"(upstream \w+ \{\n(?:\s*#.*\n)*)(?:\s*server .*\n)+", rf"\g<1>{servers}", conf
    )
    assert n == 1, "the nginx file lost its upstream block"
    conf, n = re.subn(r"listen 127\.0\.0\.1:8443( http2)?;", rf"listen {listen}\1;", conf)
    assert n == 1, "the nginx file lost its listen line"
    return conf


def _stream_module() -> Path:
    """Debian builds nginx's stream (layer 4) proxy as a module of its own package."""
    module = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
    if not module.exists() and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "libnginx-mod-stream"],
            capture_output=True,
            timeout=300,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            check=False,
        )
    if not module.exists():
        pytest.skip(
            "nginx's stream module is not installed and cannot be: apt-get install libnginx-mod-stream"
        )
    return module


@contextmanager
def _nginx(tmp_path: Path, conf: Path, replicas: list, stream: bool) -> Iterator[str]:
    """Run nginx with the documented ``conf`` in front of ``replicas``; yield its address."""
    binary = _nginx_binary()
    module = _stream_module() if stream else None
    # The port is picked free, then nginx binds it: another process (a second test run beside
    # this one) may take it in between; then nginx exits and the next free port is tried.
    for _ in range(3):
        port = _free_port()
        proc = _start_nginx(binary, module, tmp_path, conf, replicas, stream, port)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and proc.poll() is None:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.05)
            else:
                if proc.poll() is not None:
                    continue
                pytest.fail(
                    f"nginx did not listen on {port}: {(tmp_path / 'error.log').read_text()[-2000:]}"
                )
            yield f"127.0.0.1:{port}"
            return
        finally:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(10)
    pytest.fail(f"nginx exited three times: {(tmp_path / 'error.log').read_text()[-2000:]}")


def _start_nginx(
    binary: str,
    module: Path | None,
    tmp_path: Path,
    conf: Path,
    replicas: list,
    stream: bool,
    port: int,
) -> subprocess.Popen:
    site = tmp_path / conf.name
    site.write_text(render(conf.read_text(), [r.address for r in replicas], f"127.0.0.1:{port}"))
    main = tmp_path / "nginx.conf"
    temp_paths = "".join(f"  {kind}_temp_path {tmp_path / kind};\n" for kind in _TEMP_KINDS)
    main.write_text(
        (f"load_module {module};\n" if module else "")
        + ("user root;\n" if os.geteuid() == 0 else "")  # workers must reach pytest's 0700 tmp dirs
        + f"worker_processes 1;\ndaemon off;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log info;\n"
        + "events { worker_connections 256; }\n"
        + (
            f"include {site};\n"
            if stream  # the stream file is main context
            else f"http {{\n  access_log {tmp_path}/access.log;\n{temp_paths}  include {site};\n}}\n"
        )
    )
    check = subprocess.run(
        [binary, "-t", "-c", str(main), "-p", str(tmp_path)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    return subprocess.Popen(
        [binary, "-c", str(main), "-p", str(tmp_path)], stderr=subprocess.DEVNULL
    )


@pytest.fixture
def nginx_front(cluster, tmp_path: Path) -> Iterator[tuple[str, list]]:
    # The documented grpc_pass front is plain-text HTTP/2 on a private network, so the
    # replicas run with an explicit --insecure (vehicle manifests are still verified
    # against the fleet CA). Mutual TLS end to end needs TLS passthrough (below).
    replicas = cluster(3, insecure=True)
    with _nginx(tmp_path, CONF, replicas, stream=False) as address:
        yield address, replicas


def test_publish_and_update_through_nginx(
    nginx_front, pg_registry, keys_dir, tmp_path, pki
) -> None:
    address, replicas = nginx_front
    with PublisherClient(address, insecure=True) as pub:
        pub.upload(tiny_onnx("through nginx"), "tiny", "1.0.0")
        pub.release("tiny", "1.0.0", "fleet")
    outcomes = update_each(
        [
            vehicle_config(pki, keys_dir, address, tmp_path / f"car-{i}", f"car-{i}", insecure=True)
            for i in range(3)
        ]
    )
    assert outcomes == [[("installed", "1.0.0")]] * 3
    calls = [
        r.metric("ota_registry_requests_total", {"service": "ota.v1.Vehicle"}) for r in replicas
    ]
    assert sum(c > 0 for c in calls) >= 2, f"nginx did not spread calls over the replicas: {calls}"
    assert len([r for r in pg_registry.store.list_reports() if r.status == "installed"]) == 3


def test_mutual_tls_end_to_end_through_nginx_passthrough(
    cluster, pg_registry, keys_dir, tmp_path, pki
) -> None:
    """deploy/nginx/ota-registry-mtls.conf: each replica sees the vehicle's own certificate."""
    replicas = cluster(3)  # mutual TLS
    with _nginx(tmp_path, MTLS_CONF, replicas, stream=True) as address:
        with PublisherClient(
            address, tls_files=tls.TlsFiles.in_dir(pki, "publisher", "ml-team")
        ) as pub:
            pub.upload(tiny_onnx("through nginx, mutual TLS"), "tiny", "1.0.0")
            pub.release("tiny", "1.0.0", "fleet")
        outcomes = update_each(
            [
                vehicle_config(pki, keys_dir, address, tmp_path / f"car-{i}", f"car-{i}")
                for i in range(3)
            ]
        )
    assert outcomes == [[("installed", "1.0.0")]] * 3
    # nginx spreads connections (one per vehicle here), so the vehicles landed on several replicas,
    # and each was authorised by its own certificate there (a vehicle's director chain is its own).
    calls = [
        r.metric("ota_registry_requests_total", {"service": "ota.v1.Vehicle", "code": "OK"})
        for r in replicas
    ]
    assert sum(c > 0 for c in calls) >= 2, (
        f"nginx did not spread the vehicles' connections: {calls}"
    )
    assert sorted(
        r.vehicle_id for r in pg_registry.store.list_reports() if r.status == "installed"
    ) == ["car-0", "car-1", "car-2"]
