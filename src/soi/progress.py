"""Progress bars for long work (enhancing a long file, exporting, benchmarking, evaluating,
generating, training): tqdm on stderr, shown only where someone watches.

A bar is drawn only when it is asked for *and* stderr is a terminal: in a log file or a pipe its
carriage returns would be noise, and stdout stays clean for the results either way. Without tqdm
installed there is no bar.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["on_terminal", "progress_bar"]


def on_terminal(wanted: bool = True) -> bool:
    """Whether a progress display should be drawn: ``wanted`` and stderr is a terminal."""
    return wanted and sys.stderr.isatty()


class _NoBar:
    """The calls of a tqdm bar, doing nothing (tqdm is not installed)."""

    def update(self, n: float = 1) -> None:
        pass

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: float | None = None, *, desc: str, unit: str = "it", enabled: bool = True, **kwargs: Any) -> Any:
    """A tqdm bar on stderr, drawn when ``enabled`` and stderr is a terminal (:func:`on_terminal`);
    otherwise an object with the same ``update`` / ``set_postfix`` / ``close`` calls that draws
    nothing. ``kwargs`` go to ``tqdm``."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not on_terminal(enabled), dynamic_ncols=True, **kwargs)
