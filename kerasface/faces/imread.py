"""Photos from disk as RGB uint8 (H, W, 3), whatever they were stored as.

OpenCV's ``IMREAD_COLOR`` does the work: EXIF orientation is applied, grayscale is repeated over
three channels, CMYK JPEGs are converted, 16-bit images are scaled to 8 bits and alpha is
dropped. The bytes are read by Python, so paths OpenCV cannot open (non-ASCII on Windows) work.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from kerasface.data.decode import IMAGE_EXTENSIONS, is_image_name
from kerasface.errors import BadInputError

WRITE_PARAMS = {".jpg": [cv2.IMWRITE_JPEG_QUALITY, 95], ".jpeg": [cv2.IMWRITE_JPEG_QUALITY, 95]}


def decode_photo(data: bytes, name: str = "image") -> np.ndarray:
    """Encoded bytes -> RGB uint8 (H, W, 3); BadInputError naming ``name`` when they do not decode."""
    if not data:
        raise BadInputError(f"{name}: empty file")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        raise BadInputError(f"{name}: not a readable image (more pixels than OPENCV_IO_MAX_IMAGE_PIXELS "
                            f"{os.environ.get('OPENCV_IO_MAX_IMAGE_PIXELS', 2 ** 30)}, or corrupt)") from None
    if image is None or image.size == 0:
        raise BadInputError(f"{name}: not a readable image (corrupt or not {'/'.join(IMAGE_EXTENSIONS)})")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_photo(path) -> np.ndarray:
    """The image file ``path`` as RGB uint8 (H, W, 3) with its EXIF orientation applied."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise BadInputError(f"{path}: cannot read ({error.strerror or error})") from None
    return decode_photo(data, os.fspath(path))


def encode_photo(image: np.ndarray, suffix: str) -> bytes:
    """RGB uint8 (H, W, 3) -> the bytes of a ``suffix`` file (.jpg at quality 95, .png, .bmp)."""
    suffix = suffix.lower()
    ok, data = cv2.imencode(suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), WRITE_PARAMS.get(suffix, []))
    if not ok:
        raise BadInputError(f"cannot encode an image as {suffix}")
    return data.tobytes()


def list_photos(folder) -> list[Path]:
    """Image files (by name, ``kerasface.data.decode.is_image_name``) below ``folder``, sorted,
    hidden files and folders left out."""
    root = Path(folder)
    found = []
    for current, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(current) / f for f in sorted(files) if not f.startswith(".") and is_image_name(f)]
    return found
