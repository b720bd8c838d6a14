"""Face detection with MTCNN (Zhang et al., "Joint Face Detection and Alignment using Multi-task
Cascaded Convolutional Networks", IEEE SPL 2016) from the ``mtcnn`` package, whose weights ship
inside it.

``FaceDetector.detect`` takes several RGB images per call. Images of similar shape go through
the package's stages together, padded to a common size (one PNet/RNet/ONet call per pyramid
scale for the whole batch instead of one per image), and each stage network runs as one
``tf.function`` traced for any image size and batch, instead of Keras' eager layer-by-layer call. Each face has a box
(x1, y1, x2, y2), five landmarks in image order (left eye, right eye, nose, left and right mouth
corner as seen in the image) and the ONet confidence; faces of an image come largest first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from kerasface.errors import BadInputError

MODES = ("largest", "center", "all")
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
MIN_SIDE = 12


@dataclasses.dataclass
class Face:
    box: np.ndarray
    landmarks: np.ndarray
    confidence: float

    @property
    def area(self) -> float:
        return float(max(self.box[2] - self.box[0], 0.0) * max(self.box[3] - self.box[1], 0.0))

    def to_dict(self, digits: int = 2) -> dict:
        return {"box": [round(float(v), digits) for v in self.box],
                "confidence": round(float(self.confidence), 4),
                "landmarks": {k: [round(float(x), digits), round(float(y), digits)]
                              for k, (x, y) in zip(LANDMARK_NAMES, self.landmarks)}}


def center_score(face: Face, shape) -> float:
    """Box area minus twice the squared distance of the box centre from the centre of an image of
    ``shape`` (pixels): the face FaceNet's and insightface's MTCNN preparation of LFW keep."""
    height, width = shape[:2]
    x1, y1, x2, y2 = face.box
    return face.area - 2.0 * (((x1 + x2) / 2 - width / 2) ** 2 + ((y1 + y2) / 2 - height / 2) ** 2)


def select_faces(faces: list[Face], mode: str, shape=None) -> list[Face]:
    """``largest``: the first (largest) face only; ``center``: the face of the highest
    ``center_score`` in an image of ``shape``, the subject of a benchmark photo; ``all``: every face."""
    if mode not in MODES:
        raise BadInputError(f"unknown face mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "all":
        return list(faces)
    if mode == "center" and faces:
        if shape is None:
            raise ValueError("mode 'center' needs the image shape")
        return [max(faces, key=lambda face: center_score(face, shape))]
    return faces[:1]


class _Compiled:
    """A stage network called through one ``tf.function`` with unknown batch, height and width."""

    def __init__(self, network):
        import tensorflow as tf

        spec = tf.TensorSpec([None, None, None, 3], tf.float32)
        self._tf = tf
        self._call = tf.function(lambda x: network(x, training=False), input_signature=[spec])

    def __call__(self, images):
        return self._call(self._tf.cast(images, self._tf.float32))


def default_device() -> str:
    import tensorflow as tf

    return "GPU:0" if tf.config.list_physical_devices("GPU") else "CPU:0"


def shape_batches(shapes: Sequence[tuple[int, int]], batch_size: int, max_padding: float = 1.25) -> list[list[int]]:
    """Indices grouped into batches of at most ``batch_size`` whose common padded size (the
    largest height by the largest width) is at most ``max_padding`` times any member's area."""
    order = sorted(range(len(shapes)), key=lambda i: (shapes[i][0], shapes[i][1], i))
    batches: list[list[int]] = []
    current: list[int] = []
    height = width = 0
    smallest = np.inf
    for i in order:
        h, w = shapes[i]
        new_h, new_w, new_small = max(height, h), max(width, w), min(smallest, h * w)
        if current and (len(current) == batch_size or new_h * new_w > max_padding * new_small):
            batches.append(current)
            current, new_h, new_w, new_small = [], h, w, h * w
        current.append(i)
        height, width, smallest = new_h, new_w, new_small
    if current:
        batches.append(current)
    return batches


class FaceDetector:
    """MTCNN with a minimum face size (pixels) and a confidence threshold (ONet's score).

    ``max_side``: images whose longer side is larger are detected at a reduced scale (boxes and
    landmarks are given in the original pixels); faces smaller than 12 pixels at that scale are
    not found. ``batch_size``: images per network call."""

    def __init__(self, min_face_size: float = 20, threshold: float = 0.9, batch_size: int = 16,
                 max_side: int | None = None, device: str | None = None):
        if not min_face_size > 0:
            raise BadInputError(f"minimum face size must be > 0 pixels, got {min_face_size}")
        if not 0.0 <= threshold < 1.0:
            raise BadInputError(f"confidence threshold must lie in [0, 1), got {threshold}")
        if batch_size < 1:
            raise BadInputError(f"batch size must be >= 1, got {batch_size}")
        if max_side is not None and max_side < MIN_SIDE:
            raise BadInputError(f"max side must be >= {MIN_SIDE} pixels, got {max_side}")
        from mtcnn import MTCNN
        from mtcnn.stages import StageONet, StagePNet, StageRNet

        stages = [StagePNet(), StageRNet(), StageONet()]
        for stage in stages:
            stage._model = _Compiled(stage.model)
        self.min_face_size = float(min_face_size)
        self.threshold = float(threshold)
        self.batch_size = int(batch_size)
        self.max_side = max_side
        self.device = device or default_device()
        self._mtcnn = MTCNN(stages=stages, device=self.device)

    def _scale(self, shape) -> float:
        longest = max(shape[:2])
        return 1.0 if self.max_side is None or longest <= self.max_side else self.max_side / longest

    def _run(self, images: list[np.ndarray], min_face_size: float) -> list[list[Face]]:
        """The stages of the package's ``detect_faces`` on the batch padded to a common size
        (centred, ``mtcnn.utils.images.standarize_batch``); each face is moved back by the padding
        of its own image and its box clipped to that image. (``detect_faces`` itself pairs the
        offsets with the images that have faces by position, so one image without a face shifts
        the faces of every later image.)"""
        import tensorflow as tf
        from mtcnn.utils.images import standarize_batch

        with tf.device(self.device):
            stacked, shapes, padding = standarize_batch(images)
            rows = None
            try:
                for stage in self._mtcnn.stages:
                    rows = stage(bboxes_batch=rows, images_normalized=stacked, images_oshapes=shapes,
                                 min_face_size=min_face_size, threshold_onet=self.threshold)
            except tf.errors.InvalidArgumentError:  # how the package's stages end a batch without faces
                rows = None
        rows = np.empty((0, 16)) if rows is None else np.asarray(rows, np.float64).reshape(-1, 16)
        out = []
        for k, (height, width, _) in enumerate(shapes):
            mine = rows[rows[:, 0] == k]
            top, left = padding[k, 0, 0], padding[k, 1, 0]
            faces = []
            for r in mine:
                box = r[1:5] - (left, top, left, top)
                box[[0, 2]] = np.clip(box[[0, 2]], 0, width - 1)
                box[[1, 3]] = np.clip(box[[1, 3]], 0, height - 1)
                faces.append(Face(box, np.stack([r[6:11] - left, r[11:16] - top], axis=1), float(r[5])))
            out.append(sorted(faces, key=lambda f: -f.area))
        return out

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces of each RGB uint8 (H, W, 3) image, largest first."""
        import cv2

        results: list[list[Face]] = [[] for _ in images]
        prepared, shapes, scales, index = [], [], [], []
        for i, image in enumerate(images):
            image = np.asarray(image)
            if image.ndim != 3 or image.shape[2] != 3:
                raise BadInputError(f"image {i}: expected RGB (H, W, 3), got shape {image.shape}")
            scale = self._scale(image.shape)
            if scale != 1.0:
                size = (max(round(image.shape[1] * scale), 1), max(round(image.shape[0] * scale), 1))
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            if min(image.shape[:2]) < MIN_SIDE:
                continue
            prepared.append(image.astype(np.float32))
            shapes.append(image.shape[:2])
            scales.append(scale)
            index.append(i)
        for batch in shape_batches(shapes, self.batch_size):
            groups: dict[float, list[int]] = {}
            for k in batch:
                groups.setdefault(max(self.min_face_size * scales[k], MIN_SIDE) if scales[k] != 1.0
                                  else self.min_face_size, []).append(k)
            for min_face, members in groups.items():
                for k, faces in zip(members, self._run([prepared[k] for k in members], min_face)):
                    for face in faces:
                        face.box /= scales[k]
                        face.landmarks /= scales[k]
                    results[index[k]] = faces
        return results

    def detect_one(self, image: np.ndarray) -> list[Face]:
        return self.detect([image])[0]


def detect_stream(detector: FaceDetector, items: Sequence, read, workers: int = 4):
    """Chunks of ``detector.batch_size`` items as lists of (item, image, faces, error): images
    are read by ``read(item)`` (raising BadInputError: error is its message, image and faces
    None) in ``workers`` threads, the next chunk while this one is detected in one call."""
    from concurrent.futures import ThreadPoolExecutor

    def load(item):
        try:
            return read(item), None
        except BadInputError as error:
            return None, str(error)

    chunks = [list(items[i:i + detector.batch_size]) for i in range(0, len(items), detector.batch_size)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = [pool.submit(load, item) for item in chunks[0]] if chunks else []
        try:
            for n, chunk in enumerate(chunks):
                loaded = [f.result() for f in pending]
                pending = [pool.submit(load, item) for item in chunks[n + 1]] if n + 1 < len(chunks) else []
                found = iter(detector.detect([image for image, _ in loaded if image is not None]))
                yield [(item, image, None if image is None else next(found), error)
                       for item, (image, error) in zip(chunk, loaded)]
        finally:
            for future in pending:
                future.cancel()
