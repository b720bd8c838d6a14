"""Per-epoch tables from a Keras ``History.history`` dict, as grids.

For each shown epoch a "Metric | Train | Validation" grid (headed Test instead where the
held-out split is the test split); keys with a ``val_`` prefix are the validation values of
the unprefixed metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from tabulate import tabulate

from kerasface.report.card import format_number

VALIDATION_PREFIX = "val_"


def clean_history(history) -> dict[str, list[float]]:
    """``History.history`` (or the History itself) as metric -> list of floats."""
    history = getattr(history, "history", history)
    if not isinstance(history, Mapping):
        raise TypeError(f"history must be a dict of metric -> per-epoch values, got {type(history).__name__}")
    out = {}
    for name, values in history.items():
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise TypeError(f"history[{name!r}] must be a list of per-epoch values, got {values!r}")
        out[str(name)] = [float(v) for v in values]
    return out


def num_epochs(history: Mapping[str, list[float]]) -> int:
    return max((len(v) for v in history.values()), default=0)


def metric_names(history: Mapping[str, list[float]]) -> list[str]:
    """Base metric names (``val_`` stripped), loss first, then in the order Keras logged them."""
    names = []
    for key in history:
        base = key[len(VALIDATION_PREFIX):] if key.startswith(VALIDATION_PREFIX) else key
        if base not in names:
            names.append(base)
    return sorted(names, key=lambda n: n != "loss")


def epoch_value(history: Mapping[str, list[float]], key: str, epoch: int) -> float | None:
    """The value of ``key`` at 1-based ``epoch``; None where it was not logged."""
    values = history.get(key, [])
    return values[epoch - 1] if epoch <= len(values) else None


def shown_epochs(n: int, max_shown: int = 10) -> list[int]:
    """All epochs when n <= max_shown, else the first, every k-th and the last (1-based)."""
    if n <= max_shown:
        return list(range(1, n + 1))
    step = math.ceil(n / max_shown)
    return sorted({1, n, *range(step, n + 1, step)})


def epoch_rows(history: Mapping[str, list[float]], epoch: int, names: list[str] | None = None,
               test_prefix: str = VALIDATION_PREFIX) -> list[list[str]]:
    return [
        [
            name,
            format_number(epoch_value(history, name, epoch)),
            format_number(epoch_value(history, test_prefix + name, epoch)),
        ]
        for name in (metric_names(history) if names is None else names)
    ]


def epoch_grid(history: Mapping[str, list[float]], epoch: int, names: list[str] | None = None,
               test_prefix: str = VALIDATION_PREFIX, test_header: str = "Validation") -> str:
    """One fancy_grid "Metric | Train | Validation" table of ``epoch``: every logged metric, or the
    rows ``names`` (a name not logged shows "-"); the second column reads ``test_prefix + name``."""
    return tabulate(
        epoch_rows(history, epoch, names, test_prefix),
        headers=["Metric", "Train", test_header],
        tablefmt="fancy_grid",
        disable_numparse=True,
    )


def epoch_grids(history: Mapping[str, list[float]], epochs: list[int], names: list[str] | None = None,
                test_prefix: str = VALIDATION_PREFIX, test_header: str = "Validation") -> str:
    """One ``epoch_grid`` per epoch, each under "Epoch e/n"."""
    n = num_epochs(history)
    return "\n\n".join(f"Epoch {epoch}/{n}\n" + epoch_grid(history, epoch, names, test_prefix, test_header)
                        for epoch in epochs)


def notes_tables(history: Mapping[str, list[float]], epochs: list[int], per_table: int = 4) -> list[str]:
    """GitHub tables of the form ``| metric | train e10 | val e10 | ... |``, a few epochs each."""
    names = metric_names(history)
    tables = []
    for start in range(0, len(epochs), per_table):
        chunk = epochs[start : start + per_table]
        headers = ["metric"] + [f"{side} e{e}" for e in chunk for side in ("train", "val")]
        rows = [
            [name]
            + [
                format_number(epoch_value(history, prefix + name, e))
                for e in chunk
                for prefix in ("", VALIDATION_PREFIX)
            ]
            for name in names
        ]
        tables.append(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
    return tables
