"""Types of the compiled scanner (driftloop/_scan.c)."""

from typing import Any

def scan(
    blob: bytes | memoryview,
    n_lines: int,
    kinds: bytes,
    num: Any,
    cat: Any,
    pred: Any,
    times: Any,
    stride: int,
    offset: int,
    /,
) -> tuple[list[list[str]], list[str], list[str | None] | None, list[str]] | None: ...

def newlines(buf: bytes | memoryview, /) -> bytearray: ...

def row_breaks(buf: bytes | memoryview, /) -> int: ...
