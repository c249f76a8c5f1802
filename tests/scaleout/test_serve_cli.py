"""`ota registry serve` refuses a storage choice it cannot honour, saying why."""

from __future__ import annotations

from click.testing import CliRunner

from server.registry_cli import registry


def test_serve_needs_a_data_dir_or_a_database(keys_dir) -> None:
    result = CliRunner().invoke(registry, ["serve", "--keys", str(keys_dir), "--insecure"])
    assert result.exit_code != 0
    assert "give --data DIR (embedded SQLite) or --db postgresql://" in result.output


def test_serve_refuses_a_database_url_it_does_not_speak(keys_dir) -> None:
    result = CliRunner().invoke(
        registry, ["serve", "--keys", str(keys_dir), "--insecure", "--db", "mysql://db/ota"]
    )
    assert result.exit_code != 0
    assert "only postgresql://… URLs are supported" in result.output


def test_workers_share_one_port_and_each_serves(keys_dir, tmp_path) -> None:
    """`--workers 2`: two processes listen on one port (SO_REUSEPORT) and the kernel gives both calls."""
    import json
    import re
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    import grpc

    from otawire.v1 import ota_pb2, ota_pb2_grpc

    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ota.cli",
                "registry",
                "serve",
                "--workers",
                "2",
                "--insecure",
                "--data",
                str(tmp_path / "data"),
                "--keys",
                str(keys_dir),
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--dashboard-listen",
                "127.0.0.1:0",
                "--dashboard-token",
                "w0rkers",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            text = log.read_text()
            ports = set(re.findall(r"registry serving on 127\.0\.0\.1:(\d+)", text))
            metrics = re.findall(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", text)
            serving = len(re.findall("registry serving on", text))
            if serving == 2 and len(metrics) == 2 and "dashboard on" in text:
                break
            assert proc.poll() is None, text
            time.sleep(0.2)
        else:
            raise AssertionError(f"two workers did not start:\n{log.read_text()}")
        assert len(ports) == 1, f"both workers on one port: {text}"
        [port] = ports
        for i in range(40):  # a new connection each: the kernel spreads them over the workers
            with grpc.insecure_channel(
                f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
            ) as ch:
                ota_pb2_grpc.VehicleStub(ch).CheckForUpdate(
                    ota_pb2.CheckForUpdateRequest(vehicle_id=f"car-{i}"), timeout=30
                )

        def served(mport: str) -> float:
            body = (
                urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10)
                .read()
                .decode()
            )
            return sum(
                float(m)
                for m in re.findall(
                    r'ota_registry_requests_total\{[^}]*method="CheckForUpdate"[^}]*\} (\S+)', body
                )
            )

        counts = [served(m) for m in metrics]
        assert sum(counts) == 40 and all(c > 0 for c in counts), counts
        # One dashboard for all workers (not one each, nor a port clash), showing the whole fleet.
        text = log.read_text()
        [dash] = re.findall(r"dashboard on (http://127\.0\.0\.1:\d+)/#token=w0rkers", text)
        assert text.count("dashboard on") == 1, text
        seen = json.loads(
            urllib.request.urlopen(
                urllib.request.Request(
                    f"{dash}/api/vehicles", headers={"Authorization": "Bearer w0rkers"}
                ),
                timeout=10,
            ).read()
        )
        assert len(seen) == 40, "vehicles that checked in with either worker"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == 0, log.read_text()
