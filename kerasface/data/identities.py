"""Which identities a run trains on: people named in list or pair files are left out (so that a
benchmark's people, such as LFW's, are never trained on), and so are identities with too few
images.

A file names people as an LFW ``pairs.txt`` (``name i j`` and ``name1 i name2 j`` lines after
its header), a ``path1,path2,same`` CSV (each image's folder is its person, as in LFW's layout),
or a list of names, one a line (empty lines and lines starting with ``#`` are skipped).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from kerasface.data.spec import DatasetSpec, Samples
from kerasface.errors import BadInputError


def _looks_like_lfw_pairs(lines: list[list[str]]) -> bool:
    header, body = lines[0], lines[1:]
    return 1 <= len(header) <= 2 and all(f.isdigit() for f in header) and bool(body) and all(
        len(fields) in (3, 4) and fields[-1].isdigit() for fields in body)


def read_identity_names(path) -> set[str]:
    """The people ``path`` names (see the module docstring)."""
    from kerasface.eval.pairs import read_lfw_pairs, read_pairs_csv

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file of identities to exclude")
    if path.suffix.lower() == ".csv":
        return {Path(p).parent.name for p in read_pairs_csv(path, check_images=False).images}
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise BadInputError(f"{path}: names no identity")
    if _looks_like_lfw_pairs([line.split() for line in lines]):
        pairs = read_lfw_pairs(path, images_dir=path.parent, check_images=False)
        return {Path(p).parent.name for p in pairs.images}
    return set(lines)


@dataclasses.dataclass
class IdentityFilter:
    """What ``filter_identities`` left out of a split."""

    named: int = 0  # identities named in the files and found in the split
    named_images: int = 0
    few_images: int = 0  # identities with fewer than the minimum images
    few_images_images: int = 0

    def describe(self, files, min_images: int) -> str:
        parts = []
        if files:
            parts.append(f"named in {', '.join(str(f) for f in files)}: {_people(self.named, self.named_images)}")
        if min_images > 1:
            parts.append(f"fewer than {min_images} images: {_people(self.few_images, self.few_images_images)}")
        return "; ".join(parts)


def _people(identities: int, images: int) -> str:
    return (f"{identities} {'identity' if identities == 1 else 'identities'}, "
            f"{images} {'image' if images == 1 else 'images'}")


def filter_identities(spec: DatasetSpec, samples: Samples, excluded: set[str] = frozenset(),
                      min_images: int = 1) -> tuple[Samples, IdentityFilter]:
    """``samples`` without the identities named in ``excluded`` and without those that hold fewer
    than ``min_images`` of them, and what was left out."""
    if min_images < 1:
        raise ValueError(f"min_images_per_identity must be >= 1, got {min_images}")
    names = np.asarray(spec.class_names, dtype=object)
    known = samples.identity >= 0
    named = np.zeros(len(samples), bool)
    named[known] = np.isin(names[samples.identity[known]], list(excluded))
    ids, counts = np.unique(samples.identity[known & ~named], return_counts=True)
    few = np.isin(samples.identity, ids[counts < min_images]) & known & ~named
    report = IdentityFilter(len(np.unique(samples.identity[named])), int(named.sum()),
                            len(np.unique(samples.identity[few])), int(few.sum()))
    return samples.subset(np.flatnonzero(~named & ~few)), report
