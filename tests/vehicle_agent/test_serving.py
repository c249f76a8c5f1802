"""Serving over gRPC on a real Unix socket, hot swap under load, and the health window."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest

from modelpack.imaging import IMAGES_DIR, load_image, preprocess
from modelpack.runtime import read_model_info
from otawire.v1 import inference_pb2
from testkit.helpers import publish_released
from testkit.variants import nan_on_dark_frames, successor
from vehicle_agent.health import HealthPolicy
from vehicle_agent.serving import connect, tensor_frame

NAME = "squeezenet1.0"


@pytest.fixture
def chelsea(squeezenet_bytes: bytes) -> np.ndarray:
    info = read_model_info(squeezenet_bytes)
    assert info is not None
    return preprocess(load_image(IMAGES_DIR / "chelsea.png"), info.preprocessing)


def test_classify_over_unix_socket_with_image_and_tensor(
    registry_server, make_agent, squeezenet_bytes, sock, chelsea
) -> None:
    publish_released(registry_server.registry, NAME, "1.0.0", squeezenet_bytes)
    agent = make_agent()
    agent.update_once()
    server = agent.serve(sock)
    channel, stub = connect(sock)
    try:
        by_image = stub.Classify(
            inference_pb2.ClassifyRequest(
                model=NAME,
                frame=inference_pb2.Frame(image=(IMAGES_DIR / "coffee.png").read_bytes()),
                top_k=1,
            ),
            timeout=10,
        )
        by_tensor = stub.Classify(
            inference_pb2.ClassifyRequest(model=NAME, frame=tensor_frame(chelsea), top_k=3),
            timeout=10,
        )
        served = stub.ListServed(inference_pb2.ListServedRequest(), timeout=10)

        assert by_image.classes[0].label == "espresso" and by_image.served.version == "1.0.0"
        assert by_tensor.classes[0].class_id == 285 and len(by_tensor.classes) == 3
        assert by_tensor.served.sha256 == agent.installed()[NAME].sha256
        [m] = served.models
        assert (m.served.model, m.kind, m.update_state, m.requests, m.errors) == (
            NAME,
            inference_pb2.MODEL_KIND_CLASSIFIER,
            inference_pb2.UPDATE_STATE_CONFIRMED,
            2,
            0,
        )
        with pytest.raises(grpc.RpcError) as e:
            stub.Classify(
                inference_pb2.ClassifyRequest(
                    model=NAME, frame=inference_pb2.Frame(image=b"not a png")
                ),
                timeout=10,
            )
        assert (
            e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            and "not a readable image" in e.value.details()
        )
        with pytest.raises(grpc.RpcError) as e:
            stub.Classify(
                inference_pb2.ClassifyRequest(model=NAME, frame=tensor_frame(chelsea[:, :, :10])),
                timeout=10,
            )
        assert (
            e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            and "does not match" in e.value.details()
        )
        with pytest.raises(grpc.RpcError) as e:
            stub.Classify(
                inference_pb2.ClassifyRequest(model="alexnet", frame=tensor_frame(chelsea)),
                timeout=10,
            )
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        # Client mistakes do not count against the model's health.
        assert stub.ListServed(inference_pb2.ListServedRequest(), timeout=10).models[0].errors == 0
    finally:
        channel.close()
        server.stop(None)


def test_hot_swap_under_load_fails_no_request(
    registry_server, make_agent, squeezenet_bytes, sock, chelsea
) -> None:
    reg = registry_server.registry
    publish_released(reg, NAME, "1.0.0", squeezenet_bytes)
    agent = make_agent()
    agent.update_once()
    server = agent.serve(sock)
    stop = threading.Event()
    seen: list[list[str]] = [[] for _ in range(3)]
    failures: list[str] = []
    top1: set[int] = set()

    def client(i: int) -> None:
        channel, stub = connect(sock)
        req = inference_pb2.ClassifyRequest(model=NAME, frame=tensor_frame(chelsea), top_k=1)
        while not stop.is_set():
            try:
                r = stub.Classify(req, timeout=10)
            except grpc.RpcError as e:
                failures.append(f"{e.code().name}: {e.details()}")
                continue
            top1.add(r.classes[0].class_id)
            if not seen[i] or seen[i][-1] != r.served.version:
                seen[i].append(r.served.version)
        channel.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        for n in (1, 2, 3):
            publish_released(reg, NAME, f"1.0.{n}", successor(squeezenet_bytes, n))
            [o] = agent.update_once()
            assert o.status == "installed", o.reason
        # Let every client make a request after the last swap (a loaded machine may be slow to).
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(v and v[-1] == "1.0.3" for v in seen):
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join()
        server.stop(None)

    assert failures == []
    assert top1 == {285}
    for versions in seen:  # each client saw the versions in order, never an older one again
        assert versions == sorted(versions) and versions[-1] == "1.0.3"


def test_health_window_rolls_back_a_model_that_fails_on_real_frames(
    registry_server, make_agent, squeezenet_bytes, sock, chelsea
) -> None:
    reg = registry_server.registry
    publish_released(reg, NAME, "1.0.0", squeezenet_bytes)
    make_agent(state="s").update_once()  # 1.0.0 installed and confirmed
    agent = make_agent(
        state="s", health=HealthPolicy(window_s=60.0)
    )  # restarted with a real window
    publish_released(reg, NAME, "1.0.1", nan_on_dark_frames(squeezenet_bytes))
    server = agent.serve(sock)
    channel, stub = connect(sock)
    dark = tensor_frame(
        np.full_like(chelsea, -110.0)
    )  # a night frame: mean below the preprocessing mean
    try:
        [o] = agent.update_once()  # passes its self-test (bright golden input) and goes live
        assert (o.status, o.state, o.version) == ("installed", "active", "1.0.1")
        ok = stub.Classify(
            inference_pb2.ClassifyRequest(model=NAME, frame=tensor_frame(chelsea)), timeout=10
        )
        assert ok.served.version == "1.0.1"
        with pytest.raises(grpc.RpcError) as e:
            stub.Classify(inference_pb2.ClassifyRequest(model=NAME, frame=dark), timeout=10)
        assert e.value.code() == grpc.StatusCode.INTERNAL and "NaN" in e.value.details()

        [entry] = agent.poll()  # the next health check, well inside the 60 s window

        assert entry.state == "rolled_back" and "NaN" in entry.reason
        back = stub.Classify(inference_pb2.ClassifyRequest(model=NAME, frame=dark), timeout=10)
        assert back.served.version == "1.0.0"
        assert agent.slots.load()[NAME].active == "a"
        last = reg.store.list_reports("car-1")[-1]
        assert (last.status, last.version, last.active_version) == ("rolled_back", "1.0.1", "1.0.0")
        assert "NaN" in last.reason
        targets_before = sum(d.kind == "target" for d in reg.downloads)
        assert agent.update_once() == []  # the bad version is never fetched again
        assert sum(d.kind == "target" for d in reg.downloads) == targets_before
    finally:
        channel.close()
        server.stop(None)


def test_detect_over_unix_socket_with_squeezedet(registry_server, make_agent, sock) -> None:
    from modelpack import zoo

    data = zoo.build(
        "squeezedet"
    )  # real fire3..9 weights, seeded detection head (labelled untrained)
    publish_released(registry_server.registry, "squeezedet", "1.0.0", data)
    agent = make_agent()
    [o] = agent.update_once()
    assert o.status == "installed", o.reason
    server = agent.serve(sock)
    channel, stub = connect(sock)
    road = (IMAGES_DIR / "kitti_road.png").read_bytes()
    try:
        r = stub.Detect(
            inference_pb2.DetectRequest(model="squeezedet", frame=inference_pb2.Frame(image=road)),
            timeout=30,
        )
        assert r.served.version == "1.0.0" and r.inference_ms > 0 and len(r.boxes) > 0
        assert len(
            stub.Detect(
                inference_pb2.DetectRequest(
                    model="squeezedet", frame=inference_pb2.Frame(image=road), min_score=0.9
                ),
                timeout=30,
            ).boxes
        ) < len(r.boxes)
        width, height = load_image(IMAGES_DIR / "kitti_road.png").size
        for b in r.boxes:  # boxes in the frame's own pixels, labels from the package's label set
            assert 0 <= b.xmin <= b.xmax <= width + 1 and 0 <= b.ymin <= b.ymax <= height + 1
            assert b.label in {"car", "pedestrian", "cyclist"}
        with pytest.raises(grpc.RpcError) as e:
            stub.Classify(
                inference_pb2.ClassifyRequest(
                    model="squeezedet", frame=inference_pb2.Frame(image=road)
                ),
                timeout=30,
            )
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        channel.close()
        server.stop(None)
