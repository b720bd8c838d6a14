"""Decoding and resizing of encoded images inside ``tf.data``, and checking files before training.

Images come out as float32 RGB in [0, 255]: grayscale is repeated over three channels and the
alpha channel of RGBA/BGRA images is dropped. Models carry their own input scaling.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import tensorflow as tf

from kerasface.progress import progress_bar

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
RESIZE_MODES = ("pad", "stretch", "crop")

_MAGIC = {
    b"\xff\xd8\xff": "jpeg",
    b"\x89PNG\r\n\x1a\n": "png",
    b"BM": "bmp",
}


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def decode_image(data: tf.Tensor, dtype: tf.DType = tf.float32) -> tf.Tensor:
    """Encoded JPEG/PNG/BMP bytes -> (H, W, 3) values in [0, 255], float32 or, with ``dtype``
    uint8, as decoded (``tf.image.resize`` reads uint8 as is)."""
    image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    return tf.cast(image, dtype)


def resize_image(image: tf.Tensor, size: int | tuple[int, int], mode: str = "pad") -> tf.Tensor:
    """Resize an (H, W, C) image or a (B, H, W, C) batch to ``size`` (square int or (height, width)).

    pad: keep the aspect ratio and pad the borders with zeros (letterbox);
    stretch: scale each axis independently;
    crop: keep the aspect ratio, scale the shorter side to fit and cut the centre.
    """
    height, width = (size, size) if isinstance(size, int) else size
    if mode == "stretch":
        return tf.image.resize(image, (height, width))
    if mode == "pad":
        return tf.image.resize_with_pad(image, height, width)
    if mode == "crop":
        shape = tf.cast(tf.shape(image)[-3:-1], tf.float32)
        scale = tf.maximum(height / shape[0], width / shape[1])
        scaled = tf.cast(tf.math.ceil(shape * scale), tf.int32)
        scaled = tf.maximum(scaled, [height, width])
        image = tf.image.resize(image, scaled)
        return tf.image.resize_with_crop_or_pad(image, height, width)
    raise ValueError(f"unknown resize mode {mode!r}; choose one of {RESIZE_MODES}")


def base_size(image_size: int, crop_fraction: float) -> int:
    """Size an image is resized to so that crops of ``crop_fraction`` are ``image_size`` wide."""
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction must lie in (0, 1], got {crop_fraction}")
    return int(math.ceil(image_size / crop_fraction - 1e-9))


def sniff_format(head: bytes) -> str | None:
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            return name
    return None


def _structural_problem(path: str) -> str | None:
    """Cheap checks on the bytes: present, non-empty, a known image format, not cut short."""
    try:
        size = os.path.getsize(path)
    except OSError as error:
        return f"cannot read file ({error.strerror or error})"
    if size == 0:
        return "empty file"
    with open(path, "rb") as handle:
        head = handle.read(16)
        handle.seek(max(0, size - 16))
        tail = handle.read(16)
    kind = sniff_format(head)
    if kind is None:
        return "not a JPEG, PNG or BMP image (unrecognised file header)"
    if kind == "jpeg" and b"\xff\xd9" not in tail:
        return "truncated JPEG (no end-of-image marker)"
    if kind == "png" and b"IEND" not in tail:
        return "truncated PNG (no IEND chunk)"
    return None


def _decode_problem(path: str) -> str | None:
    try:
        image = decode_image(tf.io.read_file(path))
        if image.shape[0] == 0 or image.shape[1] == 0:
            return "image has no pixels"
    except (tf.errors.OpError, ValueError) as error:
        message = getattr(error, "message", str(error)).strip().splitlines()[0]
        return f"does not decode ({message})"
    return None


VERIFY_MODES = ("auto", "full", "header", "none")
FULL_VERIFY_LIMIT = 20_000


def find_bad_images(paths, verify: str = "full", progress: bool = False) -> dict[str, str]:
    """Map each unusable image path to the reason.

    verify: "none" (no check), "header" (existence, size, file signature and end marker),
    "full" (also decode every image with the same TensorFlow decoder the pipeline uses),
    "auto" ("full" up to ``FULL_VERIFY_LIMIT`` images, "header" above: decoding millions of
    images before training would take longer than an epoch).
    """
    if verify not in VERIFY_MODES:
        raise ValueError(f"verify must be one of {VERIFY_MODES}, got {verify!r}")
    paths = list(paths)
    if verify == "auto":
        verify = "full" if len(paths) <= FULL_VERIFY_LIMIT else "header"
    if verify == "none" or not paths:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 2) * 2)) as pool:
        problems = dict(zip(paths, pool.map(_structural_problem, paths)))
    bad = {p: r for p, r in problems.items() if r is not None}
    if verify == "full":
        candidates = [p for p in paths if p not in bad]
        for path in _undecodable(candidates, progress):
            bad[path] = _decode_problem(path) or "does not decode"
    return bad


def _undecodable(paths: list[str], progress: bool) -> list[str]:
    """Decode every file in parallel in ``tf.data``; the paths that fail are those missing after
    ``ignore_errors``."""
    if not paths:
        return []

    def load(path):
        image = decode_image(tf.io.read_file(path))
        tf.debugging.assert_positive(tf.reduce_prod(tf.shape(image)[:2]))
        return path

    dataset = (
        tf.data.Dataset.from_tensor_slices(paths)
        .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        .ignore_errors()
        .batch(256)
    )
    bar = _progress(len(paths), "checking images", progress)
    seen = set()
    for batch in dataset:
        seen.update(p.decode() for p in batch.numpy())
        bar.update(len(batch))
    bar.close()
    return [p for p in paths if p not in seen]


def _progress(total: int, desc: str, enabled: bool):
    return progress_bar(total=total, desc=desc, enabled=enabled, leave=False)
