"""gRPC unary calls over HTTP/2 on the service's event loop, for Envoy's ext_authz.

Envoy's ext_authz client makes one unary call per request, ``Authorization/Check``, over a
cleartext HTTP/2 connection it keeps open (prior knowledge, many calls multiplexed). Served by
grpcio, a call cost about 250 µs of CPU in grpcio's per-call machinery (completion queues, a
thread hand-off under the GIL): three times a whole HTTP ext_authz check, for a decision of
about 1 µs. The pure-Python ``h2`` state machine was measured at 100-125 µs per call. This
module is the small part of HTTP/2 (RFC 9113) that a unary gRPC server needs, in an
:class:`asyncio.Protocol` on the loop uvicorn already runs; a call is decided inline when its
request stream ends, with no task, thread or future per call (bench/RESULTS.md).

- Header blocks are decoded by the ``hpack`` library. A block that leaves the dynamic table
  unchanged (only indexed and non-indexed fields: every Envoy check after the first) is
  remembered with its headers until the table changes, so the common call decodes nothing.
- Responses use constant header blocks (static-table and never-indexed fields), so geogate's
  encoder has no dynamic table and encodes nothing per call.
- Flow control both ways: windows are given back as data is read (a call's size is capped by
  ``max_message_bytes``); a response waits for window; reading pauses while the peer does not
  read what is written.
- gRPC (the PROTOCOL-HTTP2 document of the gRPC project): ``POST``, ``content-type:
  application/grpc[+...]``, one length-prefixed message; ``grpc-timeout`` is accepted and
  ignored (a check never waits). Unknown method or a compressed message -> UNIMPLEMENTED;
  not gRPC -> HTTP 415; bad framing -> INTERNAL; over ``max_message_bytes`` ->
  RESOURCE_EXHAUSTED; the handler's own :class:`CallError` -> its status.
- Hostile peers: any HTTP/2 protocol error (bad preface, frame sizes, stream ids, a HEADERS
  block over 64 KiB across CONTINUATION frames, a broken HPACK block, window overflow,
  unfinished calls holding over ``MAX_CONNECTION_BUFFER`` bytes) ends the connection with
  GOAWAY and one log line; a stream beyond ``MAX_CONCURRENT_STREAMS`` is
  refused; a connection that sends no preface within ``HANDSHAKE_SECONDS`` is closed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast
from urllib.parse import quote

from hpack import Decoder, Encoder, HPACKError, NeverIndexedHeaderTuple

log = logging.getLogger("geogate.service")

# gRPC status codes (google.rpc.Code)
OK = 0
INVALID_ARGUMENT = 3
RESOURCE_EXHAUSTED = 8
UNIMPLEMENTED = 12
INTERNAL = 13

MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # grpc's default receive limit
MAX_CONCURRENT_STREAMS = 1024
MAX_HEADER_BLOCK = 64 * 1024  # one request's header block, CONTINUATION frames included
MAX_HEADER_LIST = 16 * 1024  # decoded, as HPACK counts it (advertised)
MAX_CONNECTION_BUFFER = 32 * 1024 * 1024  # request bytes held for unfinished calls, per connection
HANDSHAKE_SECONDS = 10.0

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types and flags (RFC 9113 section 6)
_DATA, _HEADERS, _PRIORITY, _RST_STREAM, _SETTINGS = 0, 1, 2, 3, 4
_PUSH_PROMISE, _PING, _GOAWAY, _WINDOW_UPDATE, _CONTINUATION = 5, 6, 7, 8, 9
_END_STREAM = _ACK = 0x1
_END_HEADERS = 0x4
_PADDED = 0x8
_PRIORITY_FLAG = 0x20

# Error codes (RFC 9113 section 7)
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
FLOW_CONTROL_ERROR = 0x3
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB

_DEFAULT_WINDOW = 65_535
_MAX_WINDOW = (1 << 31) - 1
_FRAME_LIMIT = 16_384  # the largest frame geogate accepts (SETTINGS_MAX_FRAME_SIZE default)
_STREAM_WINDOW = 1 << 20  # what geogate gives each stream (SETTINGS_INITIAL_WINDOW_SIZE)
_CONNECTION_WINDOW = 1 << 24


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload
    )


def _block(headers: list[tuple[bytes, bytes]]) -> bytes:
    """A header block that touches no dynamic table (indexed static fields and never-indexed
    literals), so the same bytes can be sent on any connection at any time."""
    fields = [h if h == (b":status", b"200") else NeverIndexedHeaderTuple(*h) for h in headers]
    block: bytes = Encoder().encode(fields, huffman=False)
    return block


_RESPONSE_BLOCK = _block([(b":status", b"200"), (b"content-type", b"application/grpc")])
_TRAILERS_OK = _block([(b"grpc-status", b"0")])
_NOT_GRPC_BLOCK = _block([(b":status", b"415")])
_SETTINGS_FRAME = _frame(
    _SETTINGS,
    0,
    0,
    b"".join(
        key.to_bytes(2, "big") + value.to_bytes(4, "big")
        for key, value in (
            (0x3, MAX_CONCURRENT_STREAMS),
            (0x4, _STREAM_WINDOW),
            (0x6, MAX_HEADER_LIST),
        )
    ),
) + _frame(_WINDOW_UPDATE, 0, 0, (_CONNECTION_WINDOW - _DEFAULT_WINDOW).to_bytes(4, "big"))
_SETTINGS_ACK = _frame(_SETTINGS, _ACK, 0)


# Calls refused before a decision, as counted by ``on_refused``.
_STATUS_NAMES: Final = {
    INVALID_ARGUMENT: "invalid_argument",
    RESOURCE_EXHAUSTED: "resource_exhausted",
    UNIMPLEMENTED: "unimplemented",
    INTERNAL: "internal",
}


class CallError(Exception):
    """A call ends with gRPC status ``code`` and ``message`` (no response message)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _ConnectionError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class UnaryMethod:
    """A unary method: the request message's bytes in, the serialized response out
    (:class:`CallError` for a call that must end with another status)."""

    handle: Callable[[bytes], bytes]


class _Call:
    """A request stream still receiving."""

    __slots__ = ("body", "method", "size", "window")

    def __init__(self, method: UnaryMethod | None) -> None:
        self.method = method
        self.body: list[bytes] = []
        self.size = 0
        self.window = _STREAM_WINDOW


def _trailers_block(code: int, message: str) -> bytes:
    # grpc-message is percent-encoded: any byte outside printable ASCII, and "%".
    text = quote(message[:512], safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")
    return _block([(b"grpc-status", str(code).encode()), (b"grpc-message", text.encode())])


def _unframe(data: bytes, limit: int) -> bytes:
    """The one message of a unary request body (5-byte prefix: compressed flag, length)."""
    if len(data) < 5:
        raise CallError(INTERNAL, "request body is not a length-prefixed gRPC message")
    if data[0] != 0:
        if data[0] == 1:
            raise CallError(UNIMPLEMENTED, "compressed messages are not supported")
        raise CallError(INTERNAL, f"invalid gRPC message flag {data[0]}")
    length = int.from_bytes(data[1:5], "big")
    if length > limit:
        raise CallError(RESOURCE_EXHAUSTED, f"request message over {limit} bytes")
    if len(data) != 5 + length:
        if len(data) < 5 + length:
            raise CallError(INTERNAL, "request message shorter than its length prefix")
        raise CallError(UNIMPLEMENTED, "more than one request message on a unary call")
    return data[5:]


def _integer(block: bytes, i: int, prefix: int) -> tuple[int, int]:
    """An HPACK integer with a ``prefix``-bit prefix at ``block[i]``: (value, next index)."""
    mask = (1 << prefix) - 1
    value = block[i] & mask
    i += 1
    if value < mask:
        return value, i
    shift = 0
    while True:
        byte = block[i]
        i += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _leaves_table_alone(block: bytes) -> bool:
    """True when decoding ``block`` cannot change the HPACK dynamic table: only indexed fields
    and literals without (or never) indexing (RFC 7541 section 6). Called on blocks that
    decoded without error."""
    i, n = 0, len(block)
    while i < n:
        first = block[i]
        if first & 0x80:  # indexed field
            _, i = _integer(block, i, 7)
        elif first & 0xE0 in (0x40, 0x60, 0x20):  # incremental indexing, table size update
            return False
        else:  # literal without indexing (0000) or never indexed (0001)
            name, i = _integer(block, i, 4)
            if name == 0:
                length, i = _integer(block, i, 7)
                i += length
            length, i = _integer(block, i, 7)
            i += length
    return True


def _is_grpc(content_type: bytes) -> bool:
    kind = content_type.split(b";", 1)[0].strip().lower()
    return kind == b"application/grpc" or kind.startswith(b"application/grpc+")


class GrpcProtocol(asyncio.Protocol):
    """One HTTP/2 connection carrying gRPC unary calls to ``methods`` (by path)."""

    def __init__(
        self,
        methods: dict[bytes, UnaryMethod],
        *,
        connections: set[GrpcProtocol],
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.methods = methods
        self.connections = connections
        self.max_message_bytes = max_message_bytes
        self.on_refused = on_refused
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self._buffer = b""
        self._preface = False  # the client preface and its SETTINGS were read
        self._decoder = Decoder()
        self._decoder.max_header_list_size = MAX_HEADER_LIST
        self._remembered: dict[bytes, list[tuple[bytes, bytes]]] = {}
        self._calls: dict[int, _Call] = {}
        self._held = 0  # request bytes of the calls in self._calls
        self._last_stream = 0
        self._block_stream = 0  # a header block continues on this stream (CONTINUATION)
        self._block_parts: list[bytes] = []
        self._block_size = 0
        self._block_ends_stream = False
        self._block_dropped = False
        # Streams answered and reset before their request ended (the newest 1,024): the
        # peer's frames already in flight on them are dropped, not a protocol error.
        self._cut: dict[int, None] = {}
        self._out: list[bytes] = []
        self._send_window = _DEFAULT_WINDOW
        self._peer_stream_window = _DEFAULT_WINDOW
        self._peer_frame = _FRAME_LIMIT
        self._receive_window = _CONNECTION_WINDOW
        # Responses waiting for window: stream -> [rest of the DATA, stream window]
        self._pending: dict[int, list[Any]] = {}
        self._closing = False
        self._handshake: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections.add(self)
        self.transport.write(_SETTINGS_FRAME)
        loop = asyncio.get_running_loop()
        self._handshake = loop.call_later(HANDSHAKE_SECONDS, self._handshake_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self._calls.clear()
        self._pending.clear()
        if self._handshake is not None:
            self._handshake.cancel()
        self.transport = None

    def pause_writing(self) -> None:
        # The peer does not read what is written: stop reading its calls until it does.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        try:
            if not self._preface:
                if len(buffer) < len(PREFACE):
                    if not PREFACE.startswith(buffer):
                        raise _ConnectionError(PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                    self._buffer = buffer
                    return
                if not buffer.startswith(PREFACE):
                    raise _ConnectionError(PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                buffer = buffer[len(PREFACE) :]
                self._preface = True
                if self._handshake is not None:
                    self._handshake.cancel()
                    self._handshake = None
                self._buffer = b""
            at, end = 0, len(buffer)
            while end - at >= 9:
                length = int.from_bytes(buffer[at : at + 3], "big")
                if length > _FRAME_LIMIT:
                    raise _ConnectionError(FRAME_SIZE_ERROR, f"frame of {length} bytes")
                if end - at < 9 + length:
                    break
                kind = buffer[at + 3]
                flags = buffer[at + 4]
                stream = int.from_bytes(buffer[at + 5 : at + 9], "big") & 0x7FFFFFFF
                payload = buffer[at + 9 : at + 9 + length]
                at += 9 + length
                self._frame(kind, flags, stream, payload)
                if self.transport is None:
                    return
            self._buffer = buffer[at:]
        except _ConnectionError as exc:
            self._fail_connection(exc.code, str(exc))
            return
        self._flush()

    # -- frames ------------------------------------------------------------------------------
    def _frame(self, kind: int, flags: int, stream: int, payload: bytes) -> None:
        if self._block_stream and (kind != _CONTINUATION or stream != self._block_stream):
            raise _ConnectionError(PROTOCOL_ERROR, "header block interrupted")
        if kind == _DATA:
            self._data(flags, stream, payload)
        elif kind == _HEADERS:
            self._headers(flags, stream, payload)
        elif kind == _CONTINUATION:
            if not self._block_stream:
                raise _ConnectionError(PROTOCOL_ERROR, "CONTINUATION without HEADERS")
            self._add_block(payload, flags)
        elif kind == _SETTINGS:
            self._settings(flags, stream, payload)
        elif kind == _WINDOW_UPDATE:
            self._window_update(stream, payload)
        elif kind == _PING:
            if stream != 0:
                raise _ConnectionError(PROTOCOL_ERROR, "PING on a stream")
            if len(payload) != 8:
                raise _ConnectionError(FRAME_SIZE_ERROR, "PING not 8 bytes")
            if not flags & _ACK:
                self._out.append(_frame(_PING, _ACK, 0, payload))
        elif kind == _RST_STREAM:
            if stream == 0:
                raise _ConnectionError(PROTOCOL_ERROR, "RST_STREAM on stream 0")
            if len(payload) != 4:
                raise _ConnectionError(FRAME_SIZE_ERROR, "RST_STREAM not 4 bytes")
            if stream > self._last_stream:
                raise _ConnectionError(PROTOCOL_ERROR, "RST_STREAM on an idle stream")
            reset = self._calls.pop(stream, None)
            if reset is not None:
                self._held -= reset.size
            self._pending.pop(stream, None)
        elif kind == _PRIORITY:
            if stream == 0:
                raise _ConnectionError(PROTOCOL_ERROR, "PRIORITY on stream 0")
            if len(payload) != 5:
                raise _ConnectionError(FRAME_SIZE_ERROR, "PRIORITY not 5 bytes")
        elif kind == _GOAWAY:
            if stream != 0:
                raise _ConnectionError(PROTOCOL_ERROR, "GOAWAY on a stream")
            # The peer opens no more calls; the ones it sent are answered as they end.
            self._closing = True
        elif kind == _PUSH_PROMISE:
            raise _ConnectionError(PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        # Unknown frame types are ignored (RFC 9113 section 5.5).

    def _settings(self, flags: int, stream: int, payload: bytes) -> None:
        if stream != 0:
            raise _ConnectionError(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & _ACK:
            if payload:
                raise _ConnectionError(FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise _ConnectionError(FRAME_SIZE_ERROR, "SETTINGS not a multiple of 6 bytes")
        for at in range(0, len(payload), 6):
            key = int.from_bytes(payload[at : at + 2], "big")
            value = int.from_bytes(payload[at + 2 : at + 6], "big")
            if key == 0x4:  # SETTINGS_INITIAL_WINDOW_SIZE
                if value > _MAX_WINDOW:
                    raise _ConnectionError(FLOW_CONTROL_ERROR, "initial window over 2^31-1")
                delta = value - self._peer_stream_window
                self._peer_stream_window = value
                for entry in self._pending.values():
                    entry[1] += delta
            elif key == 0x5:  # SETTINGS_MAX_FRAME_SIZE
                if not _FRAME_LIMIT <= value <= 16_777_215:
                    raise _ConnectionError(PROTOCOL_ERROR, "invalid maximum frame size")
                self._peer_frame = value
            elif key == 0x2 and value > 1:  # SETTINGS_ENABLE_PUSH
                raise _ConnectionError(PROTOCOL_ERROR, "invalid ENABLE_PUSH")
        self._out.append(_SETTINGS_ACK)
        if self._pending:
            self._resend()

    def _window_update(self, stream: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _ConnectionError(FRAME_SIZE_ERROR, "WINDOW_UPDATE not 4 bytes")
        increment = int.from_bytes(payload, "big") & 0x7FFFFFFF
        if stream == 0:
            if increment == 0:
                raise _ConnectionError(PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > _MAX_WINDOW:
                raise _ConnectionError(FLOW_CONTROL_ERROR, "connection window over 2^31-1")
        else:
            entry = self._pending.get(stream)
            if entry is not None:
                entry[1] += increment
                if entry[1] > _MAX_WINDOW:
                    raise _ConnectionError(FLOW_CONTROL_ERROR, "stream window over 2^31-1")
        if self._pending:
            self._resend()

    def _headers(self, flags: int, stream: int, payload: bytes) -> None:
        if stream == 0 or stream % 2 == 0:
            raise _ConnectionError(PROTOCOL_ERROR, f"HEADERS on stream {stream}")
        if flags & _PADDED:
            if not payload or payload[0] >= len(payload):
                raise _ConnectionError(PROTOCOL_ERROR, "padding longer than the frame")
            payload = payload[1 : len(payload) - payload[0]]
        if flags & _PRIORITY_FLAG:
            if len(payload) < 5:
                raise _ConnectionError(FRAME_SIZE_ERROR, "HEADERS priority cut short")
            payload = payload[5:]
        if stream > self._last_stream:
            self._last_stream = stream
        elif not flags & _END_STREAM:
            raise _ConnectionError(PROTOCOL_ERROR, "trailers without END_STREAM")
        elif stream not in self._calls:
            if stream not in self._cut:
                raise _ConnectionError(PROTOCOL_ERROR, f"HEADERS on closed stream {stream}")
            # Trailers of a call answered and reset before it ended: decoded (the HPACK
            # table must follow the peer's) and dropped, as frames on a reset stream are.
            self._block_dropped = True
        self._block_stream = stream
        self._block_parts = []
        self._block_size = 0
        self._block_ends_stream = bool(flags & _END_STREAM)
        self._add_block(payload, flags)

    def _add_block(self, part: bytes, flags: int) -> None:
        self._block_size += len(part)
        if self._block_size > MAX_HEADER_BLOCK:
            raise _ConnectionError(ENHANCE_YOUR_CALM, f"header block over {MAX_HEADER_BLOCK} bytes")
        self._block_parts.append(part)
        if not flags & _END_HEADERS:
            return
        stream, self._block_stream = self._block_stream, 0
        parts = self._block_parts
        block = parts[0] if len(parts) == 1 else b"".join(parts)
        headers = self._decode(block)
        if self._block_dropped:
            self._block_dropped = False
            return
        call = self._calls.get(stream)
        if call is not None:  # trailers: the request is complete
            del self._calls[stream]
            self._held -= call.size
            self._finish(stream, call)
            return
        self._request(stream, headers, self._block_ends_stream)

    def _decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        remembered = self._remembered
        headers = remembered.get(block)
        if headers is not None:
            return headers
        try:
            headers = list(self._decoder.decode(block, raw=True))
        except (HPACKError, IndexError, ValueError) as exc:
            # The dynamic table may be half updated: the connection cannot go on.
            raise _ConnectionError(COMPRESSION_ERROR, f"bad header block: {exc}") from None
        if _leaves_table_alone(block):
            if len(remembered) >= 64:
                remembered.clear()
            remembered[block] = headers
        else:
            remembered.clear()  # the table changed: indices may now mean other fields
        return headers

    def _data(self, flags: int, stream: int, payload: bytes) -> None:
        if stream == 0:
            raise _ConnectionError(PROTOCOL_ERROR, "DATA on stream 0")
        if stream > self._last_stream:
            raise _ConnectionError(PROTOCOL_ERROR, f"DATA on idle stream {stream}")
        size = len(payload)
        self._receive_window -= size
        if self._receive_window < 0:
            raise _ConnectionError(FLOW_CONTROL_ERROR, "connection window exceeded")
        if self._receive_window <= _CONNECTION_WINDOW // 2:
            given = _CONNECTION_WINDOW - self._receive_window
            self._out.append(_frame(_WINDOW_UPDATE, 0, 0, given.to_bytes(4, "big")))
            self._receive_window = _CONNECTION_WINDOW
        call = self._calls.get(stream)
        if call is None:
            return  # a stream already answered or reset: its data is dropped
        if flags & _PADDED:
            if not payload or payload[0] >= size:
                raise _ConnectionError(PROTOCOL_ERROR, "padding longer than the frame")
            payload = payload[1 : size - payload[0]]
        call.window -= size
        if call.window < 0:
            raise _ConnectionError(FLOW_CONTROL_ERROR, f"stream {stream} window exceeded")
        call.size += len(payload)
        self._held += len(payload)
        if self._held > MAX_CONNECTION_BUFFER:
            raise _ConnectionError(
                ENHANCE_YOUR_CALM, f"unfinished calls hold over {MAX_CONNECTION_BUFFER} bytes"
            )
        if call.size > self.max_message_bytes + 5:
            self._held -= call.size
            del self._calls[stream]
            self._end_call(
                stream, RESOURCE_EXHAUSTED, f"request over {self.max_message_bytes} bytes"
            )
            self._reset_if_open(stream, bool(flags & _END_STREAM))
            return
        call.body.append(payload)
        if flags & _END_STREAM:
            del self._calls[stream]
            self._held -= call.size
            self._finish(stream, call)
        elif call.window <= _STREAM_WINDOW // 2:
            given = _STREAM_WINDOW - call.window
            self._out.append(_frame(_WINDOW_UPDATE, 0, stream, given.to_bytes(4, "big")))
            call.window = _STREAM_WINDOW

    # -- calls -------------------------------------------------------------------------------
    def _request(self, stream: int, headers: list[tuple[bytes, bytes]], ended: bool) -> None:
        if self._closing or len(self._calls) + len(self._pending) >= MAX_CONCURRENT_STREAMS:
            self._refused("refused_stream")
            self._reset(stream, REFUSED_STREAM)
            return
        method = path = content_type = None
        for name, value in headers:
            if name == b":path":
                path = value
            elif name == b":method":
                method = value
            elif name == b"content-type":
                content_type = value
        if method != b"POST" or content_type is None or not _is_grpc(content_type):
            # Not gRPC at all: answered in HTTP, as gRPC servers do.
            self._refused("not_grpc")
            self._out.append(_frame(_HEADERS, _END_HEADERS | _END_STREAM, stream, _NOT_GRPC_BLOCK))
            self._reset_if_open(stream, ended)
            return
        unary = self.methods.get(path) if path is not None else None
        if unary is None:
            shown = (path or b"").decode("utf-8", "replace")[:200]
            self._end_call(stream, UNIMPLEMENTED, f"unknown method {shown}")
            self._reset_if_open(stream, ended)
            return
        call = _Call(unary)
        if ended:
            self._finish(stream, call)
        else:
            self._calls[stream] = call

    def _reset_if_open(self, stream: int, ended: bool) -> None:
        # Answered before the request ended: the peer may stop sending (RFC 9113 8.1).
        if not ended:
            self._reset(stream, NO_ERROR)

    def _reset(self, stream: int, code: int) -> None:
        self._out.append(_frame(_RST_STREAM, 0, stream, code.to_bytes(4, "big")))
        cut = self._cut
        if len(cut) >= MAX_CONCURRENT_STREAMS:
            del cut[next(iter(cut))]
        cut[stream] = None

    def _finish(self, stream: int, call: _Call) -> None:
        unary = call.method
        if unary is None:
            return
        body = call.body[0] if len(call.body) == 1 else b"".join(call.body)
        try:
            reply = unary.handle(_unframe(body, self.max_message_bytes))
        except CallError as exc:
            self._end_call(stream, exc.code, exc.message)
            return
        except Exception:  # a bug in a handler fails its call, not the connection's others
            log.exception("gRPC call on stream %d from %s failed", stream, self.peer)
            self._end_call(stream, INTERNAL, "internal error")
            return
        data = b"\x00" + len(reply).to_bytes(4, "big") + reply
        out = self._out
        out.append(_frame(_HEADERS, _END_HEADERS, stream, _RESPONSE_BLOCK))
        size = len(data)
        if (
            size <= self._send_window
            and size <= self._peer_stream_window
            and size <= self._peer_frame
        ):
            self._send_window -= size
            out.append(_frame(_DATA, 0, stream, data))
            out.append(_frame(_HEADERS, _END_HEADERS | _END_STREAM, stream, _TRAILERS_OK))
        else:
            self._pending[stream] = [data, self._peer_stream_window]
            self._resend()

    def _end_call(self, stream: int, code: int, message: str) -> None:
        """A trailers-only response: the call ends with ``code`` and no message."""
        self._refused(_STATUS_NAMES.get(code, "grpc_status_" + str(code)))
        block = _RESPONSE_BLOCK + _trailers_block(code, message)
        self._out.append(_frame(_HEADERS, _END_HEADERS | _END_STREAM, stream, block))

    def _resend(self) -> None:
        """Send what waited for window, as far as the windows allow."""
        out = self._out
        for stream in list(self._pending):
            entry = self._pending[stream]
            data: bytes = entry[0]
            while data:
                room = min(self._send_window, entry[1], self._peer_frame)
                if room <= 0:
                    break
                out.append(_frame(_DATA, 0, stream, data[:room]))
                self._send_window -= min(room, len(data))
                entry[1] -= min(room, len(data))
                data = data[room:]
            if data:
                entry[0] = data
                continue
            out.append(_frame(_HEADERS, _END_HEADERS | _END_STREAM, stream, _TRAILERS_OK))
            del self._pending[stream]

    # -- connection --------------------------------------------------------------------------
    def _flush(self) -> None:
        out = self._out
        if out and self.transport is not None:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    def _refused(self, code: str) -> None:
        if self.on_refused is not None:
            self.on_refused(code)

    def _fail_connection(self, code: int, message: str) -> None:
        log.info("gRPC connection from %s closed: %s", self.peer, message)
        self._refused("http2_protocol_error")
        self._out.append(self._goaway_frame(code, message))
        self._flush()
        self.close()

    def _goaway_frame(self, code: int, message: str = "") -> bytes:
        debug = message.encode("utf-8", "replace")[:256]
        payload = self._last_stream.to_bytes(4, "big") + code.to_bytes(4, "big") + debug
        return _frame(_GOAWAY, 0, 0, payload)

    def _handshake_timeout(self) -> None:
        self._handshake = None
        if not self._preface:
            log.info("gRPC connection from %s closed: no HTTP/2 preface", self.peer)
            self._refused("no_preface")
            self.close()

    def close(self) -> None:
        """Close the connection now."""
        if self.transport is not None:
            self.transport.close()

    def goaway(self) -> None:
        """Tell the peer no new calls are taken (shutdown); every call it sent is answered."""
        self._closing = True
        self._out.append(self._goaway_frame(NO_ERROR))
        self._flush()

    @property
    def busy(self) -> bool:
        """Whether calls are still being received or answered."""
        return bool(self._calls or self._pending)


class GrpcServer:
    """A gRPC server for unary ``methods`` (by ``/package.Service/Method`` path) on the running
    event loop. ``on_refused`` is called with a short code for every call refused before its
    handler answered (``unimplemented``, ``not_grpc``, ``invalid_argument``,
    ``resource_exhausted``, ``internal``, ``refused_stream``) and every connection closed for
    an HTTP/2 error (``http2_protocol_error``) or a missing preface (``no_preface``)."""

    def __init__(
        self,
        methods: dict[str, UnaryMethod],
        *,
        host: str,
        port: int,
        reuse_port: bool = False,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.methods = {path.encode(): method for path, method in methods.items()}
        self.on_refused = on_refused
        self.host = host
        self.port = port
        self.reuse_port = reuse_port
        self.max_message_bytes = max_message_bytes
        self.connections: set[GrpcProtocol] = set()
        self._server: asyncio.Server | None = None

    def _protocol(self) -> GrpcProtocol:
        return GrpcProtocol(
            self.methods,
            connections=self.connections,
            max_message_bytes=self.max_message_bytes,
            on_refused=self.on_refused,
        )

    async def start(self) -> int:
        """Listen on the running loop; returns the bound port. OSError when it cannot bind."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol,
            host=self.host.strip("[]"),
            port=self.port,
            reuse_port=self.reuse_port or None,
            backlog=2048,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self, grace_seconds: float = 2.0) -> None:
        """Stop listening, send GOAWAY on every connection and close each once its calls are
        answered (at most ``grace_seconds``)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for connection in list(self.connections):
            connection.goaway()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        while any(c.busy for c in self.connections) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self.connections):
            connection.close()
        await server.wait_closed()
