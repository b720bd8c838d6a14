"""Face alignment: the similarity transform that takes the 5 landmarks onto a template, applied
with OpenCV ``warpAffine``; and a plain box crop with a margin for models not trained on
aligned faces.

Templates are in (x, y) pixels, landmarks in image order (left eye, right eye, nose, left and
right mouth corner as seen in the image). ``ARCFACE_112`` is insightface's 112x112 template;
``ARCFACE_112x96`` is the 112 (high) x 96 (wide) one of SphereFace/CosFace it was made from
(x - 8). Other output sizes use the 112x112 template scaled to fit and centred.
"""

from __future__ import annotations

import numpy as np

from kerasface.errors import BadInputError

ARCFACE_112x96 = np.array([[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366],
                           [33.5493, 92.3655], [62.7299, 92.2041]], np.float64)
ARCFACE_112 = ARCFACE_112x96 + np.array([8.0, 0.0])
METHODS = ("align", "crop")
CENTER_CROP_MARGIN = 44
FALLBACKS = ("none", "center-crop")


def output_size(size) -> tuple[int, int]:
    """``112`` -> (112, 112); ``(112, 96)`` or ``"112x96"`` -> (112, 96) as (height, width)."""
    if isinstance(size, str):
        parts = size.lower().split("x")
        try:
            size = tuple(int(p) for p in parts) if len(parts) == 2 else int(size)
        except ValueError:
            raise BadInputError(f"face size {size!r}: expected N or HxW, e.g. 112 or 112x96") from None
    height, width = (size, size) if np.isscalar(size) else size
    height, width = int(height), int(width)
    if height < 16 or width < 16:
        raise BadInputError(f"face size {height}x{width}: both sides must be >= 16 pixels")
    return height, width


def template(size=112) -> np.ndarray:
    """The (5, 2) landmark template for an output of ``size`` (height, width)."""
    height, width = output_size(size)
    if height * 96 == width * 112:
        return ARCFACE_112x96 * (height / 112.0)
    scale = min(height, width) / 112.0
    return ARCFACE_112 * scale + np.array([(width - 112.0 * scale) / 2, (height - 112.0 * scale) / 2])


def umeyama(src: np.ndarray, dst: np.ndarray, estimate_scale: bool = True) -> np.ndarray:
    """The 3x3 similarity transform T (rotation R, scale c, translation t) minimising
    sum_i ||dst_i - (c R src_i + t)||^2 (Umeyama, "Least-squares estimation of transformation
    parameters between two point patterns", IEEE PAMI 1991).

    With means mu, centred points X = src - mu_src, Y = dst - mu_dst, covariance
    S = Y^T X / n = U D V^T and d = diag(1, ..., 1, sign(det S)): R = U diag(d) V^T,
    c = trace(D diag(d)) / var(src), t = mu_dst - c R mu_src.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or len(src) < 2:
        raise BadInputError(f"umeyama: point sets {src.shape} and {dst.shape}: expected two (N >= 2, dim) arrays")
    n, dim = src.shape
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    u, singular, vt = np.linalg.svd(dst_c.T @ src_c / n)
    d = np.ones(dim)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rotation = u @ np.diag(d) @ vt
    variance = src_c.var(axis=0).sum()
    scale = float(singular @ d / variance) if estimate_scale and variance > 0 else 1.0
    transform = np.eye(dim + 1)
    transform[:dim, :dim] = scale * rotation
    transform[:dim, dim] = dst_mean - scale * rotation @ src_mean
    return transform


def alignment_matrix(landmarks: np.ndarray, size=112) -> np.ndarray:
    """The 2x3 matrix taking image pixels to the aligned face of ``size``."""
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.shape != (5, 2) or not np.all(np.isfinite(landmarks)):
        raise BadInputError(f"landmarks of shape {landmarks.shape}: expected 5 finite (x, y) points")
    return umeyama(landmarks, template(size))[:2]


def warp(image: np.ndarray, matrix: np.ndarray, size) -> np.ndarray:
    import cv2

    height, width = output_size(size)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)


def align_face(image: np.ndarray, landmarks: np.ndarray, size=112) -> np.ndarray:
    """The face whose 5 landmarks are given, warped onto the template of ``size``."""
    return warp(image, alignment_matrix(landmarks, size), size)


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 2) points through a 2x3 affine matrix."""
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def crop_matrix(box, size=112, margin: float = 0.2) -> np.ndarray:
    """The 2x3 matrix of a crop around ``box`` (x1, y1, x2, y2): the box grown by ``margin`` of
    its size on each side, widened or heightened to the output's aspect ratio, same centre."""
    if margin < 0:
        raise BadInputError(f"crop margin must be >= 0, got {margin}")
    height, width = output_size(size)
    x1, y1, x2, y2 = (float(v) for v in box)
    box_w, box_h = max(x2 - x1, 1.0) * (1 + 2 * margin), max(y2 - y1, 1.0) * (1 + 2 * margin)
    region_h = max(box_h, box_w * height / width)
    scale = height / region_h
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return np.array([[scale, 0.0, width / 2 - scale * cx], [0.0, scale, height / 2 - scale * cy]])


def crop_face(image: np.ndarray, box, size=112, margin: float = 0.2) -> np.ndarray:
    """The box crop (``crop_matrix``) resized to ``size``; outside the image is black."""
    return warp(image, crop_matrix(box, size, margin), size)


def face_matrix(face, size=112, method: str = "align", margin: float = 0.2) -> np.ndarray:
    """The 2x3 matrix of ``method`` (``align``: landmarks onto the template; ``crop``: box crop)."""
    if method == "align":
        return alignment_matrix(face.landmarks, size)
    if method == "crop":
        return crop_matrix(face.box, size, margin)
    raise BadInputError(f"unknown face method {method!r}; choose one of {', '.join(METHODS)}")


def extract_face(image: np.ndarray, face, size=112, method: str = "align", margin: float = 0.2) -> np.ndarray:
    """The aligned (or cropped) face of ``size`` from ``image``."""
    return warp(image, face_matrix(face, size, method, margin), size)


def center_crop(image: np.ndarray, size=112, margin: int = CENTER_CROP_MARGIN) -> np.ndarray:
    """insightface's crop of a photo without a detected face (``face_preprocess.preprocess``
    without box or landmarks): the image inset by 1/16 of each side, grown by ``margin / 2``
    pixels per side within the image, resized to ``size``."""
    import cv2

    height, width = image.shape[:2]
    inset_x, inset_y = int(width * 0.0625), int(height * 0.0625)
    left, top = max(inset_x - margin // 2, 0), max(inset_y - margin // 2, 0)
    right, bottom = min(width - inset_x + margin // 2, width), min(height - inset_y + margin // 2, height)
    out_height, out_width = output_size(size)
    return cv2.resize(image[top:bottom, left:right], (out_width, out_height), interpolation=cv2.INTER_LINEAR)
