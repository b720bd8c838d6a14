"""Atomic writes and plain-JSON values: the one place every writer of the kit goes through.

A file is written under a temporary name beside its target and renamed onto it when complete
(``os.replace``), so an interrupted write leaves the previous file, or none, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix, so writers that pick the format from it
    work) to write to; renamed onto ``path`` when the block ends without an exception."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def atomic_write(path, write: Callable, binary: bool = False) -> None:
    """Call ``write(file)`` on a fresh temporary file beside ``path``, flush it to disk, then
    move it onto ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "xb" if binary else "x", **({} if binary else {"encoding": "utf-8"})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())


def write_text_atomic(path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text))


def write_json_atomic(path, data) -> None:
    atomic_write(path, lambda fh: json.dump(jsonable(data), fh, indent=2, default=str))


def link_or_copy_atomic(source, target) -> None:
    """``target`` becomes a hard link to (or, where links fail, a copy of) ``source``."""
    with atomic_path(target) as tmp:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def jsonable(value):
    """Plain JSON types from NumPy scalars/arrays, tuples and paths (non-finite floats stay
    NaN/Infinity)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value
