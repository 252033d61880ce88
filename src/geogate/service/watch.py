"""Reload on file change: an opt-in poll of the policy and snapshot files.

``watch_seconds`` in ``[serve]`` (``geogate serve --watch SECONDS``, ``GEOGATE_WATCH_SECONDS``)
makes the service stat its policy files and snapshot file every that many seconds and reload
(exactly as on SIGHUP) when one of them changes: its modification time, size, inode or
device, or it appears or disappears. Polling needs no dependency and works on every file
system, network mounts included, and with editors and deploy tools that replace a file by
renaming a new one over it.

A change is acted on once the file has looked the same for one more poll, so a file still
being written is not read half-way; if the new file is bad anyway, the reload fails as on
SIGHUP (one line in the log, ``geogate_reloads_total{result="error"}``) and the service keeps
deciding with the data it has. The same version of the files is not tried again: the next
change is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from geogate.errors import GeogateError

log = logging.getLogger("geogate.service")

#: What identifies a version of a file: (mtime_ns, size, inode, device); None when missing.
Signature = tuple[int, int, int, int] | None


def _signature(path: Path) -> Signature:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


def watched_files(policies: Sequence[str], snapshot: str | None) -> tuple[Path, ...]:
    """The files a service configured with ``policies`` and ``snapshot`` reads: policy
    files (not the built-in ``builtin:NAME`` presets, which change only with geogate) and
    the snapshot file (none for the embedded data)."""
    files = [Path(p) for p in policies if not p.startswith("builtin:")]
    if snapshot is not None and snapshot != "embedded":
        files.append(Path(snapshot))
    return tuple(dict.fromkeys(f.resolve() for f in files))


@dataclass
class FileWatch:
    """Polls ``files`` and says when they changed (see the module docstring).

    :meth:`poll` is the whole protocol: call it every ``interval_seconds``; it returns the
    names of the files that changed when the service should reload, else an empty tuple.
    """

    files: tuple[Path, ...]
    interval_seconds: float

    def __post_init__(self) -> None:
        self._loaded = {f: _signature(f) for f in self.files}  # the versions in service
        self._pending: dict[Path, Signature] | None = None

    def poll(self) -> tuple[str, ...]:
        """Names of the changed files once the change is stable; ``()`` otherwise."""
        now = {f: _signature(f) for f in self.files}
        if now == self._loaded:
            self._pending = None
            return ()
        if now != self._pending:  # new, or still changing: look again next time
            self._pending = now
            return ()
        changed = tuple(f.name for f in self.files if now[f] != self._loaded[f])
        self._loaded = now  # tried once, good or bad; the next change is tried again
        self._pending = None
        return changed


def trigger(changed: Sequence[str]) -> str:
    """How a reload caused by the watch is named in the log."""
    return f"file watch: {', '.join(changed)} changed"


class WatchThread:
    """Runs a :class:`FileWatch` in a daemon thread, calling ``reload(trigger)`` on each
    change (the single-process service; a supervisor polls from its own loop instead)."""

    def __init__(self, watch: FileWatch, reload: Callable[[str], object]) -> None:
        self.watch = watch
        self.reload = reload
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="geogate-file-watch", daemon=True)

    def start(self) -> None:
        """Start polling."""
        log.info(
            "watching %s every %g s",
            ", ".join(str(f) for f in self.watch.files),
            self.watch.interval_seconds,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop polling (returns at once; the thread ends within one interval)."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.watch.interval_seconds):
            changed = self.watch.poll()
            if changed:
                # A failed reload was logged and counted by reload(); the old data stays.
                with contextlib.suppress(GeogateError):
                    self.reload(trigger(changed))
