"""Progress bars for long work: shown on a terminal, silent in logs and pipes."""

from __future__ import annotations


def progress_bar(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "img",
                 enabled: bool = True, leave: bool = True):
    """A tqdm bar, or a silent one when ``enabled`` is False or stderr is not a terminal."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, disable=None if enabled else True)
