"""ONNX and LiteRT files of an embedding model, through Keras's own exporters
(``model.export(..., format="onnx" | "litert")``: tf2onnx, the LiteRT converter), each checked
against the Keras model before it is kept.

The file is written under a temporary name, run (onnxruntime, the LiteRT interpreter) on real
images next to the Keras model, and renamed into place only when the two agree: the largest
absolute difference relative to the largest embedding value, and the mean cosine, within the
limits of ``CHECKS`` for its quantization. ``FILE.json`` beside it records those figures and the
model's input preprocessing (``kerasface.models.preprocessing``), which loaders read back.
An int8 file keeps the ops of ``INT8_FLOAT_OPS`` (PReLU) in float32, so that the LiteRT CPU
delegate runs the whole graph. Needs the TensorFlow backend and the ``interop`` extra.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from kerasface.errors import BadInputError
from kerasface.fileio import atomic_path, write_json_atomic
from kerasface.models.preprocessing import InputPreprocessing, input_preprocessing

FORMATS = {"onnx": ".onnx", "litert": ".tflite"}
QUANTIZATIONS = ("none", "float16", "int8")


@dataclasses.dataclass(frozen=True)
class Check:
    """Largest allowed ``max |export - keras| / max |keras|`` and smallest mean cosine."""

    relative_max_abs: float
    mean_cosine: float


CHECKS = {"none": Check(1e-4, 0.99999), "float16": Check(1e-2, 0.999), "int8": Check(0.25, 0.98)}

# Ops an int8 file keeps in float32, each between a DEQUANTIZE and a QUANTIZE: the interpreter's
# CPU delegate (XNNPACK) takes PRELU in float32 only; an int8 PRELU runs in the interpreter's
# reference kernel instead, about 10 ns a value, which made int8 MobileFaceNet (33 PReLUs)
# slower than the Keras model. In float32 the delegate runs the whole graph.
INT8_FLOAT_OPS = ("PRELU",)


def figures_path(path) -> Path:
    """``MODEL.onnx`` -> ``MODEL.onnx.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def _require(module: str, package: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise RuntimeError(f"{module} is missing: pip install 'kerasface[interop]' (it installs {package})") from None


# --- running an exported file ----------------------------------------------------------------


def onnx_predictor(path) -> tuple[tuple, Callable[[np.ndarray], np.ndarray]]:
    """(input shape, ``predict``: float32 (B, H, W, 3) -> (B, D)) of an ONNX file."""
    ort = _require("onnxruntime", "onnxruntime")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types
        raise BadInputError(f"{path}: onnxruntime cannot load it ({str(error).splitlines()[0]})") from None
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(session.get_outputs()) != 1:
        raise BadInputError(f"{path}: {len(inputs)} inputs and {len(session.get_outputs())} outputs; an embedding "
                            "model takes one batch of images and gives one batch of embeddings")
    name = inputs[0].name
    shape = tuple(d if isinstance(d, int) else None for d in inputs[0].shape)
    return shape, lambda images: session.run(None, {name: np.asarray(images, np.float32)})[0]


def cpu_threads() -> int:
    """The CPUs this process may run on: the LiteRT interpreter's threads (its default is one;
    TensorFlow and onnxruntime use every core)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1


def litert_predictor(path) -> tuple[tuple, Callable[[np.ndarray], np.ndarray]]:
    """(input shape, ``predict``) of a LiteRT (.tflite) file; int8 inputs and outputs are
    (de)quantized with the file's scales."""
    interpreter_module = _require("ai_edge_litert.interpreter", "ai-edge-litert")
    try:
        interpreter = interpreter_module.Interpreter(model_path=str(path), num_threads=cpu_threads())
    except (ValueError, RuntimeError) as error:
        raise BadInputError(f"{path}: the LiteRT interpreter cannot load it ({error})") from None
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    shape = tuple(int(d) if d > 0 else None for d in inp["shape_signature"])
    state = {"batch": None}

    def predict(images):
        images = np.asarray(images, np.float32)
        if state["batch"] != len(images):
            interpreter.resize_tensor_input(inp["index"], [len(images), *images.shape[1:]])
            interpreter.allocate_tensors()
            state["batch"] = len(images)
        scale, zero = inp["quantization"]
        if scale:
            images = np.clip(np.round(images / scale + zero), np.iinfo(inp["dtype"]).min, np.iinfo(inp["dtype"]).max)
        interpreter.set_tensor(inp["index"], images.astype(inp["dtype"]))
        interpreter.invoke()
        result = interpreter.get_tensor(out["index"]).astype(np.float32)
        scale, zero = out["quantization"]
        return (result - zero) * scale if scale else result

    return shape, predict


PREDICTORS = {"onnx": onnx_predictor, "litert": litert_predictor}


def format_of(path) -> str | None:
    """``onnx`` or ``litert`` from the file's suffix, else None."""
    suffix = Path(path).suffix.lower()
    return next((fmt for fmt, s in FORMATS.items() if s == suffix), None)


def recorded_preprocessing(path) -> InputPreprocessing | None:
    """The input preprocessing an export recorded in its ``.json``, if any."""
    figures = figures_path(path)
    if not figures.is_file():
        return None
    values = json.loads(figures.read_text()).get("input_preprocessing")
    return InputPreprocessing.from_dict(values) if values else None


# --- exporting -------------------------------------------------------------------------------


def _block_diagonal(kernel: np.ndarray, groups: int) -> np.ndarray:
    kh, kw, per_group, filters = kernel.shape
    dense = np.zeros((kh, kw, per_group * groups, filters), kernel.dtype)
    out_per_group = filters // groups
    for g in range(groups):
        cols = slice(g * out_per_group, (g + 1) * out_per_group)
        dense[:, :, g * per_group:(g + 1) * per_group, cols] = kernel[:, :, :, cols]
    return dense


def without_grouped_convs(model: keras.Model) -> keras.Model:
    """``model``, or a copy whose grouped convs (arcface_torch's MobileFaceNet stem) are ordinary
    convs with block-diagonal kernels, the same function: TensorFlow runs a grouped conv on the CPU
    through an XLA call that neither tf2onnx nor the LiteRT converter take."""
    grouped = {layer.name for layer in model.layers
               if isinstance(layer, keras.layers.Conv2D) and getattr(layer, "groups", 1) > 1}
    if not grouped:
        return model

    def clone(layer):
        config = layer.get_config()
        if layer.name in grouped:
            config["groups"] = 1
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if layer.name in grouped:
            weights[0] = _block_diagonal(weights[0], layer.groups)
        copy.get_layer(layer.name).set_weights(weights)
    return copy


def _converter_options(quantize: str, calibration: np.ndarray | None) -> dict:
    import tensorflow as tf

    if quantize == "none":
        return {}
    options = {"optimizations": [tf.lite.Optimize.DEFAULT]}
    if quantize == "float16":
        return {**options, "target_spec": {"supported_types": [tf.float16]}}
    if calibration is None or not len(calibration):
        raise BadInputError("int8 quantization needs calibration images (--calibration DIR)")

    def representative():
        for image in calibration:
            yield [image[None].astype(np.float32)]

    # calibrated only: ``_quantize_calibrated`` quantizes, as the converter would, but for INT8_FLOAT_OPS
    return {**options, "representative_dataset": representative, "_experimental_calibrate_only": True}


def _quantize_calibrated(path: Path) -> None:
    """The calibrated float file at ``path`` quantized to int8 in place, float32 inputs and outputs:
    the converter's own last steps (the MLIR quantizer, then merging equal weight buffers) with
    ``INT8_FLOAT_OPS`` left in float32."""
    from tensorflow.lite.python import convert, lite

    quantized = convert.mlir_quantize(path.read_bytes(), denylisted_ops=list(INT8_FLOAT_OPS))
    path.write_bytes(lite._deduplicate_readonly_buffers(quantized))


def compare(predict: Callable, model: keras.Model, images: np.ndarray) -> dict:
    """Max absolute difference (and relative to the largest Keras value) and the mean and
    smallest cosine between ``predict``'s embeddings and the Keras model's."""
    ours = np.asarray(model.predict_on_batch(images), np.float64)
    theirs = np.asarray(predict(images), np.float64)
    if theirs.shape != ours.shape:
        raise BadInputError(f"the export gives {theirs.shape} for {len(images)} images, the Keras model {ours.shape}")
    cosine = np.sum(ours * theirs, 1) / np.maximum(np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1),
                                                   1e-30)
    max_abs = float(np.max(np.abs(ours - theirs)))
    return {"images": int(len(images)), "max_abs_difference": max_abs,
            "relative_max_abs_difference": max_abs / max(float(np.max(np.abs(ours))), 1e-30),
            "mean_cosine": float(np.mean(cosine)), "min_cosine": float(np.min(cosine))}


def export_portable(model: keras.Model, out, fmt: str, images: np.ndarray, quantize: str = "none",
                    calibration: np.ndarray | None = None, check: Check | None = None) -> dict:
    """Write ``model`` as ``fmt`` (``onnx``, ``litert``) to ``out`` when, on ``images`` (float32
    RGB in [0, 255] at the model's input size), it agrees with the Keras model within ``check``
    (default ``CHECKS[quantize]``); its figures go to ``out.json``. Returns them; raises, writing
    nothing, when the check fails."""
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(f"ONNX and LiteRT export need the TensorFlow backend; KERAS_BACKEND is "
                           f"{keras.backend.backend()!r}")
    if fmt not in FORMATS:
        raise BadInputError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if quantize not in QUANTIZATIONS or (quantize != "none" and fmt != "litert"):
        raise BadInputError(f"--quantize {quantize}: {fmt} exports take none; litert takes {', '.join(QUANTIZATIONS)}")
    out = Path(out)
    if out.suffix.lower() != FORMATS[fmt]:
        raise BadInputError(f"{out}: a {fmt} export is a {FORMATS[fmt]} file")
    for path in (out, figures_path(out)):
        if path.exists():
            raise FileExistsError(f"{path}: exists; choose another --out or remove it first")
    if len(model.inputs) != 1 or len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        raise BadInputError(f"{model.name}: not an embedding model (one image input, one (batch, dim) output)")
    _require("onnx" if fmt == "onnx" else "ai_edge_litert.interpreter", "onnx" if fmt == "onnx" else "ai-edge-litert")
    exported = without_grouped_convs(model)
    signature = [keras.InputSpec(shape=(None, *model.input_shape[1:]), dtype="float32")]
    options = _converter_options(quantize, calibration) if fmt == "litert" else {}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        exported.export(str(tmp), format=fmt, input_signature=signature, verbose=False, **options)
        if fmt == "litert" and quantize == "int8":
            _quantize_calibrated(tmp)
        _, predict = PREDICTORS[fmt](tmp)
        figures = compare(predict, model, images)
        check = check or CHECKS[quantize]
        if figures["relative_max_abs_difference"] > check.relative_max_abs or figures["mean_cosine"] < check.mean_cosine:
            raise RuntimeError(
                f"{out}: the {fmt} export ({quantize}) differs from the Keras model: max abs difference "
                f"{figures['max_abs_difference']:.3g} ({figures['relative_max_abs_difference']:.3g} of the largest "
                f"value; limit {check.relative_max_abs:g}), mean cosine {figures['mean_cosine']:.6f} (limit "
                f"{check.mean_cosine}); not written")
        recorded = input_preprocessing(model)
        figures = {"format": fmt, "quantize": quantize, **figures, "limits": dataclasses.asdict(check),
                   "input_preprocessing": recorded.as_dict() if recorded else None}
        write_json_atomic(figures_path(out), figures)
    return figures
