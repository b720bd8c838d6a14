"""Detection throughput and alignment accuracy on a folder of photos.

Throughput: images/s of a plain loop of ``MTCNN().detect_faces(path)`` (the package as its
README shows it) against the kit's path (``detect_stream``: files read in threads, images of
similar shape detected together by compiled stage networks), same images, same minimum face
size and ONet threshold, both after a warm-up. Agreement: the share of images where both find
the same number of faces, and the IoU of their largest boxes.

Alignment: for the largest face of each image, the distance (pixels of the 112x112 output)
of the two eye centres from the template's, (a) of the detected landmarks mapped by the
alignment matrix (the least-squares residual) and (b) of the eyes MTCNN finds again on the
aligned face (placed in the middle of a 224x224 black canvas): an independent check that the
warp puts the eyes where the template says.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from kerasface.errors import BadInputError
from kerasface.faces.align import align_face, alignment_matrix, template, transform_points
from kerasface.faces.detect import FaceDetector, detect_stream
from kerasface.faces.imread import list_photos, read_photo

CANVAS, OFFSET = 224, 56


def box_iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _figures(values) -> dict:
    values = np.asarray(values, np.float64)
    if not len(values):
        return {"count": 0}
    return {"count": int(len(values)), "mean": round(float(values.mean()), 3),
            "median": round(float(np.median(values)), 3), "p95": round(float(np.percentile(values, 95)), 3),
            "max": round(float(values.max()), 3)}


def eye_errors(detector: FaceDetector, images: list[np.ndarray], faces: list) -> dict:
    """Eye-centre distances from the 112x112 template: residual and re-detected (see module doc)."""
    eyes = template(112)[:2]
    residual, canvases = [], []
    for image, face in zip(images, faces):
        residual += list(np.linalg.norm(transform_points(alignment_matrix(face.landmarks), face.landmarks[:2]) - eyes,
                                        axis=1))
        canvas = np.zeros((CANVAS, CANVAS, 3), np.uint8)
        canvas[OFFSET:OFFSET + 112, OFFSET:OFFSET + 112] = align_face(image, face.landmarks)
        canvases.append(canvas)
    again = [found[0].landmarks[:2] - OFFSET for found in detector.detect(canvases) if found]
    redetected = [d for points in again for d in np.linalg.norm(points - eyes, axis=1)]
    return {"residual": _figures(residual), "redetected": {**_figures(redetected), "faces": len(faces),
                                                           "found_again": len(again)}}


def benchmark_detection(folder, limit: int = 200, batch_size: int = 16, workers: int = 4,
                        min_face_size: float = 20, threshold: float = 0.9, warmup: int = 4) -> dict:
    from mtcnn import MTCNN

    paths = list_photos(folder)[:limit]
    if not paths:
        raise BadInputError(f"{folder}: no images found")
    options = {"min_face_size": min_face_size, "threshold_onet": threshold}

    plain = MTCNN()
    for path in paths[:warmup]:
        plain.detect_faces(str(path), **options)
    start = time.perf_counter()
    loop_faces = [plain.detect_faces(str(path), **options) for path in paths]
    loop_seconds = time.perf_counter() - start

    detector = FaceDetector(min_face_size=min_face_size, threshold=threshold, batch_size=batch_size)
    detector.detect([read_photo(p) for p in paths[:batch_size]])
    start = time.perf_counter()
    kit = [row for chunk in detect_stream(detector, paths, read_photo, workers) for row in chunk]
    kit_seconds = time.perf_counter() - start

    same_count, ious, images, largest = 0, [], [], []
    for (path, image, faces, error), plain_faces in zip(kit, loop_faces):
        if error is not None:
            raise BadInputError(error)
        same_count += len(faces) == len(plain_faces)
        if faces and plain_faces:
            x, y, w, h = max(plain_faces, key=lambda f: f["box"][2] * f["box"][3])["box"]
            ious.append(box_iou(faces[0].box, (x, y, x + w, y + h)))
        if faces:
            images.append(image)
            largest.append(faces[0])
    import tensorflow as tf

    return {
        "folder": str(Path(folder)), "images": len(paths), "batch_size": batch_size, "workers": workers,
        "min_face_size": min_face_size, "threshold": threshold, "device": detector.device,
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "plain_loop_images_per_s": round(len(paths) / loop_seconds, 2),
        "kit_images_per_s": round(len(paths) / kit_seconds, 2),
        "speedup": round(loop_seconds / kit_seconds, 2),
        "agreement": {"same_face_count": round(same_count / len(paths), 4),
                      "largest_box_iou": _figures(ious),
                      "largest_box_iou_at_least_0.5": round(float(np.mean(np.array(ious) >= 0.5)), 4)
                      if ious else None},
        "eye_error_px": eye_errors(detector, images, largest),
    }
