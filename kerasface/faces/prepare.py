"""A raw image folder (one sub-folder per identity) -> an aligned face dataset of the same structure.

``SRC/<identity>/<name>.<ext>`` becomes ``DST/<identity>/<name>.<ext>`` (same format; JPEG at
quality 95): the largest face (``largest``), the face nearest the centre weighted by size
(``center``, ``kerasface.faces.detect.center_score``: the subject of a benchmark photo such as
LFW's), or every face (``all``: the largest under the original name, the others as
``<name>_face<k>.<ext>``, written before it). A photo without a face is dropped, or with
``fallback="center-crop"`` written as insightface's centre crop (``align.center_crop``), so a
pair set keeps every image. Text files beside the identity folders (LFW's ``pairs.txt``) are
copied, so ``DST/pairs.txt`` reads the prepared faces. The folder rules are
``kerasface.data.readers.read_image_folder``'s: hidden entries, non-images by name, nested
folders and images outside identity folders are ignored (and listed).

Every output is written under a temporary name and renamed when complete, so an interrupted run
leaves whole files only (the faces it has already detected are written before it stops); a file
whose output exists is skipped as done, so a rerun completes the rest. Files without a face
(and no fallback) or that do not decode have no output and are tried again by a rerun.
SRC is only read. ``DST/summary.json`` (also written on Ctrl-C or a crash, then with
``"complete": false``) lists every file under: aligned, no_face, center_crop (no face, the
centre crop written), several_faces (and which face was kept), unreadable (and why),
skipped_done, copied, ignored.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kerasface.data.decode import is_image_name
from kerasface.data.readers import visible_entries
from kerasface.data.spec import Skipped
from kerasface.errors import BadInputError
from kerasface.faces.align import FALLBACKS, METHODS, center_crop, extract_face, output_size
from kerasface.faces.detect import MODES, FaceDetector, detect_stream, select_faces
from kerasface.faces.imread import encode_photo, read_photo
from kerasface.fileio import atomic_write, write_json_atomic
from kerasface.progress import progress_bar

SUMMARY_FILE = "summary.json"
CATEGORIES = ("aligned", "no_face", "center_crop", "several_faces", "unreadable", "skipped_done")
LABELS = {"aligned": "aligned", "no_face": "no face found", "center_crop": "no face found, centre crop written",
          "several_faces": "several faces", "unreadable": "unreadable/corrupt", "skipped_done": "skipped as done",
          "copied": "text files copied", "ignored": "ignored"}
KEPT = {"largest": "the largest", "center": "the most central"}


def source_files(src: Path) -> tuple[list[str], list[Skipped]]:
    """Relative paths ``identity/name`` of the images of ``src``, and the entries ignored."""
    ignored: list[Skipped] = []
    files = []
    for entry in visible_entries(src, ignored):
        if not entry.is_dir():
            reason = "image outside any identity folder" if is_image_name(entry.name) else "not an image by name"
            ignored.append(Skipped(entry.path, reason))
            continue
        before = len(files)
        for f in visible_entries(entry.path, ignored):
            if f.is_dir():
                ignored.append(Skipped(f.path, "folder nested inside an identity folder"))
            elif is_image_name(f.name):
                files.append(f"{entry.name}/{f.name}")
            else:
                ignored.append(Skipped(f.path, "not an image by name"))
        if len(files) == before:
            ignored.append(Skipped(entry.path, "identity folder without images"))
    return files, ignored


def text_files(src: Path, ignored: list[Skipped]) -> tuple[list[str], list[Skipped]]:
    """The ``.txt`` files beside the identity folders of ``src`` (LFW's ``pairs.txt``) split off
    the entries ``source_files`` ignored: their names, and the other entries."""
    def beside(skipped):
        path = Path(skipped.path)
        return (path.parent == src and not path.name.startswith(".") and path.suffix.lower() == ".txt"
                and path.is_file())

    return [Path(s.path).name for s in ignored if beside(s)], [s for s in ignored if not beside(s)]


def output_names(rel: str, count: int) -> list[str]:
    """The output files of ``rel`` with ``count`` faces: the original name first."""
    path = Path(rel)
    return [rel] + [str(path.with_name(f"{path.stem}_face{k}{path.suffix}")) for k in range(1, count)]


def check_folders(src, dst) -> tuple[Path, Path]:
    src, dst = Path(src).expanduser().resolve(), Path(dst).expanduser().resolve()
    if not src.exists():
        raise BadInputError(f"{src}: no such folder")
    if not src.is_dir():
        raise BadInputError(f"{src}: not a folder; expected one sub-folder per identity")
    if dst.exists() and not dst.is_dir():
        raise BadInputError(f"{dst}: exists and is not a folder")
    if dst == src or src in dst.parents or dst in src.parents:
        raise BadInputError(f"{dst}: the output folder must lie outside {src} (and not contain it); "
                            "the source folder is never written to")
    return src, dst


class _Summary:
    def __init__(self, src: Path, dst: Path, settings: dict, ignored: list[Skipped], copied: list[str]):
        self.src, self.dst, self.settings, self.copied = src, dst, settings, copied
        self.lists = {c: [] for c in CATEGORIES}
        self.ignored = [{"file": Path(s.path).relative_to(src).as_posix(), "reason": s.reason} for s in ignored]
        self.start = time.perf_counter()

    def to_dict(self, complete: bool) -> dict:
        counts = {c: len(v) for c, v in self.lists.items()}
        counts["copied"], counts["ignored"] = len(self.copied), len(self.ignored)
        return {"src": str(self.src), "dst": str(self.dst), **self.settings, "complete": complete,
                "seconds": round(time.perf_counter() - self.start, 2), "counts": counts, **self.lists,
                "copied": self.copied, "ignored": self.ignored}


def summary_text(summary: dict, shown: int = 10) -> str:
    """Counts and (the first ``shown``) file names of each category."""
    lines = [f"{summary['src']} -> {summary['dst']}" + ("" if summary["complete"] else " (interrupted)")]
    for key in (*CATEGORIES, "copied", "ignored"):
        entries = summary[key]
        lines.append(f"  {LABELS[key]}: {len(entries)}")
        if key in ("aligned", "skipped_done"):
            continue
        for entry in entries[:shown]:
            if key == "several_faces":
                kept = ("all kept" if entry["kept"] == "all"
                        else f"kept {KEPT[summary['mode']]}, box {entry['kept']['box']}")
                lines.append(f"    {entry['file']}: {entry['faces']} faces, {kept}")
            elif key in ("unreadable", "ignored"):
                lines.append(f"    {entry['file']}: {entry['reason']}")
            else:
                lines.append(f"    {entry}")
        if len(entries) > shown:
            lines.append(f"    ... and {len(entries) - shown} more (see {SUMMARY_FILE})")
    return "\n".join(lines)


def prepare_faces(src, dst, size=112, mode: str = "largest", method: str = "align", margin: float = 0.2,
                  fallback: str = "none", workers: int = 4, detector: FaceDetector | None = None,
                  min_face_size: float = 20, threshold: float = 0.9, max_side: int | None = 1280,
                  progress: bool = True) -> dict:
    """Detect, align and write every face image of ``src`` into ``dst``; the summary dict (also
    written to ``dst/summary.json``)."""
    src, dst = check_folders(src, dst)
    size = output_size(size)
    if mode not in MODES:
        raise BadInputError(f"unknown face mode {mode!r}; choose one of {', '.join(MODES)}")
    if method not in METHODS:
        raise BadInputError(f"unknown face method {method!r}; choose one of {', '.join(METHODS)}")
    if fallback not in FALLBACKS:
        raise BadInputError(f"unknown fallback {fallback!r}; choose one of {', '.join(FALLBACKS)}")
    if workers < 1:
        raise BadInputError(f"workers must be >= 1, got {workers}")
    files, ignored = source_files(src)
    copied, ignored = text_files(src, ignored)
    if not files:
        raise BadInputError(f"{src}: no images in identity sub-folders ({src}/<identity>/<image>)")
    detector = detector or FaceDetector(min_face_size=min_face_size, threshold=threshold, max_side=max_side)
    settings = {"mode": mode, "method": method, "size": list(size), **({"margin": margin} if method == "crop" else {}),
                "fallback": fallback, "min_face_size": detector.min_face_size, "threshold": detector.threshold}
    summary = _Summary(src, dst, settings, ignored, copied)
    todo = []
    for rel in files:
        (summary.lists["skipped_done"] if (dst / rel).is_file() else todo).append(rel)
    dst.mkdir(parents=True, exist_ok=True)
    for name in copied:
        if (dst / name).is_file():
            continue
        data = (src / name).read_bytes()
        atomic_write(dst / name, lambda fh, data=data: fh.write(data), binary=True)

    def read(rel):
        try:
            return read_photo(src / rel)
        except BadInputError as error:
            raise BadInputError(str(error).removeprefix(f"{src / rel}: ")) from None

    def write(rel, image, faces):
        outputs = ([(rel, center_crop(image, size))] if not faces else
                   [(name, extract_face(image, face, size, method, margin))
                    for name, face in zip(output_names(rel, len(faces)), faces)])
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        for name, face in reversed(outputs):
            data = encode_photo(face, Path(name).suffix)
            atomic_write(dst / name, lambda fh, data=data: fh.write(data), binary=True)

    def record(rel, count, kept):
        if not kept:
            summary.lists["center_crop"].append(rel)
            return
        summary.lists["aligned"].append(rel)
        if count > 1:
            summary.lists["several_faces"].append(
                {"file": rel, "faces": count, "kept": "all" if mode == "all" else kept[0].to_dict(),
                 "outputs": output_names(rel, len(kept))})

    complete = False
    writes = []
    bar = progress_bar(total=len(files), desc="faces", unit="img", enabled=progress)
    bar.update(len(summary.lists["skipped_done"]))
    pool = ThreadPoolExecutor(max_workers=workers)
    stream = detect_stream(detector, todo, read, workers)
    try:
        for results in stream:
            earlier = len(writes)
            for rel, image, faces, reason in results:
                if image is None:
                    summary.lists["unreadable"].append({"file": rel, "reason": reason})
                elif not faces and fallback == "none":
                    summary.lists["no_face"].append(rel)
                else:
                    kept = select_faces(faces, mode, image.shape)
                    writes.append((rel, len(faces), kept, pool.submit(write, rel, image, kept)))
            for rel, count, kept, future in writes[:earlier]:
                future.result()
                record(rel, count, kept)
                bar.update(1)
            del writes[:earlier]
            bar.update(len(results) - (len(writes) - earlier))
        for rel, count, kept, future in writes:
            future.result()
            record(rel, count, kept)
            bar.update(1)
        writes.clear()
        complete = True
    finally:
        stream.close()
        pool.shutdown(wait=True)  # faces already detected are written, also on Ctrl-C
        for rel, count, kept, future in writes:
            if not future.cancelled() and future.exception() is None:
                record(rel, count, kept)
        bar.close()
        result = summary.to_dict(complete)
        write_json_atomic(dst / SUMMARY_FILE, result)
    return result

