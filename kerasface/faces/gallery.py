"""A gallery of enrolled people: one L2-normalised mean embedding per person, matched by cosine
similarity.

``enroll`` reads ``folder/<person>/<image>`` (the image-folder rules of
``kerasface.faces.prepare``), takes the largest face of each image, aligns it to the model's
input size, embeds it (``kerasface.eval.embeddings``) and averages the normalised embeddings of
each person. The ``.npz`` file records the model it came from: its name and the embedding of a
fixed synthetic probe image (its fingerprint), so that a different model, in whatever format, is
refused instead of giving meaningless matches.

A gallery searched through a vector index (``kerasface.faces.index``, FAISS) keeps the index in
the same file, so that loading a gallery of millions of people does not rebuild it. People are
added and removed in place (``add``, ``remove``); ``save`` writes the whole file under a
temporary name and renames it, so the file on disk is always a complete gallery.

``persist`` makes one such change durable without rewriting a large file: it appends it to a
journal beside the gallery (``gallery.npz.journal``, one JSON line per change, flushed to disk)
that ``load`` replays; the journal names the snapshot it continues, so a journal left by an
interrupted rewrite, or beside a file replaced since, is ignored, and a line cut short by a kill
is dropped (and cut off before the next one is written). Every ``JOURNAL_LIMIT`` changes the
whole file is rewritten and the journal removed.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import uuid
from pathlib import Path

import numpy as np

from kerasface.errors import BadInputError
from kerasface.eval.embeddings import EmbeddingModel, embed_batches
from kerasface.eval.verification import l2_normalize
from kerasface.faces.align import extract_face
from kerasface.faces.detect import FaceDetector
from kerasface.faces.imread import read_photo
from kerasface.faces.index import VectorIndex
from kerasface.fileio import atomic_write
from kerasface.progress import progress_bar

GALLERY_FORMAT = 1
JOURNAL_SUFFIX = ".journal"
JOURNAL_LIMIT = 1000
FINGERPRINT_MIN_COSINE = 0.999
EMBED_BATCH = 8


def probe_image(size) -> np.ndarray:
    """The fixed float32 (1, H, W, 3) image in [0, 255] whose embedding identifies a model."""
    height, width = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    y, x = y / height, x / width
    channels = [np.sin(2 * np.pi * (3 * x + 2 * y)), np.cos(2 * np.pi * (5 * y - x) + 1.0),
                np.sin(2 * np.pi * 7 * x * y + 2.0)]
    return (127.5 + 127.0 * np.stack(channels, axis=-1))[None].astype(np.float32)


def embed_faces(model: EmbeddingModel, faces: np.ndarray, flip: bool = False) -> np.ndarray:
    """L2-normalised (N, D) embeddings of face crops (N, H, W, 3) at the model's input size."""
    faces = np.asarray(faces, np.float32)
    if faces.ndim != 4 or faces.shape[1:3] != tuple(model.image_size):
        raise BadInputError(f"{model.name}: faces of shape {faces.shape[1:]}, the model takes "
                            f"{model.image_size[0]}x{model.image_size[1]}")
    batches = (faces[i:i + EMBED_BATCH] for i in range(0, len(faces), EMBED_BATCH))
    vectors = embed_batches(model, batches, len(faces), EMBED_BATCH, flip=flip, progress=False)
    return l2_normalize(vectors).astype(np.float32)


def model_fingerprint(model: EmbeddingModel) -> np.ndarray:
    return embed_faces(model, probe_image(model.image_size))[0]


@dataclasses.dataclass
class Gallery:
    names: list[str]
    embeddings: np.ndarray
    counts: list[int]
    model: str
    fingerprint: np.ndarray
    image_size: tuple[int, int]
    method: str = "align"
    margin: float = 0.2
    flip: bool = False
    files: dict = dataclasses.field(default_factory=dict)
    index: VectorIndex | None = None
    _store: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    _positions: dict | None = dataclasses.field(default=None, repr=False, compare=False)
    _snapshot: str | None = dataclasses.field(default=None, repr=False, compare=False)
    _journaled: int = dataclasses.field(default=0, repr=False, compare=False)

    @classmethod
    def empty(cls, model: EmbeddingModel, method: str = "align", margin: float = 0.2, flip: bool = False) -> Gallery:
        fingerprint = model_fingerprint(model)
        return cls([], np.empty((0, len(fingerprint)), np.float32), [], model.name, fingerprint,
                   tuple(model.image_size), method, margin, flip)

    def build_index(self, kind: str, **params) -> None:
        """Search through a new ``kind`` index of the current embeddings (``kerasface.faces.index``)."""
        self.index = VectorIndex.build(self.embeddings, kind, **params)

    def _rows_by_name(self) -> dict:
        if self._positions is None or len(self._positions) != len(self.names):
            self._positions = {n: k for k, n in enumerate(self.names)}
        return self._positions

    def position(self, name: str) -> int | None:
        """The row of ``name``, or None."""
        return self._rows_by_name().get(name)

    def add(self, name: str, vector: np.ndarray, count: int = 1, files=()) -> bool:
        """Enroll ``name`` with one normalised embedding, replacing an earlier one of that name;
        True when it replaced one. The index grows without a rebuild."""
        vector = np.asarray(vector, np.float32).reshape(-1)
        if vector.shape != self.fingerprint.shape:
            raise BadInputError(f"{name}: an embedding of {vector.shape[0]} values; the gallery holds "
                                f"{self.fingerprint.shape[0]}")
        replaced = self.position(name) is not None
        if replaced:
            self.remove(name)
        n = len(self.names)
        if self._store is None or self.embeddings.base is not self._store or len(self._store) <= n:
            self._store = np.empty((max(2 * n, 16), vector.shape[0]), np.float32)
            self._store[:n] = self.embeddings
        self._store[n] = vector
        self.embeddings = self._store[:n + 1]
        rows = self._rows_by_name()
        self.names.append(name)
        rows[name] = n
        self.counts.append(int(count))
        self.files[name] = list(files)
        if self.index is not None:
            self.index.add(vector[None], [n])
        return replaced

    def remove(self, name: str) -> None:
        """Forget ``name``; BadInputError when it is not enrolled."""
        k = self.position(name)
        if k is None:
            raise BadInputError(f"{name}: no such person in the gallery")
        self.embeddings = np.delete(self.embeddings, k, axis=0)
        self._store = self._positions = None
        del self.names[k], self.counts[k]
        self.files.pop(name, None)
        if self.index is not None:
            self.index.remove_row(k)

    def save(self, path) -> None:
        if self.index is not None and self.index.needs_compacting():
            self.build_index(self.index.kind, **self.index.params)
        meta = {"format": GALLERY_FORMAT, "model": self.model, "image_size": list(self.image_size),
                "method": self.method, "margin": self.margin, "flip": self.flip, "counts": list(self.counts),
                "files": self.files}
        arrays = {"names": np.array(self.names, dtype=str), "embeddings": np.asarray(self.embeddings, np.float32),
                  "fingerprint": self.fingerprint.astype(np.float32)}
        if self.index is not None:
            meta["index"] = {"kind": self.index.kind, "params": self.index.params}
            arrays["index"], arrays["index_rows"] = self.index.to_bytes(), self.index.rows
        snapshot = uuid.uuid4().hex
        meta["snapshot"] = snapshot
        arrays["meta"] = np.array(json.dumps(meta))
        atomic_write(path, lambda fh: np.savez(fh, **arrays), binary=True)
        self._snapshot, self._journaled = snapshot, 0
        journal_path(path).unlink(missing_ok=True)

    def persist(self, path, name: str) -> None:
        """Make the last change to ``name`` (enrolled, replaced or removed in memory) durable in
        the gallery file ``path``: a journal line, or the whole file when it has no snapshot of
        this gallery yet or the journal is full."""
        path = Path(path)
        if self._snapshot is None or self._journaled >= JOURNAL_LIMIT or not path.is_file():
            self.save(path)
            return
        k = self.position(name)
        change = {"remove": name} if k is None else {
            "add": name, "count": self.counts[k], "files": self.files.get(name, []),
            "vector": base64.b64encode(np.asarray(self.embeddings[k], "<f4").tobytes()).decode()}
        journal, line = journal_path(path), json.dumps(change) + "\n"
        if self._journaled == 0:
            header = json.dumps({"snapshot": self._snapshot}) + "\n"
            atomic_write(journal, lambda fh: fh.write(header + line))
        else:
            with open(journal, "r+b") as fh:
                data = fh.read()
                fh.seek(data.rfind(b"\n") + 1)
                fh.truncate()
                fh.write(line.encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
        self._journaled += 1

    def _replay(self, path: Path) -> None:
        journal = journal_path(path)
        if not journal.is_file():
            return
        lines = journal.read_text(encoding="utf-8").split("\n")
        complete = lines[:-1]
        try:
            header = json.loads(complete[0]) if complete else {}
        except ValueError:
            header = {}
        if header.get("snapshot") != self._snapshot:
            return
        for number, line in enumerate(complete[1:], start=2):
            try:
                change = json.loads(line)
                if "remove" in change:
                    if self.position(change["remove"]) is not None:
                        self.remove(change["remove"])
                else:
                    vector = np.frombuffer(base64.b64decode(change["vector"]), "<f4")
                    self.add(change["add"], vector, change["count"], change["files"])
            except (ValueError, KeyError, TypeError) as error:
                raise BadInputError(f"{journal}: line {number} is not a gallery change ({error})") from None
        self._journaled = len(complete) - 1

    @classmethod
    def load(cls, path) -> Gallery:
        path = Path(path)
        if not path.is_file():
            raise BadInputError(f"{path}: no such gallery file (make one with: kerasface-identify enroll)")
        try:
            with np.load(path, allow_pickle=False) as data:
                names, embeddings = [str(n) for n in data["names"]], np.asarray(data["embeddings"], np.float32)
                fingerprint, meta = np.asarray(data["fingerprint"], np.float32), json.loads(str(data["meta"]))
                stored = (data["index"], data["index_rows"]) if "index" in meta else None
        except (OSError, ValueError, KeyError, EOFError) as error:
            raise BadInputError(f"{path}: not a gallery file of kerasface-identify enroll ({error})") from None
        if meta.get("format") != GALLERY_FORMAT or embeddings.shape != (len(names), len(fingerprint)):
            raise BadInputError(f"{path}: not a gallery file of kerasface-identify enroll (format "
                                f"{meta.get('format')}, embeddings {embeddings.shape} for {len(names)} names)")
        embeddings = embeddings.reshape(len(names), len(fingerprint))
        index = None
        if stored is not None:
            index = VectorIndex.from_bytes(stored[0], meta["index"]["kind"], meta["index"]["params"], stored[1],
                                           where=str(path))
            if np.count_nonzero(index.rows >= 0) != len(names):
                raise BadInputError(f"{path}: the stored index covers {np.count_nonzero(index.rows >= 0)} of "
                                    f"{len(names)} people")
        gallery = cls(names, embeddings, meta["counts"], meta["model"], fingerprint, tuple(meta["image_size"]),
                      meta["method"], meta["margin"], meta["flip"], meta.get("files", {}), index)
        gallery._snapshot = meta.get("snapshot")
        gallery._replay(path)
        return gallery

    def check_model(self, model: EmbeddingModel, where: str = "gallery") -> None:
        """BadInputError unless ``model`` embeds the probe image as the enrolling model did."""
        if tuple(model.image_size) != tuple(self.image_size):
            raise BadInputError(
                f"{where}: enrolled with {self.model} ({self.image_size[0]}x{self.image_size[1]} faces); "
                f"{model.name} takes {model.image_size[0]}x{model.image_size[1]}. Enroll again with this model.")
        probe = model_fingerprint(model)
        if probe.shape != self.fingerprint.shape or float(probe @ self.fingerprint) < FINGERPRINT_MIN_COSINE:
            raise BadInputError(
                f"{where}: enrolled with another model ({self.model}); {model.name} embeds differently "
                "(its fingerprint does not match). Enroll again with this model: kerasface-identify enroll "
                f"--model {model.name} ...")

    def match(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each normalised row: the index of the most similar person (-1 in an empty gallery)
        and the cosine similarity, through the vector index when there is one, else exactly."""
        vectors = np.asarray(vectors, np.float32)
        if not self.names:
            return np.full(len(vectors), -1), np.full(len(vectors), -1.0, np.float32)
        if self.index is not None:
            rows, scores = self.index.search(vectors, 1)
            return rows[:, 0], scores[:, 0]
        similarity = vectors @ self.embeddings.T
        best = np.argmax(similarity, axis=1)
        return best, similarity[np.arange(len(best)), best]


def journal_path(path) -> Path:
    """The journal of changes beside the gallery file ``path``."""
    path = Path(path)
    return path.with_name(path.name + JOURNAL_SUFFIX)


def gallery_files(folder) -> list[str]:
    """``person/image`` paths of a gallery folder; BadInputError naming it when there are none."""
    from kerasface.faces.prepare import source_files

    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise BadInputError(f"{folder}: no such gallery folder (expected one sub-folder of photos per person)")
    files, _ = source_files(folder)
    if not files:
        raise BadInputError(f"{folder}: empty gallery folder; expected one sub-folder of photos per person "
                            f"({folder}/<person>/<image>)")
    return files


def enroll(model: EmbeddingModel, folder, detector: FaceDetector, method: str = "align", margin: float = 0.2,
           flip: bool = False, progress: bool = True) -> tuple[Gallery, list[str]]:
    """The gallery of ``folder/<person>/<image>`` and the problems met (files without a usable
    face, people left out), each naming its file."""
    folder = Path(folder).expanduser().resolve()
    files = gallery_files(folder)
    problems, crops, owners = [], [], []
    for rel in progress_bar(files, desc="enrolling", unit="img", enabled=progress):
        try:
            image = read_photo(folder / rel)
        except BadInputError as error:
            problems.append(str(error))
            continue
        faces = detector.detect_one(image)
        if not faces:
            problems.append(f"{folder / rel}: no face found")
            continue
        if len(faces) > 1:
            problems.append(f"{folder / rel}: {len(faces)} faces, enrolled the largest")
        crops.append(extract_face(image, faces[0], model.image_size, method, margin))
        owners.append(rel)
    people = list(dict.fromkeys(rel.split("/")[0] for rel in files))
    used = {p: [rel for rel in owners if rel.split("/")[0] == p] for p in people}
    problems += [f"{folder / p}: no usable face; {p} is left out" for p in people if not used[p]]
    names = [p for p in people if used[p]]
    if not names:
        raise BadInputError(f"{folder}: no face could be enrolled:\n  " + "\n  ".join(problems[:20]))
    vectors = embed_faces(model, np.stack(crops), flip=flip)
    person = np.array([names.index(rel.split("/")[0]) for rel in owners])
    means = l2_normalize(np.stack([vectors[person == k].mean(axis=0) for k in range(len(names))]))
    gallery = Gallery(names, means.astype(np.float32), [len(used[p]) for p in names], model.name,
                      model_fingerprint(model), tuple(model.image_size), method, margin, flip,
                      {p: used[p] for p in names})
    return gallery, problems

