"""HTTP/2 and gRPC wire pieces for the gRPC port's tests and its long fuzz run
(scripts/fuzz_grpc_wire.py): raw frames, length-prefixed messages, and an in-memory transport
for feeding :class:`~geogate.service.grpc_wire.GrpcProtocol` without a socket."""

from __future__ import annotations

from typing import Any


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame (RFC 9113 section 4.1)."""
    head = len(payload).to_bytes(3, "big") + bytes((kind, flags))
    return head + stream.to_bytes(4, "big") + payload


def grpc_message(data: bytes, flag: int = 0) -> bytes:
    """A length-prefixed gRPC message (``flag`` 1: compressed)."""
    return bytes([flag]) + len(data).to_bytes(4, "big") + data


class MemoryTransport:
    """What a protocol writes, kept in memory; ``closed`` once it closes the connection."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def get_extra_info(self, name: str) -> Any:
        return None

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def whole_frames(data: bytes) -> bool:
    """Whether ``data`` is a sequence of complete frames."""
    at = 0
    while at < len(data):
        if len(data) - at < 9:
            return False
        at += 9 + int.from_bytes(data[at : at + 3], "big")
    return at == len(data)
