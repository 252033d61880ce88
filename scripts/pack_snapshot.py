"""Rewrite a snapshot file in the packed container, member for member.

    python scripts/pack_snapshot.py IN [OUT]      # OUT defaults to IN (replaced in place)

Only the container changes (``.npz`` deflate -> LZ4 blocks, see
``geogate.intel.container``): every array and the metadata are copied byte for byte, so the
content digest stays the same and is checked on the result before it replaces anything.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

from geogate.errors import GeogateError, IntelDataError
from geogate.intel.container import open_members, write_packed
from geogate.intel.snapshot import Snapshot


def main(argv: list[str] | None = None) -> int:
    """Convert IN to the packed container; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path, nargs="?")
    args = parser.parse_args(argv)
    dst: Path = args.dst or args.src
    try:
        size_in = args.src.stat().st_size
        before = Snapshot.load(args.src)  # digest checked: never pack a corrupt file
        with open_members(args.src.read_bytes()) as members:
            arrays = {name: members[name] for name in members.files}
        buf = io.BytesIO()
        write_packed(buf, arrays)
        tmp = dst.with_name(dst.name + ".tmp")
        tmp.write_bytes(buf.getvalue())
        started = time.perf_counter()
        after = Snapshot.load(tmp)
        load_s = time.perf_counter() - started
        if after.meta != before.meta or len(after) != len(before):
            tmp.unlink()
            raise IntelDataError("packed copy differs from the original", path=str(tmp))
        tmp.replace(dst)
    except (GeogateError, OSError, ValueError) as exc:
        print(f"pack_snapshot: error: {exc}", file=sys.stderr)
        return 2
    print(f"{dst}: {dst.stat().st_size:,} bytes (was {size_in:,}), loads in {load_s * 1e3:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
