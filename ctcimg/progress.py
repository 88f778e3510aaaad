"""Progress reporting: a tqdm bar on a terminal, periodic plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class Progress:
    """Count of items done, shown as a tqdm bar on a terminal and otherwise as a plain line
    (:meth:`status_line`) at most every ``log_every_s`` seconds, or never when that is None.

    Use as a context manager; call :meth:`update` with the number done so far and
    :meth:`write` for a message that must not be overwritten by the bar.

    Parameters
    ----------
    total
        Number of items expected, or None when unknown.
    desc, unit
        Label of the bar and of the items (``unit`` + "s" in log lines).
    stream
        Where to write (default: standard error).
    log_every_s
        Seconds between log lines off a terminal; None: no log lines.
    log_when_done
        Also write a log line when the last of ``total`` items is done.
    **bar_options
        Passed to :class:`tqdm.tqdm` (``leave``, ``dynamic_ncols``, ...).
    """

    def __init__(self, total: int | None, desc: str = "", unit: str = "it", stream=None,
                 log_every_s: float | None = 10.0, log_when_done: bool = False,
                 **bar_options: Any):
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream or sys.stderr
        self.log_every_s, self.log_when_done = log_every_s, log_when_done
        self.bar_options = bar_options
        self.bar = None
        self.done = 0

    def __enter__(self) -> Progress:
        self.start = self.last = time.monotonic()
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, desc=self.desc, unit=self.unit, file=self.stream,
                            **self.bar_options)
        return self

    def update(self, done: int, postfix: dict[str, Any] | None = None) -> None:
        """Record ``done`` items done (``postfix``: extra fields shown on the bar)."""
        self.done = done
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
            self.bar.n = done
            self.bar.refresh()
            return
        if self.log_every_s is None:
            return
        now = time.monotonic()
        if now - self.last >= self.log_every_s or (self.log_when_done and done == self.total):
            self.last = now
            self.write(self.status_line(max(now - self.start, 1e-9)))

    def status_line(self, elapsed_s: float) -> str:
        """The log line written off a terminal: count, rate and, with a total, an ETA."""
        rate = self.done / elapsed_s
        of = f"/{self.total}" if self.total else ""
        eta = f", ETA {(self.total - self.done) / rate:.0f} s" if self.total and rate > 0 else ""
        return f"{self.desc}: {self.done}{of} {self.unit}s, {rate:.1f} {self.unit}/s{eta}"

    def write(self, line: str) -> None:
        """Write one line (above the bar, on a terminal)."""
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def __exit__(self, *exc) -> bool:
        if self.bar is not None:
            self.bar.close()
        return False


def progress(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it",
             log_every_s: float = 10.0, stream=None) -> Iterator[T]:
    """Yield ``items``, showing a progress bar (terminal) or a log line every ``log_every_s``."""
    with Progress(total, desc, unit, stream, log_every_s) as shown:
        for done, item in enumerate(items, 1):
            yield item
            shown.update(done)
