"""SavedModel export for serving, with the input preprocessing inside the graph.

Signatures (all return the model's output as ``output_0``):
- ``serving_default``: float32 images (B, H, W, 3), RGB in [0, 255], any H and W; resized and
  cut into the model's views in the graph, exactly as the training pipeline does at evaluation.
- ``serve_bytes``: a (B,) string tensor of encoded JPEG/PNG/BMP images, decoded in the graph.
- ``serve_views``: the Keras model's own inputs (one float32 (B, S, S, 3) tensor per view).

Export needs the TensorFlow backend (the graph holds ``tf.image`` ops).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from kerasface.data.pipeline import InputConfig
from kerasface.errors import BadInputError
from kerasface.models.preprocessing import InputPreprocessing, input_preprocessing

INPUT_CONFIG_FILE = "kerasface_input.json"


def _require_tensorflow() -> None:
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"SavedModel export needs the TensorFlow backend; KERAS_BACKEND is {keras.backend.backend()!r}"
        )


def check_export_target(out_dir) -> None:
    """Raise unless ``out_dir`` is absent or an empty folder: an export never replaces files."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir}: exists and is not a folder; choose another output folder (--out)")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise FileExistsError(
            f"{out_dir}: exists and is not empty; choose another output folder (--out) or remove it first"
        )


def export_preprocessing(model: keras.Model, input_config: InputConfig) -> InputPreprocessing | None:
    """What the model records of its input, with the resize the export applies; refuses an
    input config whose resize differs from the one the model was trained with."""
    recorded = input_preprocessing(model)
    if recorded is None:
        return None
    if recorded.resize_mode not in (None, input_config.resize_mode):
        raise BadInputError(
            f"{model.name}: trained on images resized with {recorded.resize_mode!r}, but the export would "
            f"resize with {input_config.resize_mode!r}; export with resize_mode={recorded.resize_mode!r}")
    return dataclasses.replace(recorded, resize_mode=input_config.resize_mode)


def export_savedmodel(model: keras.Model, input_config: InputConfig, out_dir,
                      check: Callable[[Path], object] | None = None) -> Path:
    """Write ``model`` with its three signatures to ``out_dir`` via a temporary sibling folder,
    renamed when complete and, with ``check``, only once ``check(temporary folder)`` returns;
    when it raises, nothing is left. ``kerasface_input.json`` beside it records the input
    settings and the model's ``InputPreprocessing``."""
    _require_tensorflow()
    import tensorflow as tf

    from kerasface.data.crops import make_views
    from kerasface.data.decode import resize_image
    from kerasface.data.pipeline import preprocess_encoded

    out_dir = Path(out_dir).resolve()
    check_export_target(out_dir)
    preprocessing = export_preprocessing(model, input_config)
    size, base = input_config.image_size, input_config.base_shape
    multi = input_config.num_views > 1

    def run_model(views):
        return model(list(views) if multi else views, training=False)

    def from_images(images):
        resized = resize_image(images, base, input_config.resize_mode)
        resized = tf.ensure_shape(resized, [None, *base, 3])
        return run_model(make_views(resized, size, input_config.views))

    def from_bytes(data):
        images = tf.map_fn(lambda d: preprocess_encoded(d, input_config), data,
                           fn_output_signature=tf.TensorSpec([*base, 3], tf.float32))
        return run_model(make_views(images, size, input_config.views))

    view_spec = tf.TensorSpec([None, size, size, 3], tf.float32)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", from_images,
                         input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
    archive.add_endpoint("serve_bytes", from_bytes,
                         input_signature=[tf.TensorSpec([None], tf.string, name="encoded")])
    archive.add_endpoint(
        "serve_views",
        (lambda *views: run_model(views)) if multi else run_model,
        input_signature=[view_spec] * input_config.num_views,
    )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        archive.write_out(str(staging), verbose=False)
        (staging / INPUT_CONFIG_FILE).write_text(json.dumps(
            {"image_size": size, "views": input_config.views, "crop_fraction": input_config.crop_fraction,
             "resize_mode": input_config.resize_mode,
             "preprocessing": preprocessing.as_dict() if preprocessing else None}, indent=2))
        if check is not None:
            check(staging)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def run_savedmodel(export_dir, images: np.ndarray, encoded: list[bytes], views: list[np.ndarray]) -> dict:
    """Outputs of the three signatures of a SavedModel (run this in a fresh process)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(export_dir))
    outputs = {
        "images": loaded.serving_default(tf.constant(images, tf.float32)),
        "bytes": loaded.serve_bytes(tf.constant(encoded)),
        "views": loaded.serve_views(*[tf.constant(v, tf.float32) for v in views]),
    }
    # float32 (bfloat16 outputs of a mixed_bfloat16 model do not survive np.savez)
    return {k: np.asarray(tf.cast(v, tf.float32)) for k, v in outputs.items()}


def check_in_fresh_process(export_dir, images: np.ndarray, encoded: list[bytes], views: list[np.ndarray]) -> dict:
    """Load the SavedModel in a new Python process and return its outputs for the inputs."""
    with tempfile.TemporaryDirectory() as tmp:
        inputs, outputs = Path(tmp) / "inputs.npz", Path(tmp) / "outputs.npz"
        np.savez(inputs, images=images, encoded=np.array(encoded, dtype=object),
                 **{f"view_{i}": v for i, v in enumerate(views)})
        script = (
            "import sys, numpy as np\n"
            "from kerasface.export.savedmodel import run_savedmodel\n"
            "z = np.load(sys.argv[2], allow_pickle=True)\n"
            "views = [z[k] for k in sorted(k for k in z.files if k.startswith('view_'))]\n"
            "out = run_savedmodel(sys.argv[1], z['images'], list(z['encoded']), views)\n"
            "np.savez(sys.argv[3], **out)\n"
        )
        env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
        result = subprocess.run([sys.executable, "-c", script, str(export_dir), str(inputs), str(outputs)],
                                capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise RuntimeError(f"loading {export_dir} in a fresh process failed:\n{result.stderr[-3000:]}")
        with np.load(outputs) as z:
            return {k: z[k] for k in z.files}


def verify_export(export_dir, model: keras.Model, input_config: InputConfig, image_paths: list[str]) -> dict:
    """Max absolute difference between each SavedModel signature (run in a fresh process) and
    the Keras model on the same inputs, preprocessed by the training pipeline's functions."""
    import tensorflow as tf

    from kerasface.data.crops import make_views
    from kerasface.data.decode import decode_image, resize_image
    from kerasface.data.pipeline import preprocess_encoded

    encoded = [Path(p).read_bytes() for p in image_paths]
    decoded = [decode_image(tf.constant(e)) for e in encoded]
    shape = tuple(decoded[0].shape[:2])
    images = np.stack([tf.image.resize(d, shape).numpy() for d in decoded])
    base = np.stack([preprocess_encoded(tf.constant(e), input_config).numpy() for e in encoded])
    from_images = np.stack([resize_image(tf.constant(i), input_config.base_shape, input_config.resize_mode).numpy()
                            for i in images])

    def views_of(batch):
        v = make_views(tf.constant(batch), input_config.image_size, input_config.views)
        return [t.numpy() for t in (v if isinstance(v, tuple) else (v,))]

    def keras_out(views):
        return np.asarray(model(views if len(views) > 1 else views[0], training=False))

    bytes_views = views_of(base)
    served = check_in_fresh_process(export_dir, images, encoded, bytes_views)
    expected = {"bytes": keras_out(bytes_views), "views": keras_out(bytes_views),
                "images": keras_out(views_of(from_images))}
    # in float32: a model trained under mixed_bfloat16 (TPU) may give bfloat16 outputs
    return {k: float(np.max(np.abs(np.asarray(served[k], np.float32) - np.asarray(expected[k], np.float32))))
            for k in expected}
