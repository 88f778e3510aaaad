"""Progress reporting: a tqdm bar on a terminal, periodic plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it",
             log_every_s: float = 10.0, stream=None) -> Iterator[T]:
    """Yield ``items``, showing a progress bar (terminal) or a log line every ``log_every_s``."""
    stream = stream or sys.stderr
    if stream.isatty():
        from tqdm import tqdm

        yield from tqdm(items, total=total, desc=desc, unit=unit, file=stream)
        return
    start = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= log_every_s:
            last = now
            rate = done / (now - start)
            of = f"/{total}" if total else ""
            eta = f", ETA {(total - done) / rate:.0f} s" if total and rate > 0 else ""
            print(f"{desc}: {done}{of} {unit}s, {rate:.1f} {unit}/s{eta}", file=stream, flush=True)
