"""The gRPC-over-HTTP/2 server of the ext_authz port (geogate.service.grpc_wire): calls from a
real gRPC client (grpcio), from an HTTP/2 client that sends what gRPC clients never do (h2),
raw frames from hostile peers on loopback, and random frames fed to the protocol in process."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from hpack import Decoder, Encoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.service.http2_frames import MemoryTransport, frame, grpc_message, whole_frames
from tests.service.support import LoopThread

from geogate.service import grpc_wire
from geogate.service.grpc_wire import (
    INVALID_ARGUMENT,
    PREFACE,
    CallError,
    GrpcProtocol,
    GrpcServer,
    UnaryMethod,
)

ECHO = "/test.Echo/Echo"
LIMIT = 4096


def _fail(data: bytes) -> bytes:
    raise CallError(INVALID_ARGUMENT, "bad request ✓ 100%")


def _bug(data: bytes) -> bytes:
    raise RuntimeError("a bug")


REFUSED: list[str] = []  # what the server counts as refused (its on_refused hook)

METHODS = {
    ECHO: UnaryMethod(lambda data: data[::-1]),
    "/test.Echo/Fail": UnaryMethod(_fail),
    "/test.Echo/Bug": UnaryMethod(_bug),
}


@pytest.fixture(scope="module")
def server() -> Iterator[GrpcServer]:
    loop = LoopThread()
    srv = GrpcServer(
        METHODS, host="127.0.0.1", port=0, max_message_bytes=LIMIT, on_refused=REFUSED.append
    )
    loop.run(srv.start())
    try:
        yield srv
    finally:
        loop.run(srv.stop(0))
        loop.close()


@pytest.fixture(scope="module")
def channel(server: GrpcServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as chan:
        yield chan


def call(channel: grpc.Channel, method: str, data: bytes) -> bytes:
    stub = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    result: bytes = stub(data, timeout=5)
    return result


# -- a real gRPC client -----------------------------------------------------------------------


def test_calls_from_grpcio(channel: grpc.Channel) -> None:
    assert call(channel, ECHO, b"abc") == b"cba"
    assert call(channel, ECHO, b"") == b""
    stub = channel.unary_unary(ECHO, request_serializer=None, response_deserializer=None)
    futures = [stub.future(f"{i:05d}".encode() * 50, timeout=10) for i in range(300)]
    for i, future in enumerate(futures):
        assert future.result() == (f"{i:05d}".encode() * 50)[::-1]


def test_unknown_method_is_unimplemented(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call(channel, "/test.Echo/Nothing", b"x")
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "/test.Echo/Nothing" in caught.value.details()


def test_handler_status_and_message_reach_the_client(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call(channel, "/test.Echo/Fail", b"x")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "bad request ✓ 100%"  # percent-encoded on the wire


def test_handler_bug_fails_its_call_only(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call(channel, "/test.Echo/Bug", b"x")
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert call(channel, ECHO, b"still") == b"llits"


def test_message_over_the_limit_is_resource_exhausted(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call(channel, ECHO, b"x" * (LIMIT + 1))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert call(channel, ECHO, b"y" * LIMIT) == b"y" * LIMIT


# -- an HTTP/2 client sending what gRPC clients do not -----------------------------------------


class H2Client:
    """A blocking h2 client on a loopback socket."""

    def __init__(self, port: int, **local_settings: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.conn.initiate_connection()
        if local_settings:
            self.conn.update_settings(
                {getattr(h2.settings.SettingCodes, k): v for k, v in local_settings.items()}
            )
        self.send()

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def request(self, data: bytes, *, content_type: bytes = b"application/grpc") -> int:
        stream = self.conn.get_next_available_stream_id()
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", ECHO.encode()),
            (b":authority", b"test"),
            (b"content-type", content_type),
            (b"te", b"trailers"),
        ]
        self.conn.send_headers(stream, headers)
        self.conn.send_data(stream, data, end_stream=True)
        self.send()
        return stream

    def response(self, stream: int) -> tuple[dict[bytes, bytes], bytes, dict[bytes, bytes]]:
        """(headers, body, trailers) of ``stream``, giving window back as data arrives."""
        headers: dict[bytes, bytes] = {}
        trailers: dict[bytes, bytes] = {}
        body = b""
        while True:
            data = self.sock.recv(65536)
            assert data, "connection closed"
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                    headers = dict(event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                    if event.stream_id == stream:
                        body += event.data
                elif isinstance(event, h2.events.TrailersReceived) and event.stream_id == stream:
                    trailers = dict(event.headers)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                    self.send()
                    return headers, body, trailers
            self.send()


def test_not_grpc_gets_415(server: GrpcServer) -> None:
    with H2Client(server.port) as client:
        stream = client.request(b"{}", content_type=b"application/json")
        headers, body, _ = client.response(stream)
        assert headers[b":status"] == b"415"
        assert body == b""


def test_compressed_message_is_unimplemented(server: GrpcServer) -> None:
    with H2Client(server.port) as client:
        # trailers-only: the status arrives in the one HEADERS frame, with no message
        headers, body, _ = client.response(client.request(grpc_message(b"abc", flag=1)))
        assert headers[b"grpc-status"] == b"12"
        assert body == b""


def test_truncated_and_doubled_messages(server: GrpcServer) -> None:
    with H2Client(server.port) as client:
        headers, _, _ = client.response(client.request(grpc_message(b"abcdef")[:-2]))
        assert headers[b"grpc-status"] == b"13"  # INTERNAL: shorter than its prefix
        headers, _, _ = client.response(client.request(grpc_message(b"a") + grpc_message(b"b")))
        assert headers[b"grpc-status"] == b"12"  # two messages on a unary call


def test_response_waits_for_a_small_client_window(server: GrpcServer) -> None:
    with H2Client(server.port, INITIAL_WINDOW_SIZE=7) as client:
        payload = bytes(range(256)) * 12  # 3,072 bytes against a 7-byte stream window
        headers, body, trailers = client.response(client.request(grpc_message(payload)))
        assert headers[b":status"] == b"200"
        assert body == grpc_message(payload[::-1])
        assert trailers[b"grpc-status"] == b"0"


# -- raw frames ---------------------------------------------------------------------------------


def read_frames(sock: socket.socket, seconds: float = 5.0) -> list[tuple[int, int, int, bytes]]:
    """Every frame the server sends until it closes the connection (or ``seconds`` pass)."""
    sock.settimeout(0.2)
    data = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            break
        data += chunk
    frames = []
    while len(data) >= 9:
        n = int.from_bytes(data[:3], "big")
        frames.append((data[3], data[4], int.from_bytes(data[5:9], "big"), data[9 : 9 + n]))
        data = data[9 + n :]
    return frames


def raw(port: int, data: bytes, *, preface: bool = True, seconds: float = 5.0) -> list[Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall((PREFACE + frame(4, 0, 0) if preface else b"") + data)
        return read_frames(sock, seconds)


def goaway_code(frames: list[Any]) -> int | None:
    codes = [int.from_bytes(p[4:8], "big") for kind, _, _, p in frames if kind == 7]
    return codes[-1] if codes else None


GRPC_HEADERS = Encoder().encode(
    [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", ECHO.encode()),
        (b":authority", b"test"),
        (b"content-type", b"application/grpc"),
    ]
)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(0, 0, 0, b"x"), 0x1),  # DATA on stream 0
        (frame(1, 4, 2, GRPC_HEADERS), 0x1),  # HEADERS on an even stream
        (frame(9, 4, 1, GRPC_HEADERS), 0x1),  # CONTINUATION without HEADERS
        (frame(8, 0, 0, b"\x00\x00\x00\x00"), 0x1),  # WINDOW_UPDATE of 0
        (frame(8, 0, 0, b"\x7f\xff\xff\xff"), 0x3),  # window over 2^31-1
        (frame(5, 4, 1, b"\x00\x00\x00\x02"), 0x1),  # PUSH_PROMISE from a client
        (frame(6, 0, 0, b"1234"), 0x6),  # PING not 8 bytes
        (frame(4, 0, 0, b"12345"), 0x6),  # SETTINGS not a multiple of 6
        (b"\x00\x50\x00\x00\x00\x00\x00\x00\x01", 0x6),  # a 20 KiB frame
        (frame(1, 4, 1, b"\xff\xff\xff\xff\x0f"), 0x9),  # HPACK index not in any table
        (frame(1, 0, 1, GRPC_HEADERS) + frame(0, 1, 1, b""), 0x1),  # block interrupted
        (frame(1, 0, 1, b"") + frame(9, 0, 1, b"\x00" * 16384) * 5, 0xB),  # CONTINUATION flood
        (frame(0, 1, 3, grpc_message(b"x")), 0x1),  # DATA on an idle stream
    ],
)
def test_protocol_errors_end_the_connection_with_goaway(
    server: GrpcServer, data: bytes, code: int
) -> None:
    assert goaway_code(raw(server.port, data)) == code
    assert raw(server.port, b"", seconds=0.3)  # the server still takes connections


def test_not_a_preface(server: GrpcServer) -> None:
    frames = raw(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", preface=False)
    assert goaway_code(frames) == 0x1


def test_ping_is_answered(server: GrpcServer) -> None:
    frames = raw(server.port, frame(6, 0, 0, b"pingpong"), seconds=0.5)
    assert (6, 1, 0, b"pingpong") in frames


def test_padding_priority_and_continuation(server: GrpcServer) -> None:
    half = len(GRPC_HEADERS) // 2
    padded = bytes([3]) + b"\x00\x00\x00\x00\x10" + GRPC_HEADERS[:half] + b"\x00" * 3
    data = (
        frame(1, 0x8 | 0x20, 1, padded)  # PADDED | PRIORITY, no END_HEADERS
        + frame(9, 4, 1, GRPC_HEADERS[half:])
        + frame(0, 0x8 | 0x1, 1, bytes([2]) + grpc_message(b"hello") + b"\x00\x00")
    )
    frames = raw(server.port, data, seconds=0.5)
    bodies = [p for kind, _, stream, p in frames if kind == 0 and stream == 1]
    assert bodies == [grpc_message(b"olleh")]


def test_remembered_header_blocks_follow_the_dynamic_table(server: GrpcServer) -> None:
    """An indexed-only block means other headers once a later block changed the table: the
    server must decode it again, not answer from what it remembered."""
    path = ECHO.encode()
    ctype = b"application/grpc"
    first = b"\x83\x5f" + bytes([len(ctype)]) + ctype + b"\x44" + bytes([len(path)]) + path
    indexed = b"\x83\xbe\xbf"  # POST, [62] = :path, [63] = content-type
    other = b"/test.Echo/Fail"
    change = b"\x83\xbf\x44" + bytes([len(other)]) + other  # inserts a new :path at 62

    def on(stream: int, block: bytes) -> bytes:
        return frame(1, 4, stream, block) + frame(0, 1, stream, grpc_message(b"ab"))

    data = on(1, first) + on(3, indexed) + on(5, change) + on(7, indexed)
    frames = raw(server.port, data, seconds=0.5)
    answered = {stream: p for kind, _, stream, p in frames if kind == 0}
    assert answered[1] == answered[3] == grpc_message(b"ba")  # Echo twice
    status = {
        stream: dict(Decoder().decode(p, raw=True))
        for kind, flags, stream, p in frames
        if kind == 1 and flags & 1  # the HEADERS frames that end a stream
    }
    assert status[5][b"grpc-status"] == str(INVALID_ARGUMENT).encode()  # the Fail method
    # Stream 7's indexed block now names two paths and no content type: not gRPC.
    assert status[7] == {b":status": b"415"}
    assert 7 not in answered


def test_frames_in_flight_on_a_stream_answered_early_are_dropped(server: GrpcServer) -> None:
    """A call refused before its request ended (unknown method) is reset; the DATA and the
    trailers the client had already sent on it are dropped, and the connection goes on."""
    unknown = Encoder().encode(
        [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/test.Echo/Nothing"),
            (b":authority", b"test"),
            (b"content-type", b"application/grpc"),
        ]
    )
    trailers = Encoder().encode([(b"x-trailer", b"1")])
    data = (
        frame(1, 4, 1, unknown)
        + frame(0, 0, 1, grpc_message(b"abc"))
        + frame(1, 4 | 1, 1, trailers)
        + frame(1, 4, 3, GRPC_HEADERS)
        + frame(0, 1, 3, grpc_message(b"abc"))
    )
    frames = raw(server.port, data, seconds=0.5)
    assert goaway_code(frames) is None
    resets = {stream: int.from_bytes(p, "big") for kind, _, stream, p in frames if kind == 3}
    assert resets == {1: 0}  # NO_ERROR: answered, stop sending
    assert [p for kind, _, stream, p in frames if kind == 0 and stream == 3] == [
        grpc_message(b"cba")
    ]
    # Trailers on a stream that was never opened stay a protocol error.
    never_opened = frame(1, 4, 5, GRPC_HEADERS) + frame(1, 4 | 1, 3, trailers)
    assert goaway_code(raw(server.port, never_opened)) == 0x1


def test_refusals_are_counted_by_kind(server: GrpcServer, channel: grpc.Channel) -> None:
    REFUSED.clear()
    with pytest.raises(grpc.RpcError):
        call(channel, "/test.Echo/Nothing", b"x")
    with pytest.raises(grpc.RpcError):
        call(channel, ECHO, b"x" * (LIMIT + 1))
    with H2Client(server.port) as client:
        client.response(client.request(b"{}", content_type=b"application/json"))
    raw(server.port, frame(0, 0, 0, b"x"))
    assert call(channel, ECHO, b"fine") == b"enif"  # answered calls are not counted
    assert sorted(REFUSED) == sorted(
        ["unimplemented", "resource_exhausted", "not_grpc", "http2_protocol_error"]
    )


def test_streams_beyond_the_limit_are_refused(
    server: GrpcServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(grpc_wire, "MAX_CONCURRENT_STREAMS", 2)
    data = b"".join(frame(1, 4, stream, GRPC_HEADERS) for stream in (1, 3, 5))
    frames = raw(server.port, data, seconds=0.5)
    resets = {stream: int.from_bytes(p, "big") for kind, _, stream, p in frames if kind == 3}
    assert resets == {5: 0x7}  # REFUSED_STREAM


def test_unfinished_calls_cannot_hold_unbounded_memory(
    server: GrpcServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(grpc_wire, "MAX_CONNECTION_BUFFER", 100)
    body = grpc_message(b"x" * 55)  # 60 bytes
    finished = b"".join(
        frame(1, 4, stream, GRPC_HEADERS) + frame(0, 1, stream, body) for stream in (1, 3, 5, 7)
    )
    frames = raw(server.port, finished, seconds=0.5)
    assert len([f for f in frames if f[0] == 0]) == 4  # finished calls release what they held
    assert goaway_code(frames) is None
    unfinished = b"".join(
        frame(1, 4, stream, GRPC_HEADERS) + frame(0, 0, stream, body) for stream in (1, 3)
    )
    assert goaway_code(raw(server.port, unfinished)) == 0xB


def test_silent_connections_are_closed(server: GrpcServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grpc_wire, "HANDSHAKE_SECONDS", 0.2)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        started = time.monotonic()
        frames = read_frames(sock, seconds=3)
        assert time.monotonic() - started < 2.5  # closed by the server, not the deadline
    assert frames
    assert frames[0][0] == 4  # its SETTINGS, then nothing


# -- random frames in process -----------------------------------------------------------------


frames_strategy = st.lists(
    st.builds(
        frame,
        st.integers(0, 10),
        st.integers(0, 255),
        st.sampled_from([0, 1, 2, 3, 5, 2**31 - 1]),
        st.binary(max_size=64),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=frames_strategy, chunk=st.integers(1, 64))
def test_random_frames_never_escape_the_protocol(frames: list[bytes], chunk: int) -> None:
    """Whatever arrives, in whatever pieces, the protocol answers or closes with GOAWAY; no
    exception reaches the event loop (which would log a traceback)."""

    async def feed() -> MemoryTransport:
        transport = MemoryTransport()
        protocol = GrpcProtocol(
            {ECHO.encode(): METHODS[ECHO]}, connections=set(), max_message_bytes=LIMIT
        )
        protocol.connection_made(transport)  # type: ignore[arg-type]
        data = PREFACE + frame(4, 0, 0) + b"".join(frames)
        for at in range(0, len(data), chunk):
            if transport.closed:
                break
            protocol.data_received(data[at : at + chunk])
        protocol.connection_lost(None)
        return transport

    transport = asyncio.run(feed())
    assert whole_frames(bytes(transport.written))
