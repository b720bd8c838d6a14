"""ImagePreprocessing, L2Normalize and the ViT layers against float64 NumPy."""

import numpy as np
import pytest

from kerasface.models.layers import ImagePreprocessing, L2Normalize
from kerasface.models.vit import ClassToken, ClassTokenPool, PatchExtract, PositionEmbedding

RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(0.0, 255.0, size=(2, 5, 4, 3))


def _expected_preprocessing(mode, x):
    x = x.astype(np.float64)
    if mode == "torch":
        return (x / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    if mode == "caffe":
        return x[..., ::-1] - np.array([103.939, 116.779, 123.68])
    if mode == "tf":
        return x / 127.5 - 1.0
    return x


@pytest.mark.backend
@pytest.mark.parametrize("mode", ["torch", "caffe", "tf", "none"])
def test_image_preprocessing_matches_numpy(mode):
    layer = ImagePreprocessing(mode)
    out = np.asarray(layer(IMAGES.astype("float32")))
    np.testing.assert_allclose(out, _expected_preprocessing(mode, IMAGES), rtol=1e-5, atol=1e-4)
    assert layer.weights == []
    assert ImagePreprocessing.from_config(layer.get_config()).mode == mode


def test_image_preprocessing_caffe_pixel_by_hand():
    pixel = np.array([[[[10.0, 20.0, 30.0]]]], dtype="float32")
    out = np.asarray(ImagePreprocessing("caffe")(pixel)).reshape(-1)
    np.testing.assert_allclose(out, [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-6)


def test_image_preprocessing_rejects_unknown_mode():
    with pytest.raises(ValueError, match="'imagenet' is not one of torch, caffe, tf, none"):
        ImagePreprocessing("imagenet")


@pytest.mark.backend
def test_l2_normalize_matches_numpy_and_keeps_zero_rows_zero():
    x = RNG.normal(size=(4, 6))
    x[2] = 0.0
    out = np.asarray(L2Normalize()(x.astype("float32")))
    expected = x / np.sqrt(np.maximum((x**2).sum(axis=-1, keepdims=True), 1e-12))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out[2], np.zeros(6))
    np.testing.assert_allclose(np.linalg.norm(out[[0, 1, 3]], axis=-1), 1.0, rtol=1e-5)


@pytest.mark.backend
def test_l2_normalize_axis_and_epsilon():
    x = RNG.normal(size=(2, 3, 4)) * 1e-4
    layer = L2Normalize(axis=1, epsilon=1.0)
    out = np.asarray(layer(x.astype("float32")))
    expected = x / np.sqrt(np.maximum((x**2).sum(axis=1, keepdims=True), 1.0))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-10)
    assert L2Normalize.from_config(layer.get_config()).get_config()["epsilon"] == 1.0


@pytest.mark.backend
def test_patch_extract_order_is_rows_then_pixels_then_channels():
    images = RNG.uniform(size=(2, 6, 4, 3))
    out = np.asarray(PatchExtract((3, 2))(images.astype("float32")))
    assert out.shape == (2, 4, 18)
    for row in range(2):
        for col in range(2):
            patch = images[:, row * 3 : (row + 1) * 3, col * 2 : (col + 1) * 2, :]
            np.testing.assert_allclose(out[:, row * 2 + col], patch.reshape(2, -1), rtol=1e-6)


def test_patch_extract_rejects_indivisible_size():
    with pytest.raises(ValueError, match="image size 6x5 is not divisible by patch size 3x2"):
        PatchExtract((3, 2))(np.zeros((1, 6, 5, 3), "float32"))


@pytest.mark.backend
def test_class_token_position_embedding_and_pool():
    tokens = RNG.normal(size=(2, 3, 4)).astype("float32")
    class_token = ClassToken()
    with_cls = np.asarray(class_token(tokens))
    token = np.asarray(class_token.token).reshape(4)
    assert with_cls.shape == (2, 4, 4)
    np.testing.assert_allclose(with_cls[:, 0], np.stack([token, token]), rtol=1e-6)
    np.testing.assert_allclose(with_cls[:, 1:], tokens, rtol=1e-6)

    position = PositionEmbedding()
    shifted = np.asarray(position(with_cls))
    np.testing.assert_allclose(
        shifted, with_cls + np.asarray(position.embedding), rtol=1e-6, atol=1e-6
    )
    assert position.embedding.shape == (1, 4, 4)
    np.testing.assert_allclose(np.asarray(ClassTokenPool()(shifted)), shifted[:, 0], rtol=1e-6)
