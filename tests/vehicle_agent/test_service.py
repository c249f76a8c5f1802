"""``ota agent run`` as a service: serves on its socket, updates, stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc

from otawire.v1 import inference_pb2
from testkit.helpers import publish_released
from testkit.variants import successor
from vehicle_agent.serving import connect

NAME = "squeezenet1.0"


def wait_for(pred, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_service_serves_updates_and_stops_cleanly(
    registry_server, squeezenet_bytes, tmp_path: Path, sock: Path
) -> None:
    reg = registry_server.registry
    publish_released(reg, NAME, "1.0.0", squeezenet_bytes)
    ident = registry_server.vehicle_tls("svc-1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ota.cli",
            "agent",
            "run",
            "--registry",
            registry_server.address,
            "--state",
            str(tmp_path / "state"),
            "--trusted-root",
            str(registry_server.keys_dir / "root.json"),
            "--vehicle-id",
            "svc-1",
            "--interval",
            "0.2",
            "--health-window",
            "0",
            "--serve",
            str(sock),
            "--director-root",
            str(registry_server.keys_dir / "director-root.json"),
            "--ca",
            str(ident.ca),
            "--cert",
            str(ident.cert),
            "--key",
            str(ident.key),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    channel, stub = connect(sock)
    frame = inference_pb2.Frame(
        image=(Path(__file__).parents[2] / "modelpack/data/images/coffee.png").read_bytes()
    )

    def served_version() -> str:
        try:
            return stub.Classify(
                inference_pb2.ClassifyRequest(model=NAME, frame=frame, top_k=1), timeout=5
            ).served.version
        except grpc.RpcError:
            return ""

    try:
        assert wait_for(served_version, what="1.0.0 served") == "1.0.0"
        publish_released(reg, NAME, "1.0.1", successor(squeezenet_bytes, 1))
        wait_for(lambda: served_version() == "1.0.1", what="1.0.1 served")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        channel.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "installed 1.0.1 (was 1.0.0)" in out
    assert [r.status for r in reg.store.list_reports("svc-1")][-3:] == [
        "downloading",
        "installed",
        "confirmed",
    ]
    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "ota.cli",
            "agent",
            "status",
            "--state",
            str(tmp_path / "state"),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    model = json.loads(status.stdout)["models"][NAME]
    assert model["update"] == {"state": "confirmed", "version": "1.0.1", "reason": ""}
    assert model["slots"][model["active"]]["version"] == "1.0.1"


def test_agent_infer_waits_as_long_as_timeout_says(sock) -> None:
    """``ota agent infer --timeout``: an agent slower than the default 10 s (ONNX Runtime under
    qemu on a build host, ``make embedded-arm64``) still answers; too short a wait says so."""
    from concurrent import futures

    from modelpack.imaging import IMAGES_DIR
    from otawire.v1 import inference_pb2_grpc
    from tests.cli_helpers import ota_cli

    class Slow(inference_pb2_grpc.InferenceServicer):
        def Classify(self, request, context):
            time.sleep(1.5)
            return inference_pb2.ClassifyResponse(
                served=inference_pb2.Served(model=request.model, version="1.0.0"),
                classes=[inference_pb2.ClassScore(class_id=967, label="espresso", prob=0.9)],
                inference_ms=1400.0,
            )

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    inference_pb2_grpc.add_InferenceServicer_to_server(Slow(), server)
    server.add_insecure_port(f"unix:{sock}")
    server.start()
    photo = str(IMAGES_DIR / "coffee.png")
    try:
        late = ota_cli(
            "agent",
            "infer",
            "--socket",
            str(sock),
            "--model",
            NAME,
            "--timeout",
            "0.3",
            photo,
            ok=False,
        )
        assert "DEADLINE_EXCEEDED" in late, late
        out = ota_cli(
            "agent", "infer", "--socket", str(sock), "--model", NAME, "--timeout", "30", photo
        )
        assert "espresso" in out and "967" in out, out
    finally:
        server.stop(None)
