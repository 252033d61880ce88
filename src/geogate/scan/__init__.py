"""Batch scan of access logs: who a policy cuts off, and what a policy change would do.

``geogate scan`` reads access logs (JSON Lines, CSV, Parquet, nginx ``combined``; plain, gzip
or zstd), resolves each client with the service's trusted-proxy walk, decides every request
with the vectorized :meth:`geogate.decide.Decider.decide_many`, and writes aggregate tables as
Parquet plus a self-contained HTML report. Modules: :mod:`~geogate.scan.readers` (inputs),
:mod:`~geogate.scan.judge` (client address and decision per batch),
:mod:`~geogate.scan.aggregate` (the tables), :mod:`~geogate.scan.run` (the local engine),
:mod:`~geogate.scan.spark` (the Spark engine), :mod:`~geogate.scan.report` (the HTML report).
"""

from __future__ import annotations

from geogate.scan.run import ScanConfig, ScanResult, scan_local

__all__ = ["ScanConfig", "ScanResult", "scan_local"]
