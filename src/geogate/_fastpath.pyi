"""Type stub of the optional compiled cold path (``_fastpath.pyx``)."""

from typing import Any

INTERFACE: int

def pure_python_forced() -> bool: ...

class ColdPath:
    misses: int
    range_hits: int
    def __init__(
        self,
        tables: tuple[memoryview, memoryview, memoryview, memoryview, memoryview],
        n4: int,
        decision_type: type,
    ) -> None: ...
    def locate(self, ip: object) -> int: ...
    def miss(self, decider: Any, view: Any, ip: str) -> Any: ...
