"""Face-verification pair sets: LFW ``pairs.txt``, insightface ``.bin`` files and pair CSVs.

Every reader gives a ``PairSet``: ``images`` holds two entries per pair, in pair order (pair k
is ``images[2k]``, ``images[2k + 1]``), each a file path or the encoded image bytes.

- LFW ``pairs.txt`` (Huang et al., "Labeled Faces in the Wild", 2007): a header ``F N`` (F folds
  of N same-person pairs then N different-person pairs; ``10 300`` for View 2) or ``N`` (one set,
  as pairsDevTrain.txt), then ``name i j`` (same person) or ``name1 i name2 j`` (different
  people); images are ``<root>/<name>/<name>_<iiii>.jpg``. Folds are the declared ones; a file of
  one set is cut into ten folds, each with a tenth of its same and of its different pairs in order
  (contiguous folds of "N same then N different" would hold one class each).
- insightface ``.bin`` (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``): a pickle of
  ``(list of encoded images, list of bools)``, pair k = images 2k and 2k + 1. It is read by an
  unpickler that resolves no global at all, so a pickle that would run code is refused before
  anything runs. Ten contiguous folds.
- CSV with columns ``path1,path2,same`` (paths relative to the CSV's folder, or absolute; same in
  0/1/true/false). Ten contiguous folds.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import pickle
from pathlib import Path

import numpy as np

from kerasface.errors import BadInputError

DEFAULT_FOLDS = 10
_TRUE = {"1", "true", "yes", "same"}
_FALSE = {"0", "false", "no", "different"}


@dataclasses.dataclass
class PairSet:
    """Pairs to verify: ``images`` (2 per pair), ``issame`` (bool per pair), ``folds`` (int per pair)."""

    name: str
    images: list
    issame: np.ndarray
    folds: np.ndarray
    source: str = ""

    def __post_init__(self):
        self.issame = np.asarray(self.issame, dtype=bool)
        self.folds = np.asarray(self.folds, dtype=np.int64)
        if len(self.images) != 2 * len(self.issame) or len(self.folds) != len(self.issame):
            raise BadInputError(
                f"{self.source or self.name}: {len(self.images)} images, {len(self.issame)} labels and "
                f"{len(self.folds)} fold ids; a pair set needs 2 images, 1 label and 1 fold id per pair")

    @property
    def num_pairs(self) -> int:
        return len(self.issame)

    @property
    def num_folds(self) -> int:
        return len(np.unique(self.folds))


def contiguous_folds(num_pairs: int, folds: int = DEFAULT_FOLDS) -> np.ndarray:
    """Fold id of each pair for ``folds`` contiguous folds in order, sized as scikit-learn's
    ``KFold(folds, shuffle=False)``: the first ``num_pairs % folds`` folds hold one pair more."""
    if folds < 1 or folds > num_pairs:
        raise BadInputError(f"cannot split {num_pairs} pair(s) into {folds} folds")
    sizes = np.full(folds, num_pairs // folds)
    sizes[: num_pairs % folds] += 1
    return np.repeat(np.arange(folds), sizes)


def load_pair_set(path, images_dir=None, name: str | None = None) -> PairSet:
    """A pair set by its file: ``*.bin`` (insightface), ``*.csv``, anything else LFW pairs.txt
    (a folder means its ``pairs.txt``); ``images_dir`` is the image root of a pairs.txt (the
    other formats name their images themselves and ignore it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "pairs.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such pairs file")
    suffix = path.suffix.lower()
    if suffix == ".bin":
        return read_bin(path, name=name)
    if suffix == ".csv":
        return read_pairs_csv(path, name=name)
    return read_lfw_pairs(path, images_dir=images_dir, name=name)


# LFW pairs.txt

def default_image_root(pairs_path) -> Path:
    """The pairs file's folder, or its ``images/`` sub-folder when there is one."""
    folder = Path(pairs_path).parent
    return folder / "images" if (folder / "images").is_dir() else folder


def lfw_image_path(root, name: str, index: int) -> Path:
    return Path(root) / name / f"{name}_{index:04d}.jpg"


def _index(text: str, path, number: int, line: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise BadInputError(f"{path}, line {number}: image number {text!r} is not a positive integer: {line!r}")
    return value


def read_lfw_pairs(path, images_dir=None, name: str | None = None, check_images: bool = True) -> PairSet:
    """LFW ``pairs.txt`` over an LFW-style image folder (default ``default_image_root``)."""
    path = Path(path)
    root = Path(images_dir) if images_dir is not None else default_image_root(path)
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: image folder of {path} not found (give it with --images)")
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = [(n, line.strip()) for n, line in enumerate(handle, 1)]
    lines = [(n, line) for n, line in lines if line]
    if not lines:
        raise BadInputError(f"{path}: empty pairs file")
    header_number, header = lines[0]
    counts = header.split()
    if not (1 <= len(counts) <= 2 and all(c.isdigit() and int(c) > 0 for c in counts)):
        raise BadInputError(
            f"{path}, line {header_number}: expected the header 'FOLDS PAIRS' (such as '10 300') or 'PAIRS', "
            f"got {header!r}")
    num_folds, per_class = (int(counts[0]), int(counts[1])) if len(counts) == 2 else (1, int(counts[0]))
    body = lines[1:]
    expected = num_folds * 2 * per_class
    if len(body) != expected:
        raise BadInputError(
            f"{path}: the header {header!r} declares {num_folds} fold(s) of {per_class} same and {per_class} "
            f"different pairs ({expected} lines), but the file has {len(body)} pair lines")
    images, issame = [], []
    for number, line in body:
        fields = line.split()
        if len(fields) == 3:
            person, i, j = fields
            pair = (lfw_image_path(root, person, _index(i, path, number, line)),
                    lfw_image_path(root, person, _index(j, path, number, line)))
            same = True
        elif len(fields) == 4:
            pair = (lfw_image_path(root, fields[0], _index(fields[1], path, number, line)),
                    lfw_image_path(root, fields[2], _index(fields[3], path, number, line)))
            same = False
        else:
            raise BadInputError(
                f"{path}, line {number}: expected 'name i j' or 'name1 i name2 j', got {line!r}")
        images.extend(str(p) for p in pair)
        issame.append(same)
        if check_images:
            for image in pair:
                if not image.is_file():
                    raise BadInputError(f"{path}, line {number}: image {image} not found")
    issame = np.array(issame)
    if num_folds > 1:
        folds = np.arange(expected) // (2 * per_class)
    else:
        folds = np.empty(expected, np.int64)
        for label in (True, False):
            folds[issame == label] = contiguous_folds(per_class, min(DEFAULT_FOLDS, per_class))
    return PairSet(name or _set_name(path), images, issame, folds, str(path))


def _set_name(path: Path) -> str:
    """A pairs.txt is named by its folder (``lfw/pairs.txt`` -> ``lfw``), other files by their stem."""
    if path.stem.lower().startswith("pairs") and path.parent.name:
        return path.parent.name
    return path.stem


# insightface .bin

class _PlainUnpickler(pickle.Unpickler):
    """Admits only pickle's own values (tuples, lists, bytes, str, numbers, bools, None): every
    global is refused before it is imported, so no constructor, reduce or function runs.

    The one exception is ``_codecs.encode``, which Python 3 uses to pickle ``bytes`` under
    protocol 2; it is replaced by a function that only turns a str into latin-1 bytes."""

    def find_class(self, module, name):
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise pickle.UnpicklingError(
            f"refuses the global {module}.{name}: only plain lists of encoded images and bools are read")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refuses persistent ids")


def _latin1_encode(text, encoding="latin1"):
    if not isinstance(text, str) or str(encoding).replace("-", "").lower() not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError("refuses _codecs.encode other than str -> latin-1 bytes")
    return text.encode("latin1")


def load_plain_pickle(data: bytes, source: str = "pickle"):
    """Unpickle ``data`` admitting plain values only (see ``_PlainUnpickler``); Python 2 strings
    come back as bytes."""
    try:
        return _PlainUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
            AttributeError, UnicodeDecodeError, MemoryError) as error:
        raise BadInputError(f"{source}: not a plain pickle of (images, issame): {error}") from None


def read_bin(path, name: str | None = None) -> PairSet:
    """An insightface ``.bin`` verification set: ``(bins, issame_list)`` with ``bins[2k]`` and
    ``bins[2k + 1]`` the encoded images of pair k."""
    path = Path(path)
    data = load_plain_pickle(path.read_bytes(), str(path))
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise BadInputError(
            f"{path}: expected a pickle of (list of encoded images, list of bools), got {_describe(data)}")
    images, labels = data
    if not isinstance(images, (list, tuple)) or not isinstance(labels, (list, tuple)):
        raise BadInputError(
            f"{path}: expected (list of encoded images, list of bools), got ({_describe(images)}, "
            f"{_describe(labels)})")
    for k, image in enumerate(images):
        if not isinstance(image, (bytes, bytearray)):
            raise BadInputError(
                f"{path}: image {k} is {_describe(image)}, not encoded image bytes (only bytes are read)")
    issame = []
    for k, value in enumerate(labels):
        if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
            issame.append(bool(value))
        else:
            raise BadInputError(f"{path}: issame[{k}] is {_describe(value)}, not a bool")
    if len(images) != 2 * len(issame) or not issame:
        raise BadInputError(
            f"{path}: {len(images)} images for {len(issame)} pairs; a .bin holds 2 images per pair")
    images = [bytes(image) for image in images]
    return PairSet(name or path.stem, images, np.array(issame),
                   contiguous_folds(len(issame), min(DEFAULT_FOLDS, len(issame))), str(path))


def _describe(value) -> str:
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    return type(value).__name__


# CSV

def _same(text: str, path, number: int) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadInputError(f"{path}, line {number}: 'same' must be 0, 1, true or false, got {text!r}")


def read_pairs_csv(path, name: str | None = None, check_images: bool = True) -> PairSet:
    """A CSV with the columns ``path1,path2,same`` (header required)."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        rows = [(reader.line_num, row) for row in reader]
    rows = [(n, row) for n, row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise BadInputError(f"{path}: empty pairs CSV")
    header = [cell.strip().lower() for cell in rows[0][1]]
    missing = [c for c in ("path1", "path2", "same") if c not in header]
    if missing:
        raise BadInputError(f"{path}, line {rows[0][0]}: expected the header path1,path2,same; missing {missing}")
    columns = [header.index(c) for c in ("path1", "path2", "same")]
    images, issame = [], []
    for number, row in rows[1:]:
        if len(row) < len(header):
            raise BadInputError(f"{path}, line {number}: {len(row)} fields, expected {len(header)}")
        first, second, same = (row[c].strip() for c in columns)
        pair = []
        for text in (first, second):
            image = Path(text) if os.path.isabs(text) else path.parent / text
            if not text or (check_images and not image.is_file()):
                raise BadInputError(f"{path}, line {number}: image {image if text else '(empty)'} not found")
            pair.append(str(image))
        images.extend(pair)
        issame.append(_same(same, path, number))
    if not issame:
        raise BadInputError(f"{path}: no pairs under the header")
    return PairSet(name or path.stem, images, np.array(issame),
                   contiguous_folds(len(issame), min(DEFAULT_FOLDS, len(issame))), str(path))
