"""The ``geogate`` command line (:mod:`geogate.cli.main`)."""

from __future__ import annotations

import os

# geogate does no linear algebra, but numpy loads OpenBLAS, which starts a thread per core at
# import: about 50 ms of every command on a small machine. One thread unless the user says.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
