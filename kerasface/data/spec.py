"""The sample table every reader produces and every split, sampler and pipeline consumes.

A dataset is a table of samples: where the image is (a path, or a record in a TFRecord
shard), which identity it shows, and a multi-hot label vector built from label columns.
Label columns with two values become one output (the indicator of the second value in
vocabulary order, e.g. ``gender=male``); columns with more values become one output each.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path

import numpy as np


@dataclasses.dataclass
class Skipped:
    """A file (and CSV row, where there is one) left out of a dataset, and why."""

    path: str
    reason: str
    row: int | None = None

    def __str__(self) -> str:
        where = f"{self.path} (row {self.row})" if self.row is not None else self.path
        return f"{where}: {self.reason}"


@dataclasses.dataclass
class Samples:
    """Parallel arrays, one entry per sample.

    paths: absolute file paths (or ``shard#index`` for TFRecord samples, ``<rec path>#<key>``
    for RecordIO samples).
    identity: index into ``DatasetSpec.class_names``; -1 where unknown.
    labels: float32 (N, L) multi-hot matrix over ``DatasetSpec.label_names``.
    """

    paths: np.ndarray
    identity: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        self.paths = np.asarray(self.paths, dtype=object)
        self.identity = np.asarray(self.identity, dtype=np.int64)
        self.labels = np.asarray(self.labels, dtype=np.float32)
        if self.labels.ndim == 1:
            self.labels = self.labels.reshape(len(self.paths), -1)
        n = len(self.paths)
        if len(self.identity) != n or len(self.labels) != n:
            raise ValueError(
                f"sample arrays disagree in length: {n} paths, "
                f"{len(self.identity)} identities, {len(self.labels)} label rows"
            )

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, index) -> "Samples":
        index = np.asarray(index)
        return Samples(self.paths[index], self.identity[index], self.labels[index])


@dataclasses.dataclass
class DatasetSpec:
    """What a reader found: the samples, their vocabularies and what it skipped.

    skipped: unusable inputs (bad images, bad CSV rows) left out with ``skip_bad``.
    ignored: entries that are no samples by design (``pairs.txt``, ``.DS_Store``, hidden or
    empty folders), never an error.
    storage: "files" (one image file per sample path), "tfrecord" (records in the shards of
    the folder ``source``) or "recordio" (records of an MXNet RecordIO pack, sample paths
    ``<rec path>#<key>``; see ``kerasface.data.recordio``)."""

    source: str
    samples: Samples
    class_names: list[str]
    label_columns: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    skipped: list[Skipped] = dataclasses.field(default_factory=list)
    storage: str = "files"
    ignored: list[Skipped] = dataclasses.field(default_factory=list)

    @property
    def label_names(self) -> list[str]:
        return label_names(self.label_columns)

    @property
    def label_mirror(self) -> "LabelMirror | None":
        return label_mirror(self.label_columns)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def identity_counts(self) -> dict[str, int]:
        counts = Counter(self.samples.identity.tolist())
        return {self.class_names[i]: counts.get(i, 0) for i in range(len(self.class_names))}

    def column_counts(self, samples: Samples | None = None) -> dict[str, dict[str, int]]:
        """Per label column, the number of samples holding each value."""
        values = column_values(self.label_columns, (self.samples if samples is None else samples).labels)
        return {
            column: {v: int(np.sum(values[column] == k)) for k, v in enumerate(vocab)}
            for column, vocab in self.label_columns.items()
        }

    def with_samples(self, samples: Samples) -> "DatasetSpec":
        return dataclasses.replace(self, samples=samples)

    def summary(self) -> str:
        lines = [
            f"{self.source}: {len(self.samples)} samples, {self.num_classes} identities, "
            f"{self.num_labels} label outputs",
        ]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} file(s):")
            lines.extend(f"  {s}" for s in self.skipped)
        if self.ignored:
            lines.extend(ignored_lines(self.ignored, self.source))
        return "\n".join(lines)


def ignored_lines(ignored: list[Skipped], root=None, examples: int = 3) -> list[str]:
    """``ignored N non-image file(s)`` and, per reason, its count and the first few paths
    (relative to ``root`` where they lie below it)."""
    lines = [f"ignored {len(ignored)} file(s) or folder(s) that are not samples:"]
    by_reason: dict[str, list[str]] = {}
    for entry in ignored:
        path = Path(entry.path)
        name = str(path.relative_to(root)) if root and path.is_relative_to(root) else path.name
        by_reason.setdefault(entry.reason, []).append(name)
    for reason, names in by_reason.items():
        more = ", ..." if len(names) > examples else ""
        lines.append(f"  {reason} ({len(names)}): {', '.join(names[:examples])}{more}")
    return lines


def label_names(label_columns: dict[str, list[str]]) -> list[str]:
    names = []
    for column, vocab in label_columns.items():
        if len(vocab) == 2:
            names.append(f"{column}={vocab[1]}")
        else:
            names.extend(f"{column}={v}" for v in vocab)
    return names


def column_slices(label_columns: dict[str, list[str]]) -> dict[str, slice]:
    """Where each column's outputs sit in the label vector."""
    slices, start = {}, 0
    for column, vocab in label_columns.items():
        width = 1 if len(vocab) == 2 else len(vocab)
        slices[column] = slice(start, start + width)
        start += width
    return slices


MISSING_VALUE = ""


def encode_labels(label_columns: dict[str, list[str]], rows: list[dict[str, str]]) -> np.ndarray:
    """Multi-hot (N, L) matrix for rows of column -> value; a value outside the vocabulary raises.
    A missing value (an empty cell) makes that column's outputs NaN for the row."""
    slices = column_slices(label_columns)
    width = sum(s.stop - s.start for s in slices.values())
    out = np.zeros((len(rows), width), np.float32)
    for r, row in enumerate(rows):
        for column, vocab in label_columns.items():
            if row[column] == MISSING_VALUE:
                out[r, slices[column]] = np.nan
                continue
            k = vocab.index(row[column])
            if len(vocab) == 2:
                out[r, slices[column].start] = float(k)
            else:
                out[r, slices[column].start + k] = 1.0
    return out


def column_values(label_columns: dict[str, list[str]], labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per column, the vocabulary index of each sample (the inverse of ``encode_labels``); -1
    where the value is missing (NaN)."""
    labels = np.asarray(labels)
    out = {}
    for column, s in column_slices(label_columns).items():
        block = labels[:, s]
        missing = np.isnan(block).any(axis=1)
        block = np.where(np.isnan(block), 0.0, block)
        values = block[:, 0].astype(np.int64) if block.shape[1] == 1 else np.argmax(block, 1)
        out[column] = np.where(missing, -1, values)
    return out


_SIDES = re.compile(r"left|right", re.IGNORECASE)


def _mirrored(value: str) -> str:
    """``value`` with left and right exchanged (keeping case): ``"yaw_left" -> "yaw_right"``."""
    def swap(match):
        word = {"left": "right", "right": "left"}[match.group(0).lower()]
        return word.upper() if match.group(0).isupper() else word.capitalize() if match.group(0)[0].isupper() else word
    return _SIDES.sub(swap, value)


@dataclasses.dataclass(frozen=True)
class LabelMirror:
    """What a horizontal flip does to a label vector:
    ``y' = where(complement, 1 - y[permutation], y[permutation])``.

    A column whose values name a side (``pose = left | right | frontal``) has its mirror
    values swapped: two one-hot outputs exchange places, and a two-value column's single
    indicator output becomes its complement."""

    permutation: tuple[int, ...]
    complement: tuple[bool, ...]
    pairs: tuple[tuple[str, str], ...]

    def apply(self, labels: np.ndarray) -> np.ndarray:
        out = np.asarray(labels)[..., list(self.permutation)]
        return np.where(np.asarray(self.complement), 1.0 - out, out).astype(np.asarray(labels).dtype)


def label_mirror(label_columns: dict[str, list[str]]) -> LabelMirror | None:
    """The mirror of the label vector, or None when no label names a side."""
    slices = column_slices(label_columns)
    width = sum(s.stop - s.start for s in slices.values())
    permutation, complement, pairs = list(range(width)), [False] * width, []
    for column, vocab in label_columns.items():
        start = slices[column].start
        for i, value in enumerate(vocab):
            other = _mirrored(value)
            if other == value or other not in vocab or vocab.index(other) < i:
                continue
            j = vocab.index(other)
            if len(vocab) == 2:
                complement[start] = True
            else:
                permutation[start + i], permutation[start + j] = start + j, start + i
            pairs.append((f"{column}={value}", f"{column}={other}"))
    if not pairs:
        return None
    return LabelMirror(tuple(permutation), tuple(complement), tuple(pairs))
