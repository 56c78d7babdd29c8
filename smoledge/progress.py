"""One status line per stage: redrawn in place on a terminal, throttled lines in logs."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, stream: TextIO | None = None, log_every_s: float = 10.0):
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.log_every_s = log_every_s
        self._last_log = 0.0
        self._t0 = time.time()
        self._width = 0
        self._last_text = ""

    def update(self, text: str, done: int | None = None, total: int | None = None) -> None:
        """Show `text`, with a bar when done/total are given."""
        elapsed = time.time() - self._t0
        bar = ""
        if done is not None and total:
            frac = min(max(done / total, 0.0), 1.0)
            filled = int(frac * 20)
            bar = f"[{'#' * filled}{'.' * (20 - filled)}] {done}/{total} "
        line = f"{self.label} {bar}{text} ({elapsed:.0f}s)"
        self._last_text = line
        if self.tty:
            pad = max(self._width - len(line), 0)
            self.stream.write("\r" + line + " " * pad)
            self.stream.flush()
            self._width = len(line)
        elif time.time() - self._last_log >= self.log_every_s or (done is not None and done == total):
            self.stream.write(line + "\n")
            self.stream.flush()
            self._last_log = time.time()

    def close(self) -> None:
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
