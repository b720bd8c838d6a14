import keras
import numpy as np
import pytest

from kerasface.errors import BadInputError
from kerasface.models import ImagePreprocessing
from kerasface.models.preprocessing import InputPreprocessing, input_preprocessing, set_input_preprocessing
from kerasface.saving import load_model

pytestmark = pytest.mark.backend


def _tiny(name="tiny"):
    images = keras.Input((24, 20, 3))
    x = ImagePreprocessing("tf", name=f"{name}_pre")(images)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(images, keras.layers.Dense(4)(x), name=name)


def test_recorded_preprocessing_survives_a_keras_file(tmp_path):
    model = set_input_preprocessing(_tiny(), resize_mode="crop", alignment="arcface")
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras", compile=False)
    assert input_preprocessing(loaded) == InputPreprocessing((24, 20), "crop", "tf", "arcface")
    x = np.random.default_rng(0).uniform(0, 255, (2, 24, 20, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict_on_batch(x), model.predict_on_batch(x), atol=1e-6)


def test_nested_branches_are_read_and_must_agree():
    images = keras.Input((24, 20, 3))
    left, right = _tiny("left"), _tiny("right")
    outer = keras.Model(images, keras.layers.Concatenate()([left(images), right(images)]))
    assert input_preprocessing(outer).resize_mode is None
    set_input_preprocessing(outer, resize_mode="pad")
    assert input_preprocessing(outer).resize_mode == "pad"
    right.layers[1].resize_mode = "stretch"
    with pytest.raises(BadInputError, match="disagree"):
        input_preprocessing(outer)


def test_a_model_without_preprocessing_layer_records_nothing_and_bad_values_are_refused():
    plain = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten()])
    assert input_preprocessing(plain) is None
    with pytest.raises(ValueError, match="resize mode 'squash'"):
        set_input_preprocessing(_tiny(), resize_mode="squash")


def test_round_trip_as_dict():
    record = input_preprocessing(set_input_preprocessing(_tiny(), resize_mode="stretch", alignment="arcface"))
    assert record.as_dict()["image_size"] == [24, 20]
    assert InputPreprocessing.from_dict(record.as_dict()) == record


def test_a_field_not_given_keeps_what_the_model_records():
    model = set_input_preprocessing(_tiny(), resize_mode="stretch", alignment="arcface")
    set_input_preprocessing(model, resize_mode="pad")
    assert input_preprocessing(model) == InputPreprocessing((24, 20), "pad", "tf", "arcface")
