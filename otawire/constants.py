"""Limits and closed sets the registry and the vehicle agent agree on."""

from __future__ import annotations

from otawire.v1 import ota_pb2

# One PostgreSQL blob row (and an upload chunk).
CHUNK_SIZE = 256 * 1024
# One message of a Download stream. The agent resumes from the last whole message, so
# the part of the message in flight at a cut is lost: 32 KiB is half a second of a
# 0.5 Mbit/s link (256 KiB was four), at ~15 B of framing a message.
MESSAGE_BYTES = 32 * 1024
# Every message is a chunk or a small record; anything larger is refused on both ends.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

# The gRPC services, by their names on the wire.
VEHICLE_SERVICE = "ota.v1.Vehicle"
PUBLISHER_SERVICE = "ota.v1.Publisher"
CAMPAIGNS_SERVICE = "ota.v1.Campaigns"

# FileKind values and the names the registry uses for them.
FILE_KINDS: dict[int, str] = {
    ota_pb2.FILE_KIND_METADATA: "metadata",
    ota_pb2.FILE_KIND_TARGET: "target",
    ota_pb2.FILE_KIND_ENCODING: "encoding",
}


def install_status_name(value: int) -> str:
    """``INSTALL_STATUS_FAILED`` (its number) -> ``"failed"``, the name reports are stored under."""
    return ota_pb2.InstallStatus.Name(value).removeprefix("INSTALL_STATUS_").lower()
