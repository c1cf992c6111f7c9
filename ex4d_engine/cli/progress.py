"""A tqdm bar fed by the engine's ``progress(fraction, stage)`` callbacks (stderr, quiet when not a TTY)."""

from __future__ import annotations

import sys


class ProgressBar:
    def __init__(self, title: str) -> None:
        self.title = title
        self._bar = None

    def __enter__(self) -> "ProgressBar":
        from tqdm import tqdm

        self._bar = tqdm(total=1000, desc=self.title, unit="‰", leave=False, disable=not sys.stderr.isatty(),
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")
        return self

    def update(self, fraction: float, stage: str = "") -> None:
        if self._bar is None:
            return
        self._bar.n = int(1000 * min(max(fraction, 0.0), 1.0))
        if stage:
            self._bar.set_description_str(f"{self.title} ({stage})", refresh=False)
        self._bar.refresh()

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()
