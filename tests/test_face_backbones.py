"""Face-recognition embedding backbones: IResNet (insightface arcface_torch's exact parameter
counts), IR-SE, MobileFaceNet; one IR-SE block against float64 NumPy. Budget: ~40 s on 2 cores
(the 112x112 count builds and iresnet100/200 at 56x56 are the slow part)."""

import keras
import numpy as np
import pytest

from kerasface.models import build_ir_network, build_mobilefacenet, create_backbone, list_backbones
from kerasface.models.iresnet import conv, ir_block

FACE_BACKBONES = [
    "iresnet18", "iresnet34", "iresnet50", "iresnet100", "iresnet200",
    "seresnet18", "seresnet34", "mobilefacenet",
]  # fmt: skip


def count_params(variables) -> int:
    return sum(int(np.prod(v.shape)) for v in variables)


def randomize(model, seed=0):
    """Every weight (moving statistics included) set to random values, variances positive."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        values = rng.normal(0.0, 0.3, size=v.shape)
        if "variance" in v.path:
            values = rng.uniform(0.5, 2.0, size=v.shape)
        v.assign(values.astype(v.dtype))


def test_face_backbones_are_registered():
    assert set(FACE_BACKBONES) <= set(list_backbones())


# --- parameter counts ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, trainable",
    [
        ("iresnet18", 24_025_088),
        ("iresnet50", 43_590_336),
        ("iresnet100", 65_155_648),
        # not published by insightface: iresnet18 + blocks of 18C^2 + 7C,
        # C = 64, 2x128, 4x256, 512
        ("iresnet34", 24_025_088 + 10_113_728),
    ],
)
def test_iresnet_trainable_counts_equal_insightface_at_112(name, trainable):
    model = create_backbone(name, (112, 112, 3))
    assert count_params(model.trainable_weights) == trainable
    assert {v.path.rsplit("/", 1)[-1] for v in model.non_trainable_weights} == {
        "moving_mean",
        "moving_variance",
    }
    assert model.output_shape == (None, 512)


# --- structure -----------------------------------------------------------------------------------


def test_ir_block_with_stride_2_halves_height_and_width_and_projects_the_shortcut():
    inputs = keras.Input((14, 14, 64))
    block = keras.Model(inputs, ir_block(inputs, 128, stride=2, name="b"))
    assert block.output_shape == (None, 7, 7, 128)
    assert block.get_layer("b_downsample_conv").kernel.shape == (1, 1, 64, 128)
    odd = keras.Input((7, 7, 128))
    assert ir_block(odd, 128, stride=2, name="c").shape == (None, 4, 4, 128)  # torch: ceil(7 / 2)
    same = keras.Input((7, 7, 128))
    identity_block = keras.Model(same, ir_block(same, 128, stride=1, name="d"))
    assert identity_block.output_shape == (None, 7, 7, 128)
    assert "d_downsample_conv" not in [layer.name for layer in identity_block.layers]


def test_stride_2_conv_pads_symmetrically_like_torch():
    inputs = keras.Input((4, 4, 1))
    model = keras.Model(inputs, conv(inputs, 1, 3, 2, "c"))
    model.get_layer("c").kernel.assign(np.ones((3, 3, 1, 1), "float32"))
    image = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    # torch padding=1: windows over rows/cols -1..1 and 1..3 of the 4x4 ramp 4r + c, so
    # out[0, 0] = 0 + 1 + 4 + 5; Keras "same" (rows/cols 0..2 and 2..4) would give 45 there
    expected = [[10, 24], [51, 90]]
    np.testing.assert_array_equal(np.asarray(model(image))[0, :, :, 0], expected)


def test_iresnet_embedding_batch_norm_has_a_fixed_scale():
    model = create_backbone("iresnet18", (56, 56, 3), model_name="face")
    assert model.name == "face"
    features = model.get_layer("embedding")
    assert features.gamma is None
    assert [v.path.rsplit("/", 1)[-1] for v in features.trainable_weights] == ["beta"]
    assert model.get_layer("fc").kernel.shape == (512 * 4 * 4, 512)
    assert model.get_layer("preprocessing").mode == "tf"


@pytest.mark.backend
@pytest.mark.parametrize(
    "name, size",
    [
        ("iresnet18", 56),
        ("iresnet34", 64),
        ("iresnet50", 56),
        pytest.param("iresnet100", 64, marks=pytest.mark.slow),
        pytest.param("iresnet200", 56, marks=pytest.mark.slow),
        ("seresnet18", 64),
        ("seresnet34", 56),
        ("mobilefacenet", 56),
        ("mobilefacenet", 64),
    ],
)
def test_output_is_the_512_d_embedding_at_small_sizes(name, size):
    model = create_backbone(name, (size, size, 3))
    assert model.output_shape == (None, 512)
    if name == "mobilefacenet":
        gdc = model.get_layer("gdc_conv")
        assert gdc.kernel_size == (4, 4)  # the last feature map: 56 -> 4 and 64 -> 4
        assert gdc.input.shape[1:3] == (4, 4)


def test_relu_option_drops_exactly_the_prelu_alphas():
    prelu = create_backbone("iresnet18", (56, 56, 3))
    relu = create_backbone("iresnet18", (56, 56, 3), activation="relu")
    assert not [layer for layer in relu.layers if isinstance(layer, keras.layers.PReLU)]
    alphas = sum(
        layer.count_params() for layer in prelu.layers if isinstance(layer, keras.layers.PReLU)
    )
    # stem 64 + one per block: 2x64 + 2x128 + 2x256 + 2x512
    assert alphas == 64 + 2 * (64 + 128 + 256 + 512) == 1984
    assert prelu.count_params() - relu.count_params() == alphas


def test_mobilefacenet_parameter_counts():
    paper = create_backbone("mobilefacenet", (112, 112, 3), embedding_dim=128)
    assert paper.output_shape == (None, 128)
    assert paper.get_layer("gdc_conv").kernel_size == (7, 7)
    assert count_params(paper.trainable_weights) == 1_003_136  # the paper's "0.99M"
    assert count_params(paper.non_trainable_weights) == 19_584
    alphas = [layer for layer in paper.layers if isinstance(layer, keras.layers.PReLU)]
    assert alphas and all(layer.alpha.shape == (1, 1, layer.input.shape[-1]) for layer in alphas)


def test_embedding_models_refuse_a_classifier_and_bad_options(tmp_path):
    with pytest.raises(ValueError, match="include_top=True is not supported; it is an embedding"):
        create_backbone("iresnet18", (56, 56, 3), include_top=True)
    with pytest.raises(ValueError, match="activation='gelu' is not one of prelu, relu"):
        create_backbone("mobilefacenet", (56, 56, 3), activation="gelu")
    with pytest.raises(ValueError, match="pass its local path"):
        create_backbone("seresnet18", (56, 56, 3), weights="imagenet")
    missing = str(tmp_path / "nothing.weights.h5")
    with pytest.raises(FileNotFoundError, match="nothing.weights.h5"):
        create_backbone("iresnet50", (56, 56, 3), weights=missing)
    model = create_backbone(
        "seresnet18", (56, 56, 3), pooling="max", dropout=0.4, embedding_dim=128
    )
    assert model.output_shape == (None, 128)
    assert model.get_layer("dropout").rate == 0.4


# --- one IR-SE block in float64 NumPy -------------------------------------------------------------


def _conv(x, kernel, stride, depthwise=False):
    size = kernel.shape[0]
    pad = size // 2
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    rows = (x.shape[1] - size) // stride + 1
    cols = (x.shape[2] - size) // stride + 1
    out = 0.0
    for i in range(size):
        for j in range(size):
            window = x[:, i : i + stride * rows : stride, j : j + stride * cols : stride, :]
            out = out + (window * kernel[i, j, :, 0] if depthwise else window @ kernel[i, j])
    return out


def _bn(x, weights):
    gamma, beta, mean, variance = weights
    return (x - mean) / np.sqrt(variance + 1e-5) * gamma + beta


def ir_se_block_reference(block, x):
    """arcface_torch IBasicBlock with the SE module on the residual branch, float64."""
    w = {layer.name: [np.asarray(v, np.float64) for v in layer.weights] for layer in block.layers}
    y = _bn(x, w["b_bn1"])
    y = _conv(y, w["b_conv1"][0], 1)
    y = _bn(y, w["b_bn2"])
    y = np.where(y > 0, y, w["b_act"][0] * y)
    y = _conv(y, w["b_conv2"][0], 2)
    y = _bn(y, w["b_bn3"])
    s = y.mean(axis=(1, 2), keepdims=True)
    s = np.maximum(s @ w["b_se_reduce"][0] + w["b_se_reduce"][1], 0.0)
    s = 1.0 / (1.0 + np.exp(-(s @ w["b_se_expand"][0] + w["b_se_expand"][1])))
    shortcut = _bn(_conv(x, w["b_downsample_conv"][0], 2), w["b_downsample_bn"])
    return y * s + shortcut


@pytest.mark.backend
def test_ir_se_block_matches_float64_numpy():
    inputs = keras.Input((6, 6, 8))
    block = keras.Model(inputs, ir_block(inputs, 32, stride=2, name="b", se_reduction=16))
    randomize(block, seed=3)
    alpha = block.get_layer("b_act").alpha
    assert alpha.shape == (1, 1, 32) and len(np.unique(np.asarray(alpha))) == 32
    x = np.random.default_rng(4).normal(size=(2, 6, 6, 8))
    out = np.asarray(block(x.astype("float32"), training=False))
    np.testing.assert_allclose(out, ir_se_block_reference(block, x), rtol=1e-4, atol=1e-4)


def test_stride_2_depthwise_conv_matches_numpy_with_torch_padding():
    inputs = keras.Input((6, 6, 3))  # even: Keras "same" would pad bottom/right only
    model = keras.Model(inputs, conv(inputs, None, 3, 2, "d", depthwise=True))
    randomize(model, seed=5)
    x = np.random.default_rng(6).normal(size=(1, 6, 6, 3))
    kernel = np.asarray(model.get_layer("d").kernel, np.float64)
    np.testing.assert_allclose(
        np.asarray(model(x.astype("float32"))), _conv(x, kernel, 2, depthwise=True), atol=1e-5
    )


def test_a_local_weights_file_is_loaded(tmp_path):
    source = create_backbone("mobilefacenet", (56, 56, 3), embedding_dim=128)
    randomize(source, seed=7)
    path = tmp_path / "mobilefacenet.weights.h5"
    source.save_weights(path)
    loaded = create_backbone("mobilefacenet", (56, 56, 3), embedding_dim=128, weights=str(path))
    for a, b in zip(source.weights, loaded.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# --- saving and training -------------------------------------------------------------------------


@pytest.mark.backend
@pytest.mark.parametrize("network", ["ir_se", "mobilefacenet"])
def test_keras_file_round_trip_gives_identical_embeddings(tmp_path, network):
    if network == "ir_se":
        model = build_ir_network(
            (32, 32, 3), (1, 1, 1, 1), "tiny_ir_se", embedding_dim=16, se_reduction=16
        )
    else:
        model = build_mobilefacenet((56, 56, 3), embedding_dim=128)
    randomize(model, seed=1)
    path = tmp_path / "face.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    size = model.input_shape[1]
    images = np.random.default_rng(2).uniform(0, 255, size=(2, size, size, 3)).astype("float32")
    np.testing.assert_array_equal(
        np.asarray(loaded(images, training=False)), np.asarray(model(images, training=False))
    )


@pytest.mark.backend
def test_one_train_step_changes_the_weights_but_not_the_fixed_scale():
    keras.utils.set_random_seed(0)
    model = create_backbone("seresnet18", (56, 56, 3), embedding_dim=32)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = {v.path: np.array(v) for v in model.weights}
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(4, 56, 56, 3)).astype("float32")
    targets = rng.normal(size=(4, 32)).astype("float32")
    loss = float(model.train_on_batch(images, targets))
    assert np.isfinite(loss)
    changed = {v.path for v in model.weights if not np.array_equal(np.array(v), before[v.path])}
    for layer in ("stem_conv", "stage1_block0_act", "stage4_block1_se_expand", "fc", "embedding"):
        assert any(path.startswith(layer + "/") for path in changed), layer
    assert "embedding/moving_mean" in changed
    assert not [v for v in model.get_layer("embedding").weights if "gamma" in v.path]
