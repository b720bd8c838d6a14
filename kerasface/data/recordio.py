"""MXNet RecordIO packs (insightface's ``train.rec`` + ``train.idx`` + ``property``), read
straight into tf.data without mxnet, and a small writer for tests and conversion.

This is how CASIA-WebFace, MS1M-ArcFace (``faces_emore``) and Glint360K are distributed.

The format, byte for byte (dmlc-core ``recordio.h``, mxnet ``recordio.py``):

* ``train.rec`` is a sequence of records, each starting at a multiple of 4 bytes:
  uint32 little-endian magic ``0xced7230a``, uint32 ``lrecord`` (continuation flag in the upper
  3 bits, part length in the lower 29), the part's bytes, zero padding to a multiple of 4. A
  payload holding the magic at a 4-byte aligned position is cut there into parts (flag 1 first,
  2 middle, 3 last; 0 for a record in one part) and the magic itself is dropped; a reader joins
  the parts with the magic between them.
* A payload is an ``IRHeader`` (``<IfQQ``: flag uint32, label float32, id uint64, id2 uint64;
  24 bytes); when ``flag > 0``, ``flag`` float32 labels follow it (and the header's label field
  is unused); the rest is the encoded image (JPEG/PNG).
* ``train.idx`` holds a ``key<TAB>byte offset`` line per record.
* insightface's layout: record 0 is a header whose labels are ``(first, end)``: image records are
  keys ``1 .. first-1``, and keys ``first .. end-1`` are one record per identity whose labels are
  the ``[start, stop)`` range of its image keys. An image record's label (or ``labels[0]``) is its
  identity. Without such a header (no key 0, or key 0 with ``flag == 0``) every key is an image,
  in ``train.idx`` order, exactly as insightface's ``MXFaceDataset`` reads a pack.
* ``property`` is one line ``num_classes,height,width``.

Reading cost: ``read_recordio`` parses ``train.idx`` and reads the first bytes of every record
(magic, length, IRHeader, first label) through a memory map, vectorised with NumPy: no image is
read or decoded (docs/benchmarks.md, "RecordIO index"); from a cold disk it is one small
random read per record, bound by the disk's random-read rate.
Images are read by the pipeline: ``pread`` (no shared file position), ``READ_BATCH`` records
per Python call, calls in parallel.
"""

from __future__ import annotations

import functools
import numbers
import os
import struct
import threading
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import tensorflow as tf

from kerasface.data.spec import DatasetSpec, Samples
from kerasface.errors import BadInputError
from kerasface.fileio import atomic_path, write_text_atomic
from kerasface.progress import progress_bar

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
LENGTH_MASK = (1 << 29) - 1
IR_FORMAT = "<IfQQ"
IR_SIZE = struct.calcsize(IR_FORMAT)  # 24
REC_NAME, IDX_NAME, PROPERTY_NAME = "train.rec", "train.idx", "property"
# Every key an insightface header names must be exact in float32.
MAX_KEY = 2**24
# Records the pipeline reads per Python call.
READ_BATCH = 32


def encode_lrecord(cflag: int, length: int) -> int:
    return (cflag << 29) | length


def _padded(length):
    return (length + 3) & ~3


def encode_record(payload: bytes) -> bytes:
    """One record's bytes as dmlc-core's ``RecordIOWriter::WriteRecord`` writes them: cut into
    parts at every 4-byte aligned magic in ``payload`` (dropping it), then zero padding."""
    payload = bytes(payload)
    size = len(payload)
    if size > LENGTH_MASK:
        raise ValueError(f"a RecordIO record holds less than 2**29 bytes, got {size}")
    out, start = [], 0
    found = payload.find(MAGIC_BYTES)
    while 0 <= found and found + 4 <= size:
        if found % 4:
            found = payload.find(MAGIC_BYTES, found + 1)
            continue
        out += [MAGIC_BYTES, struct.pack("<I", encode_lrecord(1 if start == 0 else 2, found - start)),
                payload[start:found]]
        start = found + 4
        found = payload.find(MAGIC_BYTES, start)
    out += [MAGIC_BYTES, struct.pack("<I", encode_lrecord(3 if start else 0, size - start)),
            payload[start:], b"\0" * (_padded(size) - size)]
    return b"".join(out)


def pack_payload(label, image: bytes = b"", record_id: int = 0, id2: int = 0) -> bytes:
    """mxnet's ``recordio.pack``: a number is stored in the header (flag 0); a sequence becomes
    ``flag = len`` float32 labels after the header."""
    if isinstance(label, numbers.Number):
        return struct.pack(IR_FORMAT, 0, float(label), record_id, id2) + bytes(image)
    labels = np.asarray(label, dtype="<f4").ravel()
    return struct.pack(IR_FORMAT, labels.size, 0.0, record_id, id2) + labels.tobytes() + bytes(image)


def unpack_payload(payload: bytes, where: str = "record"):
    """``(flag, label, labels, image)`` of a record's payload (``labels`` empty when flag 0)."""
    if len(payload) < IR_SIZE:
        raise BadInputError(f"{where}: {len(payload)} bytes, too short for an IRHeader ({IR_SIZE} bytes)")
    flag, label, _, _ = struct.unpack_from(IR_FORMAT, payload)
    end = IR_SIZE + 4 * flag
    if end > len(payload):
        raise BadInputError(f"{where}: the IRHeader announces {flag} labels, more than the "
                            f"{len(payload)}-byte record holds")
    labels = np.frombuffer(payload, "<f4", flag, IR_SIZE)
    return flag, label, labels, payload[end:]


def read_record(read, size: int, offset: int, where: str) -> bytes:
    """The payload of the record at ``offset``, its parts joined (dmlc ``NextRecord``);
    ``read(offset, n)`` returns bytes of the file, ``size`` is its length."""
    parts, pos = [], offset
    while True:
        if pos + 8 > size:
            raise BadInputError(
                f"{where}: truncated (its next part would start at byte {pos}, the file ends at {size})"
                if parts else f"{where}: beyond the end of the file ({size} bytes; idx and rec do not match?)")
        magic, lrecord = struct.unpack("<II", read(pos, 8))
        cflag, length = lrecord >> 29, lrecord & LENGTH_MASK
        if magic != MAGIC:
            raise BadInputError(f"{where}: bad magic (idx and rec do not match?)" if not parts else
                                f"{where}: truncated or corrupt, no record part at byte {pos} (bad magic)")
        if cflag > 3:
            raise BadInputError(f"{where}: bad record flag {cflag} at byte {pos} (idx and rec do not match?)")
        if not parts and cflag >= 2:
            raise BadInputError(f"{where}: points into the middle of a multi-part record "
                                "(idx and rec do not match?)")
        if parts and cflag < 2:
            raise BadInputError(f"{where}: corrupt multi-part record, the part at byte {pos} has flag {cflag}")
        end = pos + 8 + _padded(length)
        if end > size:
            raise BadInputError(f"{where}: truncated (the record needs bytes up to {end}, "
                                f"the file ends at {size})")
        parts.append(read(pos + 8, length))
        pos = end
        if cflag in (0, 3):
            return MAGIC_BYTES.join(parts)


# ----------------------------------------------------------------------------------- reading


def _locate(path) -> tuple[Path, Path, Path, str]:
    """(rec, idx, property, source) for a pack folder or a ``.rec`` path."""
    path = Path(path).expanduser().resolve()
    if path.is_dir():
        rec, idx, source = path / REC_NAME, path / IDX_NAME, str(path)
    else:
        if path.suffix.lower() != ".rec":
            raise BadInputError(f"{path}: not a RecordIO pack; expected a folder holding {REC_NAME} "
                                f"and {IDX_NAME}, or a .rec file")
        rec, idx, source = path, path.with_suffix(".idx"), str(path)
    for file, what in ((rec, "record file"), (idx, "index")):
        if not file.is_file():
            raise BadInputError(f"{file}: no such file; a RecordIO pack needs its {what} "
                                f"({rec.name} with {idx.name} beside it)")
    return rec, idx, rec.parent / PROPERTY_NAME, source


def idx_path_of(rec) -> Path:
    return Path(rec).with_suffix(".idx")


def load_idx(idx) -> tuple[np.ndarray, np.ndarray]:
    """(keys, offsets) of ``train.idx`` in file order, int64, read-only; cached per file version."""
    idx = Path(idx)
    stat = idx.stat()
    return _load_idx(str(idx), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _load_idx(idx: str, mtime_ns: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    data = Path(idx).read_bytes()
    tokens = data.split()
    lines = sum(1 for line in data.splitlines() if line.strip())
    table = None
    if len(tokens) == 2 * lines:
        try:
            table = np.array(tokens).astype(np.int64).reshape(-1, 2) if tokens else np.zeros((0, 2), np.int64)
        except (ValueError, OverflowError):
            table = None
    if table is None:  # find the line at fault
        for number, line in enumerate(data.splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            try:
                if len(fields) != 2:
                    raise ValueError
                int(fields[0]), int(fields[1])
            except ValueError:
                raise BadInputError(f"{idx}: line {number}: expected 'key<TAB>offset', got "
                                    f"{line[:80].decode(errors='replace')!r}") from None
        raise BadInputError(f"{idx}: unreadable index")  # pragma: no cover
    if len(table) == 0:
        raise BadInputError(f"{idx}: empty index, no records")
    keys, offsets = table[:, 0].copy(), table[:, 1].copy()
    unique, counts = np.unique(keys, return_counts=True)
    if len(unique) != len(keys):
        key = int(unique[np.argmax(counts > 1)])
        raise BadInputError(f"{idx}: key {key} is listed {int(counts.max())} times")
    keys.flags.writeable = offsets.flags.writeable = False
    return keys, offsets


def _positions(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Index into ``keys`` of every key in ``wanted``; -1 where absent."""
    order = np.argsort(keys, kind="stable")
    found = np.searchsorted(keys, wanted, sorter=order)
    found = np.minimum(found, len(keys) - 1)
    pos = order[found]
    return np.where(keys[pos] == wanted, pos, -1)


def _first_bad(mask, message) -> None:
    """Raise ``message(i)`` for the first record flagged in ``mask``, with a count of the rest."""
    _first_problem([(mask, message)])


def _first_problem(checks) -> None:
    """``checks``: (mask, message) pairs in order of precedence. Raise the message of the first
    record (in index order) flagged by any mask, with a count of the other flagged records."""
    flagged = np.zeros(len(checks[0][0]), bool)
    for mask, _ in checks:
        flagged |= mask
    bad = np.flatnonzero(flagged)
    if len(bad):
        i = int(bad[0])
        message = next(message for mask, message in checks if mask[i])
        more = f" (and {len(bad) - 1} more bad record(s))" if len(bad) > 1 else ""
        raise BadInputError(message(i) + more)


class _Records:
    """Vectorised checks of every record's 8-byte header and the first bytes of its payload."""

    def __init__(self, rec: Path, keys: np.ndarray, offsets: np.ndarray):
        self.rec, self.keys, self.offsets = rec, keys, offsets
        self.size = rec.stat().st_size
        self._bytes = np.memmap(rec, np.uint8, "r") if self.size else np.zeros(0, np.uint8)
        self._words = (np.memmap(rec, "<u4", "r", shape=(self.size // 4,)) if self.size >= 4
                       else np.zeros(0, "<u4"))
        self.joined: dict[int, bytes] = {}  # idx position -> payload, for multi-part records

    def where(self, i: int) -> str:
        return f"{self.rec} record {self.keys[i]} at byte {self.offsets[i]}"

    def read(self, offset: int, n: int) -> bytes:
        return self._bytes[offset:offset + n].tobytes()

    def word(self, i: np.ndarray, k: int) -> np.ndarray:
        """The k-th uint32 of each record in ``i`` (0 where past the end of the file)."""
        at = self.offsets[i] // 4 + k
        inside = (at >= 0) & (at < len(self._words))
        return np.where(inside, self._words[np.where(inside, at, 0)] if len(self._words) else 0, 0)

    def check(self) -> None:
        """Every index entry inside the file, at a record boundary holding the magic, and its
        record not cut short; raises for the first bad entry in index order."""
        offsets, size, every = self.offsets, self.size, np.arange(len(self.offsets))
        lrecord = self.word(every, 1).astype(np.int64)
        self.cflag, self.length = lrecord >> 29, lrecord & LENGTH_MASK
        end = offsets + 8 + _padded(self.length)
        _first_problem([
            (offsets + 8 > size, lambda i: f"{self.where(i)}: beyond the end of the file "
             f"({size} bytes; idx and rec do not match?)"),
            ((offsets < 0) | (offsets % 4 != 0), lambda i: f"{self.where(i)}: not a record boundary, "
             "records start at multiples of 4 bytes (idx and rec do not match?)"),
            (self.word(every, 0) != MAGIC, lambda i: f"{self.where(i)}: bad magic (idx and rec do not match?)"),
            (self.cflag > 3, lambda i: f"{self.where(i)}: bad record flag {self.cflag[i]} "
             "(idx and rec do not match?)"),
            (self.cflag >= 2, lambda i: f"{self.where(i)}: points into the middle of a multi-part record "
             "(idx and rec do not match?)"),
            ((self.cflag == 0) & (end > size), lambda i: f"{self.where(i)}: truncated (the record needs "
             f"bytes up to {end[i]}, the file ends at {size})"),
        ])
        for i in np.flatnonzero(self.cflag == 1):  # rare: walk and join the parts
            self.joined[int(i)] = read_record(self.read, size, int(offsets[i]), self.where(int(i)))

    def payload(self, i: int) -> bytes:
        if i in self.joined:
            return self.joined[i]
        return self.read(int(self.offsets[i]) + 8, int(self.length[i]))

    def identities(self, images: np.ndarray) -> np.ndarray:
        """The identity (label, or labels[0] with flag > 0) of the image records at ``images``."""
        whole = self.cflag[images] == 0
        length = self.length[images]
        _first_bad(whole & (length < IR_SIZE), lambda j: f"{self.where(images[j])}: {length[j]} bytes, "
                   f"too short for an IRHeader ({IR_SIZE} bytes)")
        flag = self.word(images, 2).astype(np.int64)
        need = IR_SIZE + 4 * flag
        _first_bad(whole & (need > length), lambda j: f"{self.where(images[j])}: the IRHeader announces "
                   f"{flag[j]} labels, more than the {length[j]}-byte record holds")
        _first_bad(whole & (need == length), lambda j: f"{self.where(images[j])}: no image bytes after the "
                   "IRHeader (is it a header record listed as an image?)")
        label = self.word(images, 3).view("<f4")
        first = self.word(images, 8).view("<f4")
        identity = np.where(flag > 0, first, label).astype(np.float64)
        for j in np.flatnonzero(~whole):
            i = int(images[j])
            f, lab, labels, image = unpack_payload(self.payload(i), self.where(i))
            if not image:
                raise BadInputError(f"{self.where(i)}: no image bytes after the IRHeader")
            identity[j] = labels[0] if f > 0 else lab
        valid = np.isfinite(identity) & (identity >= 0) & (identity == np.floor(identity))
        _first_bad(~valid, lambda j: f"{self.where(images[j])}: label {identity[j]!r} is not an identity "
                   "(a whole number >= 0)")
        return identity.astype(np.int64)


def _image_keys(records: _Records, idx: Path) -> np.ndarray:
    """insightface's choice of image records: keys 1..first-1 after a header at key 0, else all."""
    keys = records.keys
    zero = int(_positions(keys, np.array([0]))[0])
    if zero < 0:
        return keys
    flag, _, labels, _ = unpack_payload(records.payload(zero), records.where(zero))
    if flag == 0:
        return keys
    first = labels[0]
    if not (np.isfinite(first) and first > 1):
        raise BadInputError(f"{records.where(zero)}: insightface header with labels "
                            f"{labels.tolist()} names no image keys")
    wanted = np.arange(1, int(first), dtype=np.int64)
    missing = _positions(keys, wanted) < 0
    _first_bad(missing, lambda j: f"{idx}: the header (record 0) names image keys 1..{int(first) - 1}, "
               f"but key {wanted[j]} is not in the index")
    return wanted


def _read_property(prop: Path) -> tuple[int, int, int] | None:
    if not prop.is_file():
        return None
    text = prop.read_text(errors="replace").strip()
    try:
        num_classes, height, width = (int(v) for v in text.split(","))
    except ValueError:
        raise BadInputError(f"{prop}: expected 'num_classes,height,width', got {text[:80]!r}") from None
    return num_classes, height, width


def read_recordio(path) -> tuple[tf.data.Dataset, DatasetSpec]:
    """An insightface RecordIO pack: ``path`` is the folder holding ``train.rec``, ``train.idx``
    (and ``property``) or a ``.rec`` file with its ``.idx`` beside it.

    Returns ``(dataset, spec)``: records ``{"image", "path", "identity", "labels"}`` and the
    sample table, paths ``<rec path>#<key>``, class names the identities found (as strings,
    sorted numerically; ``identity`` indexes them), no label columns, storage "recordio".
    Every index entry is checked against the record file (inside it, at a magic, not cut
    short): a mismatch raises ``BadInputError`` naming the file, the record key and its byte."""
    rec, idx, prop, source = _locate(path)
    keys, offsets = load_idx(idx)
    records = _Records(rec, keys, offsets)
    records.check()
    image_keys = _image_keys(records, idx)
    positions = _positions(keys, image_keys)
    raw = records.identities(positions)
    ids, identity = np.unique(raw, return_inverse=True)
    class_names = [str(int(i)) for i in ids]
    header = _read_property(prop)
    if header is not None and len(ids) and ids[-1] >= header[0]:
        warnings.warn(f"{prop}: num_classes {header[0]}, but {rec} holds identity {int(ids[-1])}",
                      stacklevel=2)
    prefix = f"{rec}#"
    samples = Samples(np.array([prefix + str(k) for k in image_keys.tolist()], dtype=object),
                      identity.reshape(-1), np.zeros((len(image_keys), 0), np.float32))
    spec = DatasetSpec(source, samples, class_names, {}, storage="recordio")
    return recordio_dataset(spec, with_path=True), spec


# ---------------------------------------------------------------------------------- pipeline


def _pread(fd: int, n: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, n, offset)
    with _SEEK_LOCK:  # pragma: no cover - platforms without pread
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, n)


_SEEK_LOCK = threading.Lock()


class RecordReader:
    """Reads image bytes of records by offset, thread-safe (``pread``, no shared file position);
    each file is opened once, on first use."""

    def __init__(self, files: list[str]):
        self.files = list(files)
        self._open: dict[int, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def _handle(self, index: int) -> tuple[int, int]:
        with self._lock:
            if index not in self._open:
                fd = os.open(self.files[index], os.O_RDONLY | getattr(os, "O_BINARY", 0))
                self._open[index] = (fd, os.fstat(fd).st_size)
            return self._open[index]

    def image(self, index: int, offset: int, key: int) -> bytes:
        fd, size = self._handle(index)
        where = f"{self.files[index]} record {key} at byte {offset}"

        def read(at, n):
            data = _pread(fd, n, at)
            if len(data) != n:
                raise BadInputError(f"{where}: truncated (the file ends at byte {at + len(data)})")
            return data

        payload = read_record(read, size, offset, where)
        return unpack_payload(payload, where)[3]

    def close(self) -> None:
        with self._lock:
            for fd, _ in self._open.values():
                os.close(fd)
            self._open.clear()

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


def _split_paths(paths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(files, file index, key) of ``<rec path>#<key>`` sample paths."""
    recs, keys = [], []
    for path in paths.tolist():
        rec, sep, key = str(path).rpartition("#")
        try:
            if not sep:
                raise ValueError
            keys.append(int(key))
        except ValueError:
            raise BadInputError(f"{path}: not a RecordIO sample path ('<rec path>#<key>')") from None
        recs.append(rec)
    files, index = np.unique(np.array(recs, dtype=str), return_inverse=True) if recs else (
        np.zeros(0, str), np.zeros(0, np.int64))
    return files, index.reshape(-1), np.array(keys, dtype=np.int64)


def recordio_dataset(spec: DatasetSpec, samples: Samples | None = None, *,
                     with_path: bool = False, deterministic: bool = True) -> tf.data.Dataset:
    """Records ``{"image": encoded bytes, "identity": int32, "labels": float32}`` (and "path"
    with ``with_path``) for ``samples`` (default all of ``spec``), in their order.

    Offsets come from each pack's ``.idx``; the bytes are read in a parallel map through
    ``tf.numpy_function`` (no mxnet), ``READ_BATCH`` records per call; ``deterministic=False``
    reads the table's rows with them, so records stay whole in any order."""
    samples = samples if samples is not None else spec.samples
    files, file_index, keys = _split_paths(samples.paths)
    offsets = np.zeros(len(keys), np.int64)
    for f, rec in enumerate(files.tolist()):
        idx_keys, idx_offsets = load_idx(idx_path_of(rec))
        mine = np.flatnonzero(file_index == f)
        pos = _positions(idx_keys, keys[mine])
        _first_bad(pos < 0, lambda j: f"{rec}: record {keys[mine][j]} is not in {idx_path_of(rec)}")
        offsets[mine] = idx_offsets[pos]
    reader = RecordReader(files.tolist())

    def read(index, offset, key):
        images = np.empty(len(offset), dtype=object)
        for j, (i, o, k) in enumerate(zip(index.tolist(), offset.tolist(), key.tolist())):
            images[j] = reader.image(i, o, k)
        return images

    table = {"identity": tf.constant(samples.identity.astype(np.int32)),
             "labels": tf.constant(samples.labels, tf.float32)}
    if with_path:
        table["path"] = tf.constant(samples.paths.astype(str))

    def load(rows, index, offset, key):
        images = tf.numpy_function(read, [index, offset, key], tf.string, stateful=False)
        return tf.ensure_shape(images, [None]), rows

    # Records are read READ_BATCH at a time: one Python call per batch, not per image. Each
    # image keeps its row, so its identity and labels follow it in whatever order reads finish.
    rows = np.arange(len(keys), dtype=np.int64)
    images = (tf.data.Dataset.from_tensor_slices((rows, file_index.astype(np.int32), offsets, keys))
              .batch(READ_BATCH).map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
              .unbatch())
    dataset = images.map(lambda image, row: {"image": image, **{k: tf.gather(v, row) for k, v in table.items()}})
    return dataset.apply(tf.data.experimental.assert_cardinality(len(keys)))


# ----------------------------------------------------------------------------------- writing


def _identity_of(label) -> int:
    value = label if isinstance(label, numbers.Number) else np.asarray(label, np.float64).ravel()[:1]
    value = float(value) if isinstance(label, numbers.Number) else (float(value[0]) if len(value) else -1.0)
    if not (0 <= value < MAX_KEY and value == int(value)):
        raise ValueError(f"identity {label!r} is not a whole number in [0, 2**24)")
    return int(value)


def write_recordio(out_dir, items: Iterable, num_classes: int | None = None,
                   image_size: int | tuple[int, int] = (112, 112), progress: bool = False) -> Path:
    """Write ``items`` — ``(encoded image bytes, label)`` with label an identity int, or a
    sequence of floats whose first is the identity (stored as ``flag = len`` label arrays) —
    as an insightface pack in ``out_dir``: ``train.rec``, ``train.idx``, ``property``.

    Layout: record 0 is the header with labels ``(N + 1, N + 1 + R)``, images are keys
    ``1 .. N`` in the order given (IRHeader id = key, id2 = 0), then ``R`` range records, one per
    run of consecutive items of one identity (one per identity when items come grouped by
    identity, as insightface's packs do), labels ``[start, stop)`` image keys. Records are cut
    at aligned magics exactly like mxnet's writer. ``train.rec`` and ``train.idx`` are written
    under temporary names and renamed when complete, ``property`` (``num_classes,height,width``;
    default num_classes: the largest identity + 1) last. An existing pack is never overwritten."""
    out_dir = Path(out_dir).expanduser().resolve()
    rec_path, idx_path, prop_path = out_dir / REC_NAME, out_dir / IDX_NAME, out_dir / PROPERTY_NAME
    existing = [p.name for p in (rec_path, idx_path, prop_path) if p.exists()]
    if existing:
        raise FileExistsError(f"{out_dir}: already holds a RecordIO pack ({', '.join(existing)})")
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    out_dir.mkdir(parents=True, exist_ok=True)
    bar = progress_bar(desc="writing RecordIO", enabled=progress)
    header = encode_record(pack_payload([0.0, 0.0]))
    largest = -1
    with atomic_path(idx_path) as idx_tmp, atomic_path(rec_path) as rec_tmp:  # rec renamed first
        with open(rec_tmp, "xb") as rec, open(idx_tmp, "x", encoding="ascii", newline="\n") as idx:

            def put(key, record):
                idx.write(f"{key}\t{rec.tell()}\n")
                rec.write(record)

            put(0, header)  # a placeholder of the final header's size, rewritten below
            key, runs = 1, []
            for image, label in items:
                identity = _identity_of(label)
                largest = max(largest, identity)
                put(key, encode_record(pack_payload(label, image, key)))
                if runs and runs[-1][0] == identity:
                    runs[-1][2] = key + 1
                else:
                    runs.append([identity, key, key + 1])
                key += 1
                bar.update(1)
            if key == 1:
                raise ValueError(f"{out_dir}: no images to write")
            first = key
            for _, start, stop in runs:
                put(key, encode_record(pack_payload([start, stop], b"", key)))
                key += 1
            if key >= MAX_KEY:
                raise ValueError(f"{key} records: insightface's float32 header addresses at most 2**24")
            final = encode_record(pack_payload([first, key]))
            assert len(final) == len(header)
            rec.seek(0)
            rec.write(final)
            for handle in (rec, idx):
                handle.flush()
                os.fsync(handle.fileno())
    bar.close()
    num_classes = largest + 1 if num_classes is None else int(num_classes)
    if num_classes <= largest:
        raise ValueError(f"num_classes {num_classes}, but the pack holds identity {largest}")
    write_text_atomic(prop_path, f"{num_classes},{height},{width}\n")
    return out_dir


def spec_to_recordio(spec: DatasetSpec, out_dir, samples: Samples | None = None,
                     image_size: int | tuple[int, int] | None = None, progress: bool = True) -> Path:
    """Convert an image-file dataset (``storage == "files"``) into an insightface pack: the file
    bytes unchanged (no re-encoding), identities as the spec's identity indices (class names
    become "0".."C-1"), grouped by identity (stable). Label columns are not stored (a pack
    carries identities). ``image_size`` (for ``property``) defaults to the first image's size."""
    samples = samples if samples is not None else spec.samples
    if spec.storage != "files":
        raise ValueError(f"{spec.source}: spec_to_recordio converts image files, not {spec.storage} storage")
    if len(samples) and samples.identity.min() < 0:
        raise BadInputError(f"{spec.source}: a RecordIO pack needs an identity for every sample")
    if spec.num_labels:
        warnings.warn(f"{spec.source}: label columns {spec.label_names} are not stored in the RecordIO pack",
                      stacklevel=2)
    order = np.argsort(samples.identity, kind="stable")
    if image_size is None and len(samples):
        with open(samples.paths[order[0]], "rb") as handle:
            shape = tf.io.decode_image(handle.read(), channels=3, expand_animations=False).shape
        image_size = (int(shape[0]), int(shape[1]))

    def items():
        for i in order.tolist():
            with open(samples.paths[i], "rb") as handle:
                yield handle.read(), int(samples.identity[i])

    bar = progress_bar(items(), total=len(samples), desc="writing RecordIO", enabled=progress)
    return write_recordio(out_dir, bar, num_classes=spec.num_classes, image_size=image_size or (112, 112))
