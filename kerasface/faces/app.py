"""The identification app: every face of an image, a folder of images, a video file or a camera
is detected, aligned, embedded and matched against a gallery (``kerasface.faces.gallery``): the
most similar person and the cosine similarity, or ``unknown`` below the threshold.

Outputs (``out``): annotated images (same relative names) or an annotated ``<name>.mp4`` (boxes,
names, similarities, frames per second) and ``log.jsonl``, one JSON line per frame. Each file is
written under a temporary name and renamed when complete; bad input (a corrupt image, a video
that cannot be opened, a gallery from another model) is refused before anything is written.
Ctrl-C stops a stream and keeps what was processed.

The default threshold is the model's own when its run folder has a ``report.json`` with a
verification threshold (validation if there is one, else test): that threshold is on squared
distances of L2-normalised embeddings, d^2 = 2 - 2 cos, so the similarity threshold is
1 - t / 2. Otherwise ``DEFAULT_THRESHOLD``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from kerasface.data.decode import is_image_name
from kerasface.errors import BadInputError
from kerasface.eval.embeddings import EmbeddingModel
from kerasface.faces.align import extract_face
from kerasface.faces.detect import FaceDetector
from kerasface.faces.gallery import Gallery, embed_faces
from kerasface.faces.imread import encode_photo, list_photos, read_photo
from kerasface.fileio import atomic_path, atomic_write
from kerasface.progress import progress_bar

DEFAULT_THRESHOLD = 0.35
UNKNOWN = "unknown"
LOG_FILE = "log.jsonl"
VIDEO_SUFFIX, VIDEO_CODEC = ".mp4", "mp4v"
KNOWN_COLOUR, UNKNOWN_COLOUR = (40, 200, 40), (220, 40, 40)


def report_threshold(model_source) -> tuple[float, str] | None:
    """(similarity threshold, where it came from) from the run's report.json, or None."""
    path = Path(model_source)
    report = (path if path.is_dir() else path.parent) / "report.json"
    if not report.is_file():
        return None
    try:
        results = json.loads(report.read_text()).get("results") or {}
    except (OSError, ValueError, AttributeError):
        return None
    for split in ("validation", "test"):
        figures = results.get(split) or {}
        for key, value in figures.items():
            if (key == "threshold" or key.endswith("_threshold")) and isinstance(value, (int, float)) \
                    and math.isfinite(value) and 0.0 <= value <= 4.0:
                return 1.0 - value / 2.0, f"{report}: {split} {key} {value:.3f} on squared distance"
    return None


@dataclasses.dataclass
class Frame:
    index: int
    source: str
    image: np.ndarray | None
    error: str | None = None
    time_s: float | None = None


@contextlib.contextmanager
def _quiet_opencv():
    """OpenCV's and FFmpeg's own warnings off while a capture opens (the error is ours)."""
    import cv2

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(previous)


class Source:
    """Frames of an image, a folder of images, a video file or a camera (an integer index)."""

    def __init__(self, spec: str):
        import cv2

        self.spec, self.capture, self.fps = spec, None, None
        path = Path(spec)
        if path.is_dir():
            self.kind, self.root = "folder", path
            self.files = list_photos(path)
            if not self.files:
                raise BadInputError(f"{path}: no images in the folder")
            self.name = path.name
        elif path.is_file() and is_image_name(path.name):
            self.kind, self.root, self.files, self.name = "image", path.parent, [path], path.stem
            self.first = read_photo(path)
        elif path.is_file() or spec.isdigit():
            self.kind = "video" if path.is_file() else "camera"
            with _quiet_opencv():
                self.capture = cv2.VideoCapture(str(path) if path.is_file() else int(spec))
                ok, first = self.capture.read() if self.capture.isOpened() else (False, None)
            if not ok:
                self.capture.release()
                what = f"{path}: cannot open the video (not a video file OpenCV reads, or corrupt)" \
                    if self.kind == "video" else f"camera {spec}: cannot open it (no such camera, or in use)"
                raise BadInputError(what)
            self.first = cv2.cvtColor(first, cv2.COLOR_BGR2RGB)
            fps = self.capture.get(cv2.CAP_PROP_FPS)
            self.fps = fps if fps and math.isfinite(fps) and 0 < fps <= 240 else 25.0
            self.name = path.stem if self.kind == "video" else f"camera{spec}"
        else:
            raise BadInputError(f"{spec}: no such image, folder, video file or camera index")

    @property
    def is_stream(self) -> bool:
        return self.capture is not None

    @property
    def total(self) -> int | None:
        import cv2

        if self.kind == "camera":
            return None
        if self.kind == "video":
            count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))
            return count if count > 0 else None
        return len(self.files)

    def frames(self) -> Iterator[Frame]:
        import cv2

        if not self.is_stream:
            for k, path in enumerate(self.files):
                rel = path.relative_to(self.root).as_posix()
                if k == 0 and self.kind == "image":
                    yield Frame(0, rel, self.first)
                    continue
                try:
                    yield Frame(k, rel, read_photo(path))
                except BadInputError as error:
                    yield Frame(k, rel, None, str(error))
            return
        start, k, image = time.perf_counter(), 0, self.first
        try:
            while image is not None:
                when = k / self.fps if self.kind == "video" else time.perf_counter() - start
                yield Frame(k, f"{self.name} frame {k}", image, time_s=round(when, 3))
                ok, bgr = self.capture.read()
                image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if ok else None
                k += 1
        finally:
            self.capture.release()


class Identifier:
    """Faces of an RGB image -> [{box, confidence, name, similarity, known}] (largest first)."""

    def __init__(self, model: EmbeddingModel, gallery: Gallery, detector: FaceDetector, threshold: float):
        self.model, self.gallery, self.detector, self.threshold = model, gallery, detector, float(threshold)

    def __call__(self, image: np.ndarray) -> list[dict]:
        faces = self.detector.detect_one(image)
        if not faces:
            return []
        vectors = embed_faces(self.model, face_crops(image, faces, self.model.image_size, self.gallery),
                              flip=self.gallery.flip)
        return named_faces(self.gallery, faces, vectors, self.threshold)


def face_crops(image: np.ndarray, faces, image_size, gallery: Gallery) -> np.ndarray:
    """The faces of ``image`` aligned or cropped as ``gallery`` was enrolled: (N, H, W, 3)."""
    return np.stack([extract_face(image, f, image_size, gallery.method, gallery.margin) for f in faces])


def named_faces(gallery: Gallery, faces, vectors: np.ndarray, threshold: float) -> list[dict]:
    """Each face with the closest person of ``gallery``, its similarity, and that person's name,
    or ``unknown`` below ``threshold``."""
    best, similarity = gallery.match(vectors)
    out = []
    for face, k, s in zip(faces, best, similarity):
        closest = gallery.names[k] if k >= 0 else None
        known = bool(closest is not None and s >= threshold)
        out.append({**face.to_dict(), "name": closest if known else UNKNOWN, "closest": closest,
                    "similarity": round(float(s), 4), "known": known})
    return out


def annotate(image: np.ndarray, results: list[dict], fps: float | None = None) -> np.ndarray:
    """A copy of the RGB image with each face's box, name and similarity (and the fps)."""
    import cv2

    out = np.ascontiguousarray(image).copy()
    scale = max(out.shape[0], out.shape[1]) / 640.0
    font, size, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.5 * max(scale, 0.6), max(int(round(scale)), 1)
    for r in results:
        x1, y1, x2, y2 = (int(round(v)) for v in r["box"])
        colour = KNOWN_COLOUR if r["known"] else UNKNOWN_COLOUR
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2 * thick)
        label = f"{r['name']} {r['similarity']:.2f}"
        (w, h), base = cv2.getTextSize(label, font, size, thick)
        top = max(y1 - h - base - 4, 0)
        cv2.rectangle(out, (x1, top), (x1 + w + 4, top + h + base + 4), colour, -1)
        cv2.putText(out, label, (x1 + 2, top + h + 2), font, size, (255, 255, 255), thick, cv2.LINE_AA)
    if fps is not None:
        cv2.putText(out, f"{fps:.1f} fps", (8, int(24 * max(scale, 0.6))), font, size, (255, 255, 0), thick,
                    cv2.LINE_AA)
    return out


def identify(identifier: Identifier, source: Source, out=None, progress: bool = True, log_stream=None,
             max_frames: int | None = None, warn=None) -> dict:
    """Identify every frame of ``source``; annotated outputs and ``log.jsonl`` go to ``out``
    (without it the JSON lines go to ``log_stream``, default stdout). The run's counts."""
    import cv2

    warn = warn or (lambda text: print(f"warning: {text}", file=sys.stderr))
    out = Path(out) if out is not None else None
    total = source.total if max_frames is None else min(source.total or max_frames, max_frames)
    stats = {"frames": 0, "faces": 0, "known": 0, "unreadable": 0, "stopped": False}
    fps, start = None, time.perf_counter()
    bar = progress_bar(total=total, desc="identifying", unit="frame", enabled=progress)
    with contextlib.ExitStack() as stack:
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            log = stack.enter_context(open(stack.enter_context(atomic_path(out / LOG_FILE)), "x", encoding="utf-8"))
        else:
            log = log_stream or sys.stdout
        writer = None
        frames = source.frames()
        stack.callback(frames.close)
        try:
            for frame in frames:
                if max_frames is not None and stats["frames"] >= max_frames:
                    break
                tick = time.perf_counter()
                record = {"frame": frame.index, "source": frame.source}
                if frame.time_s is not None:
                    record["time_s"] = frame.time_s
                if frame.image is None:
                    warn(frame.error)
                    stats["unreadable"] += 1
                    record["error"] = frame.error
                else:
                    results = identifier(frame.image)
                    record["faces"] = results
                    stats["faces"] += len(results)
                    stats["known"] += sum(r["known"] for r in results)
                    if out is not None:
                        drawn = annotate(frame.image, results, fps if source.is_stream else None)
                        if source.is_stream:
                            if writer is None:
                                video = stack.enter_context(atomic_path(out / f"{source.name}{VIDEO_SUFFIX}"))
                                height, width = drawn.shape[:2]
                                writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*VIDEO_CODEC),
                                                         source.fps, (width, height))
                                if not writer.isOpened():
                                    raise BadInputError(f"{out}: cannot write an {VIDEO_SUFFIX} video there")
                                stack.callback(writer.release)
                            writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
                        else:
                            target = out / frame.source
                            target.parent.mkdir(parents=True, exist_ok=True)
                            data = encode_photo(drawn, target.suffix)
                            atomic_write(target, lambda fh, data=data: fh.write(data), binary=True)
                log.write(json.dumps(record) + "\n")
                log.flush()
                stats["frames"] += 1
                rate = 1.0 / max(time.perf_counter() - tick, 1e-6)
                fps = rate if fps is None else 0.9 * fps + 0.1 * rate
                bar.set_postfix(fps=f"{fps:.1f}", faces=len(record.get("faces", [])), refresh=False)
                bar.update(1)
        except KeyboardInterrupt:
            stats["stopped"] = True
        finally:
            bar.close()
    stats["seconds"] = round(time.perf_counter() - start, 3)
    stats["frames_per_s"] = round(stats["frames"] / stats["seconds"], 2) if stats["seconds"] > 0 else None
    return stats
