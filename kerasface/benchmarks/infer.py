"""Inference speed and size of one embedding model in each serving format, on this machine.

Every format but ``keras`` (the ``.keras`` file itself) is exported into a folder with the kit's
own exporters (``export_savedmodel``, ``export_portable``: each export checked against the Keras
model as kerasface-export checks it) and read back through ``load_embedding_model``, the loader
evaluation and identification use; so the timed ``predict`` is the one they run. Per format:
the size on disk (a SavedModel folder: all its files), the median latency of one image (batch 1)
over ``runs`` calls after ``warmup`` untimed ones, and images/s at ``batch_size``.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

FORMATS = {  # name -> (export format, quantization)
    "keras": ("keras", "none"),
    "savedmodel": ("savedmodel", "none"),
    "onnx": ("onnx", "none"),
    "litert": ("litert", "none"),
    "litert-float16": ("litert", "float16"),
    "litert-int8": ("litert", "int8"),
}
SUFFIXES = {"onnx": ".onnx", "litert": ".tflite"}


@dataclasses.dataclass(frozen=True)
class InferBenchmark:
    runs: int = 50
    warmup: int = 5
    batch_size: int = 32
    batch_runs: int = 5


def size_on_disk(path) -> int:
    """Bytes of a file, or of every file below a folder."""
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def synthetic_images(count: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """``count`` smooth random float32 RGB images in [0, 255] (low-frequency noise, upsampled)."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (count, 8, 8, 3)).astype(np.float32)
    return np.stack([cv2.resize(s, (size[1], size[0]), interpolation=cv2.INTER_CUBIC) for s in small]).clip(0, 255)


def export_format(name: str, model, model_file: Path, folder: Path, check_images: np.ndarray,
                  calibration: np.ndarray, checked: bool = True) -> tuple[Path, dict]:
    """The file or folder of ``model`` in format ``name`` (``FORMATS``), written under ``folder``,
    and for ONNX and LiteRT their agreement with the Keras model on ``check_images`` (``checked``
    False: kept whatever it is)."""
    fmt, quantize = FORMATS[name]
    if fmt == "keras":
        return Path(model_file), {}
    if fmt == "savedmodel":
        from kerasface.data.pipeline import InputConfig
        from kerasface.export.savedmodel import export_savedmodel
        from kerasface.models.preprocessing import input_preprocessing

        recorded = input_preprocessing(model)
        height, width = model.input_shape[1:3]
        config = InputConfig(image_size=int(height), resize_mode=(recorded.resize_mode if recorded else None) or "pad")
        return export_savedmodel(model, config, folder / "savedmodel"), {}
    from kerasface.export.portable import Check, export_portable

    out = folder / f"{name}{SUFFIXES[fmt]}"
    figures = export_portable(model, out, fmt, check_images, quantize, calibration if quantize == "int8" else None,
                              check=None if checked else Check(float("inf"), -1.0))
    return out, {"mean_cosine": figures["mean_cosine"], "relative_max_abs_difference":
                 figures["relative_max_abs_difference"]}


def time_predict(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray, settings: InferBenchmark) -> dict:
    """Median batch-1 latency (ms) over ``settings.runs`` calls and images/s at ``settings.batch_size``."""
    one = images[:1]
    batch = np.resize(images, (settings.batch_size, *images.shape[1:])).astype(np.float32)
    for _ in range(settings.warmup):
        predict(one)
    latencies = []
    for _ in range(settings.runs):
        start = time.perf_counter()
        predict(one)
        latencies.append(time.perf_counter() - start)
    predict(batch)
    start = time.perf_counter()
    for _ in range(settings.batch_runs):
        predict(batch)
    elapsed = time.perf_counter() - start
    return {"latency_ms_p50": 1000 * statistics.median(latencies),
            "images_per_s": settings.batch_size * settings.batch_runs / elapsed}


def benchmark_formats(model_file, formats, folder, calibration: np.ndarray | None = None,
                      settings: InferBenchmark = InferBenchmark(), checked: bool = True):
    """Yields one row per format, as each is measured (an export that fails its check: a row
    with its ``error``): size on disk, batch-1 p50 latency, images/s at the batch size.
    ``calibration``: float32 RGB images at the model's size for the int8 calibration and the
    exports' checks; synthetic images when None (the rows say which). ``checked`` False keeps an
    export that disagrees with the Keras model (random weights: the timing does not depend on
    them); the rows carry the agreement either way."""
    from kerasface.eval.embeddings import load_embedding_model
    from kerasface.saving import load_model

    import kerasface.models  # noqa: F401  (registers the kit's layers for loading)

    model = load_model(model_file, compile=False)
    size = tuple(int(s) for s in model.input_shape[1:3])
    images = calibration if calibration is not None else synthetic_images(32, size)
    for name in formats:
        try:
            path, agreement = export_format(name, model, Path(model_file), Path(folder), images[:8], images,
                                            checked)
        except RuntimeError as error:  # an export that fails its check against the Keras model
            yield {"format": name, "error": str(error)}
            continue
        embedding = load_embedding_model(path)
        row = {"format": name, "path": str(path), "size_bytes": size_on_disk(path), "image_size": list(size),
               **time_predict(embedding.predict, images, settings), "batch_size": settings.batch_size,
               **agreement}
        if name == "litert-int8":
            row["calibration"] = (f"{len(images)} images (--calibration)" if calibration is not None
                                  else f"{len(images)} synthetic images")
        yield row
