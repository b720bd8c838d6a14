"""Embedding extraction on a real photograph shipped with matplotlib (grace_hopper.jpg): .keras
file, in-memory model and SavedModel agree, the flip test, deduplication, refused models."""

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf
from matplotlib import cbook

from kerasface.errors import BadInputError
from kerasface.eval.embeddings import decode_images, extract_embeddings, load_embedding_model
from kerasface.models import ImagePreprocessing
from kerasface.models.preprocessing import set_input_preprocessing

SIZE = 32


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """grace_hopper.jpg, a PNG of its left half, and a PNG of its mirror image."""
    folder = tmp_path_factory.mktemp("photos")
    source = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    image = cv2.imread(str(source))
    assert image is not None and image.shape[0] > 400
    paths = [str(source), str(folder / "left.png"), str(folder / "mirror.png")]
    cv2.imwrite(paths[1], image[:, : image.shape[1] // 2])
    cv2.imwrite(paths[2], image[:, ::-1])
    return paths


def unrecorded_model():
    """Not mirror-symmetric (strided conv + flatten), so the flip test changes its embeddings; no
    resize mode recorded, as a model saved before models kept theirs."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = ImagePreprocessing("tf")(inputs)
    x = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(8)(x), name="tiny")


@pytest.fixture(scope="module")
def tiny_model():
    """Trained on stretched images."""
    return set_input_preprocessing(unrecorded_model(), resize_mode="stretch")


def stretched(path):
    image = tf.cast(tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False), tf.float32)
    return tf.image.resize(image, (SIZE, SIZE)).numpy()


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_embeddings_of_a_real_photo_match_the_model_on_resized_pixels(photos, tiny_model):
    batch = np.stack([stretched(p) for p in photos])
    expected = unit(np.asarray(tiny_model(batch)))
    got = extract_embeddings(tiny_model, photos, batch_size=2, progress=False)
    assert got.shape == (3, 8) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not np.allclose(got[0], got[2], atol=1e-3)  # the mirror is another input for this model


def test_flip_test_sums_both_mirrors(photos, tiny_model):
    batch = np.stack([stretched(p) for p in photos])
    raw = np.asarray(tiny_model(batch)) + np.asarray(tiny_model(batch[:, :, ::-1]))
    flipped = extract_embeddings(tiny_model, photos, flip=True, progress=False, normalize=False)
    np.testing.assert_allclose(flipped, raw, rtol=1e-4, atol=1e-4)
    # with the flip test an image and its mirror have one embedding (up to JPEG/PNG and resampling)
    unit_flipped = unit(flipped)
    assert float(unit_flipped[0] @ unit_flipped[2]) > 0.999


def test_paths_and_bytes_give_the_same_embeddings_and_repeats_are_embedded_once(photos, tiny_model):
    encoded = [open(p, "rb").read() for p in photos]
    by_path = extract_embeddings(tiny_model, [photos[0], photos[1], photos[0]], progress=False)
    by_bytes = extract_embeddings(tiny_model, [encoded[0], encoded[1], encoded[0]], progress=False)
    np.testing.assert_allclose(by_path, by_bytes, atol=1e-6)
    np.testing.assert_array_equal(by_path[0], by_path[2])
    images, inverse = decode_images([photos[0], photos[1], photos[0]], SIZE, "stretch")
    assert images.shape == (2, SIZE, SIZE, 3) and inverse.tolist() == [0, 1, 0] and images.dtype == np.uint8


def test_keras_file_and_run_folder(photos, tiny_model, tmp_path):
    """The resize the model records wins over its run's config; the flag over both; the run's
    config serves a model that records none, from the run folder as from the file in it."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text('{"data": {"resize_mode": "pad"}}')
    tiny_model.save(run / "model.keras")
    unrecorded_model().save(run / "checkpoints" / "best.keras")
    from_file, from_run = load_embedding_model(run / "model.keras"), load_embedding_model(run)
    assert (from_file.image_size, from_file.resize_mode, from_run.resize_mode) == ((SIZE, SIZE), "stretch", "stretch")
    assert load_embedding_model(run, resize_mode="crop").resize_mode == "crop"
    assert load_embedding_model(run / "checkpoints" / "best.keras").resize_mode == "pad"
    np.testing.assert_allclose(extract_embeddings(from_file, photos, progress=False),
                               extract_embeddings(tiny_model, photos, progress=False), atol=1e-6)
    padded = extract_embeddings(from_file, photos[1:2], resize_mode="pad", progress=False)
    stretched_ = extract_embeddings(from_file, photos[1:2], progress=False)
    assert not np.allclose(padded, stretched_, atol=1e-3)  # the left half is not square: pad differs


def test_a_model_that_records_no_resize_takes_images_of_its_size_only(photos, tmp_path):
    unrecorded_model().save(tmp_path / "old.keras")
    model = load_embedding_model(tmp_path / "old.keras")
    assert model.resize_mode is None
    square = tmp_path / "square.png"
    cv2.imwrite(str(square), cv2.resize(cv2.imread(photos[0]), (SIZE, SIZE)))
    assert extract_embeddings(model, [str(square)], progress=False).shape == (1, 8)
    with pytest.raises(BadInputError, match=rf"old.keras: records no resize mode .* and {photos[1]} is \d+x\d+; "
                                            r"give the one it was trained with \(--resize pad\|stretch\|crop\)"):
        extract_embeddings(model, [str(square), photos[1]], batch_size=1, progress=False)
    with pytest.raises(BadInputError, match=r"the model: records no resize mode"):
        decode_images([photos[1]], SIZE)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="SavedModel export needs TensorFlow")
def test_savedmodel_serving_default_gives_the_keras_embeddings(photos, tiny_model, tmp_path):
    from kerasface.data.pipeline import InputConfig
    from kerasface.export.savedmodel import export_savedmodel

    folder = export_savedmodel(tiny_model, InputConfig(image_size=SIZE, views="single", resize_mode="stretch"),
                               tmp_path / "export")
    served = load_embedding_model(folder)
    assert served.image_size == (SIZE, SIZE) and served.resize_mode == "stretch"
    assert served.preprocessing == load_embedding_model(tiny_model).preprocessing
    assert served.preprocessing["resize_mode"] == "stretch" and served.preprocessing["value_range"] == "tf"
    for flip in (False, True):
        np.testing.assert_allclose(extract_embeddings(served, photos, flip=flip, progress=False),
                                   extract_embeddings(tiny_model, photos, flip=flip, progress=False), atol=1e-5)


def test_models_that_are_not_embedding_models_are_refused(tmp_path):
    a, b = keras.Input((SIZE, SIZE, 3)), keras.Input((SIZE, SIZE, 3))
    two_inputs = keras.Model([a, b], keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(a + b)))
    two_inputs.save(tmp_path / "views.keras")
    with pytest.raises(BadInputError, match=r"views.keras: the model takes 2 inputs"):
        load_embedding_model(tmp_path / "views.keras")
    feature_map = keras.Model(a, keras.layers.Conv2D(4, 3)(a))
    feature_map.save(tmp_path / "map.keras")
    with pytest.raises(BadInputError, match=r"map.keras: the model outputs \[\(None, 30, 30, 4\)\]"):
        load_embedding_model(tmp_path / "map.keras")
    (tmp_path / "folder").mkdir()
    with pytest.raises(BadInputError, match="neither a SavedModel"):
        load_embedding_model(tmp_path / "folder")
    with pytest.raises(FileNotFoundError, match="no such model"):
        load_embedding_model(tmp_path / "nothing.keras")


def test_any_size_model_needs_an_image_size(photos):
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(inputs)))
    with pytest.raises(BadInputError, match="accepts any image size"):
        load_embedding_model(model)
    assert extract_embeddings(model, photos[:1], image_size=24, resize_mode="pad", progress=False).shape == (1, 3)


def test_an_image_that_does_not_decode_is_named(photos, tiny_model, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(BadInputError, match=r"broken.jpg: does not decode"):
        extract_embeddings(tiny_model, [photos[0], str(broken)], batch_size=1, progress=False)
