"""How a search shows its progress: a bar on a terminal, one line per finished trial elsewhere.

On an interactive terminal a tqdm bar shows trials done, elapsed time, the ETA and the front's
size; a terminal that reports no usable width (0 columns, as some IDE consoles and ``script``
do) gets a fixed 80-column bar instead of nothing.  When stderr is not a terminal (a log file, a
pipe, a batch job) every finished trial is one plain line, so logs stay readable.
"""

from __future__ import annotations

import logging
import shutil
import sys
from typing import Any

from nas.study import StudyCounts

__all__ = ["SearchProgress"]

log = logging.getLogger("nas.search")

# Narrower than this, a bar cannot show its counts: use a fixed width instead.
_MIN_COLUMNS = 40
_FIXED_COLUMNS = 80


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class SearchProgress:
    """Progress of a search toward ``total`` finished trials; call :meth:`update` with the counts."""

    def __init__(self, total: int, initial: StudyCounts, *, stream: Any = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self._last: StudyCounts | None = initial
        self._bar: Any = None
        if self.stream.isatty():
            from tqdm import tqdm

            columns = shutil.get_terminal_size((0, 0)).columns
            wide = columns >= _MIN_COLUMNS
            self._bar = tqdm(total=total, initial=min(initial.finished, total), unit="trial", desc="search",
                             file=self.stream, dynamic_ncols=wide, ncols=None if wide else _FIXED_COLUMNS)
            self._bar.set_postfix(front=initial.front)

    def update(self, counts: StudyCounts) -> None:
        """Show ``counts`` (a bar refresh, or a line when a trial finished since the last call)."""
        if self._bar is not None:
            self._bar.n = min(counts.finished, self.total)
            self._bar.set_postfix(front=counts.front, running=counts.running)
            self._bar.refresh()
        elif self._last is None or counts.finished != self._last.finished:
            log.info("search: %d/%s finished, %d running, front of %s", counts.finished,
                     _plural(self.total, "trial"), counts.running, _plural(counts.front, "trial"))
        self._last = counts

    def close(self) -> None:
        """End the bar (nothing to do in line mode)."""
        if self._bar is not None:
            self._bar.close()
