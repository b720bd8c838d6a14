"""kerasface-export of a run whose images were cut with --resize-mode crop, on photos that are not
square: the served signatures equal the Keras model, and a failed check leaves nothing at --out."""

import json

import cv2
import keras
import numpy as np
import pytest

from kerasface.cli import export
from kerasface.data.decode import resize_image
from kerasface.errors import BadInputError
from kerasface.fileio import write_json_atomic
from kerasface.models import ImagePreprocessing
from kerasface.models.preprocessing import input_preprocessing, set_input_preprocessing
from kerasface.train.config import CONFIG_FILE, TrainConfig

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="SavedModel export needs TensorFlow")

SIZE = 16


def tiny_model():
    """Not shift-invariant (strided conv + flatten), so a wrongly cut image changes its output."""
    keras.utils.set_random_seed(0)
    images = keras.Input((SIZE, SIZE, 3))
    x = ImagePreprocessing("tf", name="preprocessing")(images)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(x)
    return keras.Model(images, keras.layers.Dense(6)(keras.layers.Flatten()(x)), name="tiny")


@pytest.fixture(scope="module")
def crop_run(tmp_path_factory):
    """A run folder as training writes it: config.json (resize_mode crop) over a folder of 20x30
    photos of two people, and its model.keras recording the crop."""
    root = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    for person in ("ann", "bo"):
        (root / "faces" / person).mkdir(parents=True)
        for k in range(2):
            assert cv2.imwrite(str(root / "faces" / person / f"{k}.png"), rng.integers(0, 256, (20, 30, 3), np.uint8))
    run = root / "run"
    run.mkdir()
    config = TrainConfig.from_dict({"data": str(root / "faces"), "image_size": SIZE, "views": "single",
                                    "resize_mode": "crop", "out": str(root)})
    write_json_atomic(run / CONFIG_FILE, config.to_dict())
    set_input_preprocessing(tiny_model(), resize_mode="crop").save(run / "model.keras")
    return run


def test_crop_export_serves_a_non_square_batch_as_the_keras_model(crop_run, tmp_path, capsys):
    import tensorflow as tf

    out = tmp_path / "served"
    assert export.main(["--run", str(crop_run), "--out", str(out), "--check-images", "3"]) == 0
    assert "served outputs equal the Keras model's" in capsys.readouterr().out
    model = keras.models.load_model(crop_run / "model.keras", safe_mode=True)
    batch = np.random.default_rng(1).uniform(0, 255, (2, 20, 30, 3)).astype("float32")
    expected = model.predict_on_batch(np.stack([resize_image(tf.constant(i), SIZE, "crop").numpy() for i in batch]))
    loaded = tf.saved_model.load(str(out))
    served = loaded.serving_default(tf.constant(batch))
    np.testing.assert_allclose(np.asarray(served), expected, atol=1e-4)
    settings = json.loads((out / "kerasface_input.json").read_text())
    assert settings["resize_mode"] == "crop"
    assert settings["preprocessing"] == input_preprocessing(model).as_dict()
    assert settings["preprocessing"]["resize_mode"] == "crop" and settings["preprocessing"]["value_range"] == "tf"


def test_a_failed_check_leaves_nothing_at_out(crop_run, tmp_path, capsys, monkeypatch):
    """The temporary export is loaded (in this process, to save a Python start) and one signature's
    outputs are perturbed, as a broken signature would give."""
    from kerasface.export import savedmodel

    def served_wrongly(export_dir, *inputs):
        outputs = savedmodel.run_savedmodel(export_dir, *inputs)
        return {**outputs, "images": outputs["images"] + 1.0}

    monkeypatch.setattr(savedmodel, "check_in_fresh_process", served_wrongly)
    out = tmp_path / "served"
    assert export.main(["--run", str(crop_run), "--out", str(out), "--check-images", "2"]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {out}: not written"), lines
    assert '"images": 1.0' in lines[0]
    assert list(tmp_path.iterdir()) == []  # neither --out nor the temporary export beside it


def test_an_export_that_would_resize_otherwise_than_training_is_refused(tmp_path):
    from kerasface.data.pipeline import InputConfig
    from kerasface.export.savedmodel import export_savedmodel

    model = set_input_preprocessing(tiny_model(), resize_mode="pad")
    with pytest.raises(BadInputError, match="tiny: trained on images resized with 'pad'.*'stretch'"):
        export_savedmodel(model, InputConfig(image_size=SIZE, resize_mode="stretch"), tmp_path / "served")
    assert list(tmp_path.iterdir()) == []
