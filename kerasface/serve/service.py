"""The state behind the HTTP service: one embedding model, one MTCNN detector and one gallery,
used from one worker thread; detection and embedding batched across concurrent requests.

Enrolments and removals are serialised: each changes the gallery and is made durable
(``Gallery.persist``: a journal line flushed to disk, or the whole file written under a
temporary name and renamed) before it is acknowledged, so an acknowledged enrolment survives
the process being killed, and the gallery on disk is complete at every moment.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from kerasface.errors import BadInputError
from kerasface.eval.embeddings import EmbeddingModel, load_embedding_model
from kerasface.eval.verification import l2_normalize
from kerasface.faces.app import DEFAULT_THRESHOLD, face_crops, named_faces, report_threshold
from kerasface.faces.detect import FaceDetector
from kerasface.faces.gallery import Gallery, embed_faces
from kerasface.faces.index import DEFAULT_KIND
from kerasface.serve.batching import Batcher


class NoFaceError(BadInputError):
    """An image in which the detector finds no face."""


class UnknownPersonError(BadInputError):
    """A person who is not in the gallery."""


@dataclasses.dataclass
class Settings:
    model: str
    gallery: str
    index: str = DEFAULT_KIND
    threshold: float | None = None
    image_size: int | None = None
    min_face_size: float = 20
    detection_threshold: float = 0.9
    max_batch: int = 32
    max_wait_ms: float = 5.0


def pick_threshold(model_source, given: float | None) -> tuple[float, str]:
    """(similarity threshold, where it came from): ``given`` (as the identify app's --threshold),
    else the run report's calibrated one, else the default."""
    if given is not None:
        found = report_threshold(model_source)
        overridden = f" (the run report's {found[0]:.3f} overridden)" if found is not None else ""
        return float(given), "--threshold" + overridden
    found = report_threshold(model_source)
    if found is not None:
        return found
    return DEFAULT_THRESHOLD, (f"default {DEFAULT_THRESHOLD}: the model has no calibrated threshold stored "
                               "(no report.json with a verification threshold); set one with --threshold")


def open_gallery(path: Path, model: EmbeddingModel, kind: str) -> tuple[Gallery, bool]:
    """The gallery of ``path`` checked against ``model`` and searched through a ``kind`` index,
    or a new empty one when the file does not exist yet; and whether it existed."""
    if path.exists():
        gallery = Gallery.load(path)
        gallery.check_model(model, where=str(path))
        existed = True
    else:
        if not path.parent.is_dir():
            raise BadInputError(f"{path}: its folder {path.parent} does not exist")
        gallery, existed = Gallery.empty(model), False
    if gallery.index is None or gallery.index.kind != kind:
        gallery.build_index(kind)
    return gallery, existed


class Service:
    def __init__(self, settings: Settings, log=None):
        self.settings = settings
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self.model = load_embedding_model(settings.model, image_size=settings.image_size)
        self.detector = FaceDetector(min_face_size=settings.min_face_size, threshold=settings.detection_threshold)
        self.gallery_path = Path(settings.gallery)
        self.gallery, existed = open_gallery(self.gallery_path, self.model, settings.index)
        self.threshold, self.threshold_source = pick_threshold(settings.model, settings.threshold)
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kerasface-serve")
        wait = settings.max_wait_ms / 1000.0
        self.detections = Batcher(self.detector.detect, self.worker, settings.max_batch, wait)
        self.embeddings = Batcher(self._embed, self.worker, settings.max_batch, wait)
        self.enrolling = None
        self.log(f"{self.gallery_path}: {len(self.gallery.names)} people, {self.gallery.index.kind} index"
                 + ("" if existed else " (new gallery, written at the first enrolment)"))
        self.log(f"similarity threshold {self.threshold:.3f} ({self.threshold_source})")

    def _embed(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        return list(embed_faces(self.model, np.stack(crops), flip=self.gallery.flip))

    async def start(self) -> None:
        self.enrolling = asyncio.Lock()
        self.detections.start()
        self.embeddings.start()
        await self._on_worker(self.detector.detect, [np.zeros((64, 64, 3), np.uint8)])
        await self._on_worker(self._embed, [np.zeros((*self.model.image_size, 3), np.float32)])

    async def stop(self) -> None:
        await self.detections.stop()
        await self.embeddings.stop()
        self.worker.shutdown(wait=True)

    async def _on_worker(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self.worker, function, *args)

    async def faces(self, image: np.ndarray, name: str = "image", largest: bool = False):
        """The faces of ``image`` (largest first) and their normalised embeddings; NoFaceError
        naming ``name`` when there is none."""
        (found,) = await self.detections.submit([image])
        if not found:
            raise NoFaceError(f"{name}: no face found")
        found = found[:1] if largest else found
        crops = face_crops(image, found, self.model.image_size, self.gallery)
        vectors = await self.embeddings.submit(list(crops))
        return found, np.stack(vectors)

    async def embed(self, image: np.ndarray) -> list[dict]:
        faces, vectors = await self.faces(image)
        return [{**f.to_dict(), "embedding": [round(float(v), 6) for v in vector]} for f, vector in zip(faces, vectors)]

    async def verify(self, first: np.ndarray, second: np.ndarray) -> dict:
        ((face_a,), (a,)), ((face_b,), (b,)) = await asyncio.gather(self.faces(first, "image1", largest=True),
                                                                  self.faces(second, "image2", largest=True))
        score = float(np.dot(a, b))
        return {"score": round(score, 4), "same": bool(score >= self.threshold), "threshold": self.threshold,
                "faces": [face_a.to_dict(), face_b.to_dict()]}

    async def identify(self, image: np.ndarray) -> list[dict]:
        faces, vectors = await self.faces(image)
        return await self._on_worker(named_faces, self.gallery, faces, vectors, self.threshold)

    async def enroll(self, name: str, images: list[tuple[str, np.ndarray]]) -> dict:
        """Enroll ``name`` from the largest face of each (label, image); replaces an earlier
        enrolment of that name. Acknowledged once the gallery is on disk."""
        name = check_name(name)
        if not images:
            raise BadInputError("enroll: no image given")
        found = await asyncio.gather(*(self.faces(image, label, largest=True) for label, image in images))
        person = l2_normalize(np.mean([vectors[0] for _, vectors in found], axis=0, keepdims=True))[0]
        async with self.enrolling:
            replaced, people = await self._on_worker(
                self.change_durably, name,
                lambda: self.gallery.add(name, person, count=len(images), files=[label for label, _ in images]))
        return {"name": name, "photos": len(images), "replaced": replaced, "people": people}

    def change_durably(self, name: str, change) -> tuple:
        """``change()`` (an add or remove of ``name``) made durable (``Gallery.persist``): its result and
        the number of people; when writing fails, the gallery in memory is put back as it was."""
        k = self.gallery.position(name)
        earlier = None if k is None else (self.gallery.embeddings[k].copy(), self.gallery.counts[k],
                                          list(self.gallery.files.get(name, [])))
        result = change()
        try:
            self.gallery.persist(self.gallery_path, name)
        except BaseException:
            if self.gallery.position(name) is not None:
                self.gallery.remove(name)
            if earlier is not None:
                self.gallery.add(name, *earlier)
            raise
        return result, len(self.gallery.names)

    async def remove(self, name: str) -> dict:
        async with self.enrolling:
            if self.gallery.position(name) is None:
                raise UnknownPersonError(f"{name}: no such person in the gallery")
            _, people = await self._on_worker(self.change_durably, name, lambda: self.gallery.remove(name))
        return {"removed": name, "people": people}

    async def person(self, name: str) -> dict:
        return await self._on_worker(self._person, name)

    def _person(self, name: str) -> dict:
        k = self.gallery.position(name)
        if k is None:
            raise UnknownPersonError(f"{name}: no such person in the gallery")
        return {"name": name, "photos": self.gallery.counts[k], "files": self.gallery.files.get(name, [])}

    def health(self) -> dict:
        out = {"status": "ok", "model": self.model.name, "image_size": list(self.model.image_size),
               "gallery": str(self.gallery_path), "people": len(self.gallery.names),
               "index": {"kind": self.gallery.index.kind, **self.gallery.index.params},
               "threshold": self.threshold, "threshold_source": self.threshold_source,
               "batches": {"detection_calls": self.detections.calls, "images": self.detections.items,
                           "embedding_calls": self.embeddings.calls, "faces": self.embeddings.items}}
        if self.threshold_source.startswith("default"):
            out["note"] = ("no calibrated threshold is stored with this model: /verify and /identify use the "
                           f"default {DEFAULT_THRESHOLD}; start with --threshold to set one")
        return out


MAX_NAME = 200


def check_name(name) -> str:
    """A person's name: 1 to 200 printable characters, no slash, not only spaces."""
    if not isinstance(name, str) or not name.strip():
        raise BadInputError("name: give the person's name (a non-empty text)")
    if len(name) > MAX_NAME or "/" in name or not name.isprintable():
        raise BadInputError(f"name {name[:40]!r}: at most {MAX_NAME} printable characters, without '/'")
    return name
