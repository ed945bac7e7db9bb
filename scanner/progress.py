"""A plain progress line on stderr for long work (discovery, recording, training)."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """`label  done/total  rate/s  eta`, redrawn at most every `min_interval_s`; a final line on close."""

    def __init__(self, label: str, total: int, *, stream: TextIO | None = None, min_interval_s: float = 0.2) -> None:
        self.label = label
        self.total = max(0, total)
        self.done = 0
        self.stream = stream or sys.stderr
        self.min_interval_s = min_interval_s
        self._start = time.monotonic()
        self._last = 0.0
        self._tty = self.stream.isatty() if hasattr(self.stream, "isatty") else False
        if not self._tty:
            self.min_interval_s = max(min_interval_s, 10.0)  # a log file gets a line every 10 s, not a stream
    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.min_interval_s or self.done >= self.total:
            self._last = now
            self._draw(note, final=False)

    def close(self, note: str = "") -> None:
        self._draw(note, final=True)

    def _draw(self, note: str, final: bool) -> None:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 and self.total else 0.0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        line = f"{self.label}: {self.done}/{self.total} ({pct:5.1f}%)  {rate:8.1f}/s  eta {eta:5.1f}s  {note}".rstrip()
        if self._tty and not final:
            self.stream.write("\r" + line)
        elif final or not self._tty:
            self.stream.write(("\r" if self._tty else "") + line + "\n")
        self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
