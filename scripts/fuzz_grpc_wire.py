"""A long mutation fuzz of the gRPC port's HTTP/2 protocol (geogate.service.grpc_wire).

    .venv/bin/python scripts/fuzz_grpc_wire.py                 # 200,000 connections
    .venv/bin/python scripts/fuzz_grpc_wire.py -n 5000 --seed 3

Each input is a whole client connection: the preface and a sequence of frames as a gRPC
client sends them (SETTINGS, HEADERS with HPACK blocks from a real encoder, CONTINUATION,
DATA with length-prefixed messages, WINDOW_UPDATE, PING, RST_STREAM, GOAWAY), then one to
four random edits (byte flips, cut, repeated or spliced slices, frame lengths and stream ids
rewritten), fed to the protocol in process in random-sized pieces. The contract is the CI
test's (tests/service/test_grpc_wire.py): nothing escapes ``data_received`` (an exception
there would be an event-loop traceback and a dropped connection for every call on it), what
the server writes is whole frames, and a connection it keeps open still answers a valid call
afterwards. Failing inputs are written to ``--out`` as hex, one per line. Results are
recorded in ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import traceback
from pathlib import Path

from hpack import Encoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.service.http2_frames import MemoryTransport, frame, grpc_message, whole_frames

from geogate.service.grpc_wire import PREFACE, GrpcProtocol, UnaryMethod

ECHO = b"/test.Echo/Echo"


def seed_connection(rng: random.Random) -> bytes:
    """A valid connection: a few calls, some split over CONTINUATION and DATA frames."""
    encoder = Encoder()
    out = [PREFACE, frame(4, 0, 0, b"\x00\x04\x00\x01\x00\x00")]
    stream = 1
    for _ in range(rng.randint(1, 4)):
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", ECHO if rng.random() < 0.9 else b"/x.Y/Z"),
            (b":authority", b"ext_authz"),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            (b"grpc-timeout", b"250m"),
            (b"x-forwarded-for", f"192.0.2.{rng.randint(0, 255)}".encode()),
        ]
        block = encoder.encode(headers)
        if rng.random() < 0.3:
            cut = rng.randint(0, len(block))
            out += [frame(1, 0, stream, block[:cut]), frame(9, 4, stream, block[cut:])]
        else:
            out.append(frame(1, 4, stream, block))
        body = grpc_message(rng.randbytes(rng.randint(0, 300)))
        if rng.random() < 0.3:
            cut = rng.randint(0, len(body))
            out += [frame(0, 0, stream, body[:cut]), frame(0, 1, stream, body[cut:])]
        else:
            out.append(frame(0, 1, stream, body))
        extra = rng.random()
        if extra < 0.1:
            out.append(frame(6, 0, 0, rng.randbytes(8)))
        elif extra < 0.2:
            out.append(frame(8, 0, 0, rng.randint(1, 1 << 20).to_bytes(4, "big")))
        elif extra < 0.25:
            out.append(frame(3, 0, stream, b"\x00\x00\x00\x08"))
        stream += 2
    if rng.random() < 0.1:
        out.append(frame(7, 0, 0, b"\x00\x00\x00\x00\x00\x00\x00\x00"))
    return b"".join(out)


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            break
        at = rng.randrange(len(buf))
        edit = rng.randrange(6)
        if edit == 0:
            buf[at] ^= 1 << rng.randrange(8)
        elif edit == 1:
            del buf[at : at + rng.randint(1, 16)]
        elif edit == 2:
            piece = bytes(buf[at : at + rng.randint(1, 64)])
            buf[at:at] = piece * rng.randint(1, 4)
        elif edit == 3:
            buf[at:at] = rng.randbytes(rng.randint(1, 32))
        elif edit == 4:  # a frame header's length or stream id
            buf[at : at + 3] = rng.randint(0, 20_000).to_bytes(3, "big")
        else:
            buf[at : at + 4] = rng.choice([0, 1, 2, 3, 5, 2**31 - 1, 2**32 - 1]).to_bytes(4, "big")
    return bytes(buf)


OUTCOMES = ("closed", "answered", "open")


async def one(data: bytes, rng: random.Random) -> str:
    """One of :data:`OUTCOMES` when the contract holds (closed with GOAWAY; kept open and
    a valid call afterwards answered; kept open mid-frame or mid-block), else what broke."""
    outcome = "closed"
    transport = MemoryTransport()
    protocol = GrpcProtocol(
        {ECHO: UnaryMethod(lambda b: b[::-1])}, connections=set(), max_message_bytes=4096
    )
    protocol.connection_made(transport)  # type: ignore[arg-type]
    try:
        at = 0
        while at < len(data) and not transport.closed:
            step = rng.randint(1, 512)
            protocol.data_received(data[at : at + step])
            at += step
        sid = 2**31 - 1
        fresh = not protocol._buffer and not protocol._block_stream and protocol._last_stream < sid
        if not transport.closed:
            outcome = "open"
        if not transport.closed and fresh:
            # Still open, between frames: a valid call on a new stream must be answered.
            before = len(transport.written)
            follow = Encoder().encode(
                [
                    (b":method", b"POST"),
                    (b":path", ECHO),
                    (b":scheme", b"http"),
                    (b"content-type", b"application/grpc"),
                ]
            )
            protocol.data_received(frame(1, 4, sid, follow) + frame(0, 1, sid, grpc_message(b"ok")))
            waiting = sid in protocol._pending  # for window the fuzzed SETTINGS took away
            if not transport.closed and protocol._last_stream == sid and not waiting:
                answer = bytes(transport.written[before:])
                answered = (
                    frame(0, 0, sid, grpc_message(b"ko")) in answer
                    or b"grpc-status" in answer
                    # REFUSED_STREAM (over the limit, or shutting down) is an answer too.
                    or frame(3, 0, sid, b"\x00\x00\x00\x07") in answer
                )
                if not answered:
                    return "a valid call after the input got no answer"
                outcome = "answered"
    except Exception:
        return traceback.format_exc(limit=3).strip().splitlines()[-1]
    finally:
        protocol.connection_lost(None)
    if not whole_frames(bytes(transport.written)):
        return "wrote a partial frame"
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200_000, help="connections to fuzz")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("fuzz-grpc-failures.txt"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    failures: dict[str, int] = {}
    outcomes = dict.fromkeys(OUTCOMES, 0)

    async def run() -> None:
        with args.out.open("w") as out:
            for _ in range(args.n):
                data = mutate(rng, seed_connection(rng))
                result = await one(data, rng)
                if result in outcomes:
                    outcomes[result] += 1
                else:
                    failures[result] = failures.get(result, 0) + 1
                    out.write(data.hex() + "\n")

    started = time.perf_counter()
    asyncio.run(run())
    took = time.perf_counter() - started
    total = sum(failures.values())
    print(
        f"grpc_wire: {args.n:,} connections, {total} failures "
        f"({len(failures)} kinds), {args.n / took:,.0f} connections/s, seed {args.seed}; "
        f"closed with GOAWAY {outcomes['closed']:,}, kept open and a later call answered "
        f"{outcomes['answered']:,}, kept open mid-frame {outcomes['open']:,}"
    )
    for problem, count in sorted(failures.items(), key=lambda kv: -kv[1]):
        print(f"  {count:>7,}  {problem}")
    if not total:
        args.out.unlink()
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
