"""Embeddings of images by a model: a ``.keras`` file, a run folder (its ``model.keras``), a
SavedModel folder (its ``serving_default`` signature) or an in-memory ``keras.Model``.

Images (paths or encoded bytes) are decoded and resized in ``tf.data`` (``kerasface.data.decode``)
to the model's input (H, W), batched and prefetched, and fed to the model as float32 RGB in
[0, 255] (models carry their own input scaling). The resize mode is the one asked for (``--resize``),
else the one the model was trained with: recorded in the model (``kerasface.models.preprocessing``)
or in a kit SavedModel's ``kerasface_input.json``, else, for a model saved before models kept it,
in its run's ``config.json``. A model that says nothing takes images of its own size only: any
other is refused, not resized by a guess. With ``flip`` an image's embedding is
``f(x) + f(mirror(x))`` (insightface's flip test); ``normalize`` divides each by its L2 norm.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from kerasface.errors import BadInputError
from kerasface.eval.verification import l2_normalize
from kerasface.progress import progress_bar
from kerasface.saving import load_model

RESIZE_FLAG = "--resize pad|stretch|crop"


@dataclasses.dataclass
class EmbeddingModel:
    """``predict``: float32 images (B, H, W, 3), RGB in [0, 255] -> (B, D) embeddings;
    ``resize_mode`` None: nothing says how the model's images were resized, so they must come at
    ``image_size``; ``preprocessing``: the model's own record of its input
    (``InputPreprocessing.as_dict``), if any."""

    name: str
    image_size: tuple[int, int]
    resize_mode: str | None
    predict: Callable[[np.ndarray], np.ndarray]
    preprocessing: dict | None = None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        out = np.asarray(self.predict(images))
        if out.ndim != 2:
            raise BadInputError(
                f"{self.name}: the model outputs shape {out.shape} per batch; an embedding model must output "
                "one vector per image (batch, dim)")
        return out


def _size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    height, width = (image_size, image_size) if np.isscalar(image_size) else image_size
    return int(height), int(width)


def _pick_size(name: str, static: tuple, given) -> tuple[int, int]:
    given = _size(given)
    if all(isinstance(s, int) for s in static):
        if given is not None and given != tuple(static):
            raise BadInputError(f"{name}: the model takes {static[0]}x{static[1]} images, not {given[0]}x{given[1]}")
        return tuple(static)
    if given is None:
        raise BadInputError(f"{name}: the model accepts any image size; give the size to resize to (--image-size)")
    return given


def keras_embedding_model(model, name: str | None = None, image_size=None,
                          resize_mode: str | None = None) -> EmbeddingModel:
    """Wrap a single-input Keras model whose output is one (batch, dim) tensor; ``resize_mode``
    defaults to the one the model records."""
    from kerasface.models.preprocessing import input_preprocessing

    name = name or model.name
    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if inputs is not None and len(inputs) != 1:
        raise BadInputError(
            f"{name}: the model takes {len(inputs)} inputs (views?); evaluation embeds one image per call, "
            "so it needs a single-input model (train with --views single, or pass the embedding sub-model)")
    if outputs is not None and (len(outputs) != 1 or len(outputs[0].shape) != 2):
        shapes = [tuple(o.shape) for o in outputs]
        raise BadInputError(
            f"{name}: the model outputs {shapes}; an embedding model must output one vector per image "
            "(batch, dim)")
    shape = tuple(inputs[0].shape) if inputs is not None else (None, None, None, 3)
    if len(shape) != 4 or shape[-1] not in (3, None):
        raise BadInputError(f"{name}: the model's input has shape {shape}; expected RGB images (batch, H, W, 3)")
    size = _pick_size(name, shape[1:3], image_size)
    record = input_preprocessing(model, name)
    return EmbeddingModel(name, size, resize_mode or (record.resize_mode if record else None),
                          lambda x: np.asarray(model.predict_on_batch(x)), record.as_dict() if record else None)


def _savedmodel_embedding_model(folder: Path, image_size, resize_mode) -> EmbeddingModel:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(folder))
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise BadInputError(f"{folder}: the SavedModel has no serving_default signature")
    args, kwargs = signature.structured_input_signature
    specs = list(args) + list(kwargs.values())
    if len(specs) != 1:
        raise BadInputError(
            f"{folder}: serving_default takes {len(specs)} inputs; evaluation needs one batch of images")
    key, spec = next(iter(kwargs.items())) if kwargs else ("", args[0])
    if spec.shape.rank != 4 or spec.shape[-1] not in (3, None) or spec.dtype != tf.float32:
        raise BadInputError(
            f"{folder}: serving_default takes {spec.dtype.name} {spec.shape}; expected float32 images (B, H, W, 3)")
    outputs = signature.structured_outputs
    if len(outputs) != 1 or next(iter(outputs.values())).shape.rank != 2:
        raise BadInputError(
            f"{folder}: serving_default outputs {dict((k, v.shape) for k, v in outputs.items())}; an embedding "
            "model must output one vector per image (batch, dim)")
    output_key = next(iter(outputs))
    settings_file, settings = folder / "kerasface_input.json", {}
    if settings_file.is_file():
        from kerasface.data.pipeline import InputConfig

        settings = json.loads(settings_file.read_text())
        config = InputConfig(**{k: settings[k] for k in ("image_size", "views", "crop_fraction", "resize_mode")
                                if k in settings})
        image_size = image_size if image_size is not None else config.base_shape
        resize_mode = resize_mode or settings.get("resize_mode")
    size = _pick_size(str(folder), (spec.shape[1], spec.shape[2]), image_size)

    def predict(images):
        result = signature(**{key: tf.constant(images, tf.float32)}) if key else signature(tf.constant(images))
        return result[output_key].numpy()

    return EmbeddingModel(str(folder), size, resize_mode, predict, settings.get("preprocessing"))


def portable_embedding_model(path, image_size=None, resize_mode: str | None = None) -> EmbeddingModel:
    """An ``EmbeddingModel`` of an ONNX (``.onnx``, onnxruntime) or LiteRT (``.tflite``) export;
    the resize mode, unless given, is the one its ``FILE.json`` recorded (kerasface-export)."""
    from kerasface.export.portable import PREDICTORS, format_of, recorded_preprocessing

    path = Path(path)
    shape, predict = PREDICTORS[format_of(path)](path)
    if len(shape) != 4 or shape[-1] != 3:
        raise BadInputError(f"{path}: the model's input has shape {shape}; expected RGB images (batch, H, W, 3)")
    recorded = recorded_preprocessing(path)
    resize_mode = resize_mode or (recorded.resize_mode if recorded else None)
    return EmbeddingModel(str(path), _pick_size(str(path), shape[1:3], image_size), resize_mode, predict,
                          recorded.as_dict() if recorded else None)


def load_embedding_model(source, image_size=None, resize_mode: str | None = None) -> EmbeddingModel:
    """An ``EmbeddingModel`` from a keras.Model, a ``.keras`` file, a run folder, a SavedModel
    folder or an ONNX / LiteRT file."""
    if isinstance(source, EmbeddingModel):
        return dataclasses.replace(source, resize_mode=resize_mode) if resize_mode else source
    import keras

    if isinstance(source, keras.Model):
        return keras_embedding_model(source, image_size=image_size, resize_mode=resize_mode)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file or folder")
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return _savedmodel_embedding_model(path, image_size, resize_mode)
    if path.is_dir():
        model_file = path / "model.keras"
        if not model_file.is_file():
            raise BadInputError(
                f"{path}: neither a SavedModel (saved_model.pb) nor a run folder (model.keras)")
        path = model_file
    elif path.suffix.lower() in (".onnx", ".tflite"):
        return portable_embedding_model(path, image_size, resize_mode)
    elif path.suffix != ".keras":
        raise BadInputError(f"{path}: not a .keras, .onnx or .tflite model file, run folder or SavedModel folder")
    import kerasface.models  # noqa: F401  (registers the kit's layers for loading)

    try:
        model = load_model(path, compile=False)
    except (ValueError, TypeError, OSError) as error:
        raise BadInputError(f"{path}: cannot load the model: {str(error).splitlines()[0]}") from None
    embedding = keras_embedding_model(model, name=str(path), image_size=image_size, resize_mode=resize_mode)
    embedding.resize_mode = embedding.resize_mode or _run_resize_mode(path)
    return embedding


def _run_resize_mode(model_file: Path) -> str | None:
    """``data.resize_mode`` of the run that saved ``model_file`` (``RUN/model.keras``, another
    model beside it or ``RUN/checkpoints/*.keras``), or None."""
    from kerasface.train.config import CONFIG_FILE

    folder = model_file.parent
    run_dir = folder.parent if folder.name == "checkpoints" else folder
    try:
        settings = json.loads((run_dir / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return None
    data = settings.get("data") if isinstance(settings, dict) else None
    return data.get("resize_mode") if isinstance(data, dict) else None


def _unique(images: Sequence) -> tuple[list, np.ndarray, bool]:
    """Distinct images in first-seen order, the index of each input among them, and whether
    they are paths (else encoded bytes)."""
    if not len(images):
        raise BadInputError("no images to embed")
    is_bytes = [isinstance(i, (bytes, bytearray)) for i in images]
    if all(is_bytes):
        return [bytes(i) for i in images], np.arange(len(images)), False
    if any(is_bytes) or not all(isinstance(i, (str, os.PathLike)) for i in images):
        raise BadInputError("images must be all file paths or all encoded bytes")
    index: dict[str, int] = {}
    inverse = np.array([index.setdefault(os.fspath(i), len(index)) for i in images])
    return list(index), inverse, True


def image_dataset(images: Sequence, image_size, resize_mode: str | None = None, batch_size: int = 64,
                  paths: bool = True):
    """``tf.data`` of float32 (B, H, W, 3) batches: read (paths), decode, resize, batch, prefetch.
    Without ``resize_mode`` an image of another size fails its batch (``_undecodable`` names it)."""
    import tensorflow as tf

    from kerasface.data.decode import decode_image, resize_image

    size = _size(image_size)

    def load(item):
        data = tf.io.read_file(item) if paths else item
        image = decode_image(data)
        if resize_mode is not None:
            image = resize_image(image, size, resize_mode)
        return tf.ensure_shape(image, [*size, 3])

    return (tf.data.Dataset.from_tensor_slices(list(images))
            .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE))


def _undecodable(images: Sequence, start: int, stop: int, paths: bool, error, model: str = "the model",
                 size: tuple[int, int] | None = None) -> BadInputError:
    """The error naming the first image of ``images[start:stop]`` that does not decode or, with
    ``size`` (images that ``model`` takes as they are), is not of that size."""
    import tensorflow as tf

    from kerasface.data.decode import decode_image

    for k in range(start, min(stop, len(images))):
        what = images[k] if paths else f"image {k}"
        try:
            image = decode_image(tf.io.read_file(images[k]) if paths else tf.constant(images[k]))
        except (tf.errors.OpError, ValueError) as failure:
            reason = getattr(failure, "message", str(failure)).strip().splitlines()[0]
            return BadInputError(f"{what}: does not decode ({reason})")
        if size is not None and tuple(image.shape[:2]) != tuple(size):
            return BadInputError(
                f"{model}: records no resize mode (how its training resized images to {size[0]}x{size[1]}), "
                f"and {what} is {image.shape[0]}x{image.shape[1]}; give the one it was trained with "
                f"({RESIZE_FLAG})")
    return BadInputError(f"images {start}-{stop - 1} failed to load: {getattr(error, 'message', error)}")


def embed_batches(model: EmbeddingModel, batches, total: int, batch_size: int, flip: bool = False,
                  progress: bool = True, desc: str = "embedding", on_error=None) -> np.ndarray:
    """Embeddings (total, D) of an iterable of float32 image batches; each batch is padded to
    ``batch_size`` so that a compiled model sees one shape."""
    bar = progress_bar(total=total, desc=desc, enabled=progress, leave=False)
    out, start = None, 0
    iterator = iter(batches)
    try:
        while start < total:
            try:
                batch = np.asarray(next(iterator), dtype=np.float32)
            except StopIteration:
                break
            except Exception as error:
                if on_error is None:
                    raise
                raise on_error(start, start + batch_size, error) from None
            count = len(batch)
            if count < batch_size:
                batch = np.concatenate([batch, np.zeros((batch_size - count, *batch.shape[1:]), np.float32)])
            vectors = model(batch)
            if flip:
                vectors = vectors + model(np.ascontiguousarray(batch[:, :, ::-1]))
            if out is None:
                out = np.empty((total, vectors.shape[1]), np.float32)
            out[start:start + count] = vectors[:count]
            start += count
            bar.update(count)
    finally:
        bar.close()
    if out is None or start != total:
        raise BadInputError(f"{model.name}: embedded {start} of {total} images")
    return out


def extract_embeddings(model, images: Sequence, batch_size: int = 64, flip: bool = False, image_size=None,
                       resize_mode: str | None = None, normalize: bool = True, progress: bool = True,
                       desc: str = "embedding") -> np.ndarray:
    """float32 (N, D) embeddings of ``images`` (paths or encoded bytes); a path listed twice is
    embedded once."""
    import tensorflow as tf

    model = load_embedding_model(model, image_size=image_size, resize_mode=resize_mode)
    unique, inverse, paths = _unique(images)
    dataset = image_dataset(unique, model.image_size, model.resize_mode, batch_size, paths=paths)

    def on_error(start, stop, error):
        if isinstance(error, tf.errors.OpError):
            return _undecodable(unique, start, stop, paths, error, model.name,
                                None if model.resize_mode else model.image_size)
        return error

    vectors = embed_batches(model, dataset.as_numpy_iterator(), len(unique), batch_size, flip=flip,
                            progress=progress, desc=desc, on_error=on_error)[inverse]
    return l2_normalize(vectors).astype(np.float32) if normalize else vectors


def embed_pair_set(model, pair_set, **options) -> tuple[np.ndarray, np.ndarray]:
    """(first, second) embeddings of every pair of a ``PairSet`` (options: ``extract_embeddings``)."""
    options.setdefault("desc", f"embedding {pair_set.name}")
    vectors = extract_embeddings(model, pair_set.images, **options)
    return vectors[0::2], vectors[1::2]


def decode_images(images: Sequence, image_size, resize_mode: str | None = None, batch_size: int = 64,
                  dtype=np.uint8, model: str = "the model") -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``images`` decoded and resized into one (U, H, W, 3) array (rounded for an
    integer dtype), and the index of each of ``images`` in it; ``model`` names what they are for
    in errors."""
    import tensorflow as tf

    unique, inverse, paths = _unique(images)
    size = _size(image_size)
    out = np.empty((len(unique), *size, 3), dtype)
    start = 0
    iterator = image_dataset(unique, size, resize_mode, batch_size, paths=paths).as_numpy_iterator()
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            break
        except tf.errors.OpError as error:
            raise _undecodable(unique, start, start + batch_size, paths, error, model,
                               None if resize_mode else size) from None
        if np.issubdtype(dtype, np.integer):
            batch = np.clip(np.rint(batch), 0, 255)
        out[start:start + len(batch)] = batch
        start += len(batch)
    return out, inverse
