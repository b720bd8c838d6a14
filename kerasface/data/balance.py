"""Class balance of a sample table, and undersampling of majority label values.

Imbalance ratio of a label column = samples of its most frequent value / samples of its
least frequent value (inf when a value has no samples). Undersampling keeps a random
subset of the majority value's samples, either ``round(n_majority / factor)`` of them or
just enough that the ratio falls to a target.
"""

from __future__ import annotations

import math
import numbers
import zlib
from pathlib import Path

import numpy as np
from tabulate import tabulate

from kerasface.rounding import round_half_up
from kerasface.data.spec import DatasetSpec, Samples, column_values
from kerasface.settings_file import read_settings_file

SEED_UNDERSAMPLING = {
    "gender": 3,
    "emotion": 1.5,
    "pose": 2,
    "facial_hair": 2.25,
    "occlusion": 1.75,
    "spectacles": 2.5,
}
"""Undersampling factors of ``--undersample paper``, from a multi-task iResNet18 run (gender 5.25 -> 1.75)."""


def _imbalance(majority: int, minority: int) -> float:
    if minority > 0:
        return majority / minority
    return math.inf if majority > 0 else math.nan


def _value_counts(spec: DatasetSpec, samples: Samples) -> dict[str, dict[str, int]]:
    values = column_values(spec.label_columns, samples.labels)
    return {
        column: {v: int(np.sum(values[column] == k)) for k, v in enumerate(vocab)}
        for column, vocab in spec.label_columns.items()
    }


def _summarise(column: str, counts: dict[str, int]) -> dict:
    majority = max(counts, key=counts.get)
    minority = min(counts, key=counts.get)
    return {
        "column": column,
        "counts": counts,
        "majority": majority,
        "minority": minority,
        "ratio": _imbalance(counts[majority], counts[minority]),
    }


def label_balance(spec: DatasetSpec, samples: Samples | None = None) -> list[dict]:
    """Per label column: ``counts`` (value -> samples), ``majority``, ``minority`` and ``ratio``.

    Ties go to the value first in vocabulary order. ``ratio`` is inf where a value has no
    samples (nan where the column has none at all).
    """
    samples = spec.samples if samples is None else samples
    return [_summarise(c, counts) for c, counts in _value_counts(spec, samples).items()]


def identity_balance(spec: DatasetSpec, samples: Samples | None = None) -> dict:
    """Images per identity over the identities present: min, median, max and ratio max/min.

    ``identities`` counts the identities with at least one image; ``unknown`` the samples
    whose identity is -1 (left out of the statistics).
    """
    samples = spec.samples if samples is None else samples
    known = samples.identity[samples.identity >= 0]
    counts = np.bincount(known) if len(known) else np.zeros(0, np.int64)
    counts = counts[counts > 0]
    if len(counts) == 0:
        return {"identities": 0, "unknown": int(len(samples) - len(known)), "min": 0,
                "median": math.nan, "max": 0, "ratio": math.nan}
    return {
        "identities": int(len(counts)),
        "unknown": int(len(samples) - len(known)),
        "min": int(counts.min()),
        "median": float(np.median(counts)),
        "max": int(counts.max()),
        "ratio": float(counts.max() / counts.min()),
    }


def _format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{v}: {n}" for v, n in counts.items())


def balance_table(spec: DatasetSpec, samples: Samples | None = None) -> str:
    """Label-column and images-per-identity balance as two plain-text tables."""
    rows = [
        [r["column"], _format_counts(r["counts"]), r["majority"], r["minority"], f"{r['ratio']:.4g}"]
        for r in label_balance(spec, samples)
    ]
    labels = tabulate(rows, headers=["column", "counts", "majority", "minority", "imbalance"])
    ident = identity_balance(spec, samples)
    identities = tabulate(
        [[ident["identities"], ident["unknown"], ident["min"], f"{ident['median']:g}",
          ident["max"], f"{ident['ratio']:.4g}"]],
        headers=["identities", "unknown id", "min imgs", "median imgs", "max imgs", "max/min"],
    )
    return f"{labels}\n\n{identities}" if rows else identities


def _check_columns(spec: DatasetSpec, columns) -> None:
    for column in columns:
        if column not in spec.label_columns:
            raise ValueError(
                f"unknown label column {column!r} in undersampling settings; "
                f"available columns: {', '.join(spec.label_columns) or '(none)'}"
            )


def _check_amount(what: str, column: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"undersampling {what} for {column!r} must be a finite number, got {value!r}")
    if value < 1:
        raise ValueError(f"undersampling {what} for {column!r} must be >= 1, got {value!r}")
    return float(value)


def _column_rng(seed: int, column: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(column.encode())])


def undersample(
    spec: DatasetSpec,
    samples: Samples | None = None,
    factors: dict[str, float] | None = None,
    target_ratio: dict[str, float] | float | None = None,
    seed: int = 0,
) -> Samples:
    """Drop random samples of majority label values; returns the kept samples in original order.

    ``factors``: per column, keep ``round(n_majority / factor)`` (halves round up) of the
    majority value's samples, e.g. ``SEED_UNDERSAMPLING``.
    ``target_ratio``: per column (or one number for every column), reduce each value with
    more than ``floor(target * n_minority)`` samples to that many; the minority (the
    smallest value that has samples) is never reduced.
    A sample whose value of a column is missing is never dropped for that column.
    Columns are processed in the order given, each on what the previous one kept. The
    samples a column drops depend only on ``seed``, the column name and its input, so one
    call equals the chain of single-column calls with the same seed.
    """
    samples = spec.samples if samples is None else samples
    if factors is not None and target_ratio is not None:
        raise ValueError("give undersampling factors or a target_ratio, not both")
    if factors is None and target_ratio is None:
        return samples.subset(np.arange(len(samples)))
    if factors is not None:
        amounts, mode = dict(factors), "factor"
    elif isinstance(target_ratio, dict):
        amounts, mode = dict(target_ratio), "target ratio"
    else:
        amounts, mode = {c: target_ratio for c in spec.label_columns}, "target ratio"
    _check_columns(spec, amounts)
    amounts = {c: _check_amount(mode, c, a) for c, a in amounts.items()}

    all_values = column_values(spec.label_columns, samples.labels)
    kept = np.arange(len(samples))
    for column, amount in amounts.items():
        values = all_values[column][kept]
        counts = np.bincount(values[values >= 0], minlength=len(spec.label_columns[column]))
        limits = counts.copy()
        if mode == "factor":
            majority = int(np.argmax(counts))
            limits[majority] = round_half_up(counts[majority] / amount)
        else:
            present = counts[counts > 0]
            if len(present):
                cap = int(math.floor(amount * present.min() + 1e-9))
                limits = np.minimum(counts, cap)
        rng = _column_rng(seed, column)
        drop = []
        for value in np.flatnonzero(limits < counts):
            members = np.flatnonzero(values == value)
            drop.append(rng.choice(members, size=counts[value] - limits[value], replace=False))
        if drop:
            keep_mask = np.ones(len(kept), bool)
            keep_mask[np.concatenate(drop)] = False
            kept = kept[keep_mask]
    return samples.subset(kept)


def undersample_report(before: Samples, after: Samples, spec: DatasetSpec) -> list[dict]:
    """Per label column: value counts and imbalance ratio before and after undersampling."""
    rows = []
    for b, a in zip(label_balance(spec, before), label_balance(spec, after)):
        rows.append({
            "column": b["column"],
            "before": b["counts"],
            "after": a["counts"],
            "ratio_before": b["ratio"],
            "ratio_after": a["ratio"],
        })
    return rows


def undersample_table(before: Samples, after: Samples, spec: DatasetSpec) -> str:
    """``undersample_report`` as a plain-text table, with the sample totals."""
    rows = [
        [r["column"], _format_counts(r["before"]), _format_counts(r["after"]),
         f"{r['ratio_before']:.4g}", f"{r['ratio_after']:.4g}"]
        for r in undersample_report(before, after, spec)
    ]
    table = tabulate(rows, headers=["column", "before", "after", "imbalance before", "after"])
    return f"{table}\n{len(before)} -> {len(after)} samples"


def load_undersampling_config(path) -> dict:
    """Read ``{"factors": {column: factor}}`` or ``{"target_ratio": number | {column: number}}``.

    JSON for ``.json`` files, YAML otherwise; an optional integer ``seed`` may sit beside
    either. The result can be passed on as ``undersample(spec, **config)``.
    """
    path = Path(path)
    raw = read_settings_file(path, "undersampling config")
    expected = 'expected {"factors": {column: factor}} or {"target_ratio": number or {column: number}}'
    unknown = set(raw) - {"factors", "target_ratio", "seed"}
    if unknown:
        raise ValueError(f"undersampling config {path}: unknown key(s) {sorted(unknown)}; {expected}")
    if ("factors" in raw) == ("target_ratio" in raw):
        raise ValueError(f"undersampling config {path}: {expected} (exactly one of the two)")

    config = {}
    try:
        if "factors" in raw:
            if not isinstance(raw["factors"], dict):
                raise ValueError(f"'factors' must map column -> factor, got {raw['factors']!r}")
            config["factors"] = {str(c): _check_amount("factor", c, f) for c, f in raw["factors"].items()}
        else:
            target = raw["target_ratio"]
            if isinstance(target, dict):
                config["target_ratio"] = {str(c): _check_amount("target ratio", c, t) for c, t in target.items()}
            else:
                config["target_ratio"] = _check_amount("target ratio", "every column", target)
        if "seed" in raw:
            if isinstance(raw["seed"], bool) or not isinstance(raw["seed"], int):
                raise ValueError(f"'seed' must be an integer, got {raw['seed']!r}")
            config["seed"] = raw["seed"]
    except ValueError as err:
        raise ValueError(f"undersampling config {path}: {err}") from None
    return config
