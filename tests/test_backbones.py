"""Backbone registry, our ViT (parameter formula, float64 NumPy forward) and the paper preset's
exact parameter counts. Budget: ~35 s on 2 cores (the DenseNet121 and EfficientNetV2S paper-preset
models are built once each, at 32x32)."""

import math

import keras
import numpy as np
import pytest

from kerasface.models import (
    build_seed_model,
    build_vit,
    create_backbone,
    list_backbones,
    seed_preset,
)


def count_params(variables) -> int:
    return sum(int(np.prod(v.shape)) for v in variables)


# --- paper preset layouts --------------------------------------------------------------------


@pytest.fixture(scope="module")
def densenet_seed():
    return build_seed_model("densenet121", input_shape=(32, 32, 3))


@pytest.fixture(scope="module")
def efficientnet_seed():
    return build_seed_model("efficientnetv2s", input_shape=(32, 32, 3))


@pytest.mark.slow
def test_densenet121_seed_parameter_counts(densenet_seed):
    assert count_params(densenet_seed.trainable_weights) == 24_707_394
    assert count_params(densenet_seed.non_trainable_weights) == 250_944
    assert densenet_seed.output_shape == (None, 10)
    assert [t.name for t in densenet_seed.inputs] == ["view_0", "view_1", "view_2"]


@pytest.mark.slow
def test_densenet121_seed_branches_are_softmax_classifiers(densenet_seed):
    images = np.random.default_rng(0).uniform(0, 255, size=(3, 2, 32, 32, 3)).astype("float32")
    outputs = np.asarray(densenet_seed(list(images)))
    assert outputs.shape == (2, 10)
    assert ((outputs > 0) & (outputs < 1)).all()
    probabilities = np.asarray(densenet_seed.get_layer("branch_1")(images[1]))
    assert probabilities.shape == (2, 1000)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_efficientnetv2s_seed_parameter_counts(efficientnet_seed):
    assert count_params(efficientnet_seed.non_trainable_weights) == 461_616
    # The paper's 65,146,290 is this layout with 1000 classes per branch: see presets.py.
    assert count_params(efficientnet_seed.trainable_weights) == 61_715_706
    assert efficientnet_seed.get_layer("branch_0").output_shape == (None, 256)


@pytest.mark.slow
def test_vit_seed_backbone_matches_vit_pytorch_count():
    kwargs = dict(seed_preset("vit")["backbone_kwargs"])
    model = create_backbone("vit", (224, 224, 3), **kwargs)
    # 3072 patch dim, 49 patches: 6144 + 3146752 + 2048 + 1024 + 51200
    # + 6 * 8396800 + 2048 + 1025000, by hand from vit-pytorch's modules.
    assert model.count_params() == 54_615_016


def test_seed_preset_layout_and_unknown_backbone():
    preset = seed_preset("EfficientNetV2S", input_shape=(64, 64, 3))
    assert preset["backbone"] == "efficientnetv2s"
    assert preset["input_shape"] == (64, 64, 3)
    assert preset["backbone_kwargs"] == {
        "include_top": True,
        "classes": 256,
        "classifier_activation": "relu",
    }
    assert (preset["num_branches"], preset["hidden_units"], preset["num_outputs"]) == (3, 256, 10)
    with pytest.raises(KeyError, match="densenet121, efficientnetv2s, resnet50, vit"):
        seed_preset("alexnet")


# --- registry ------------------------------------------------------------------------------------


def test_list_backbones_and_unknown_name():
    assert {"densenet121", "efficientnetv2s", "resnet50", "vit"} <= set(list_backbones())
    with pytest.raises(KeyError, match="unknown backbone 'resnet18'; choose one of: .*densenet121"):
        create_backbone("resnet18", (32, 32, 3))


def test_imagenet_weights_are_refused_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match="pass its local path"):
        create_backbone("densenet121", (32, 32, 3), weights="imagenet")
    missing = tmp_path / "none.weights.h5"
    with pytest.raises(FileNotFoundError, match="none.weights.h5"):
        create_backbone("vit", (32, 32, 3), weights=str(missing))


def test_resnet50_takes_raw_pixels_through_caffe_preprocessing():
    model = create_backbone("resnet50", (32, 32, 3))
    assert model.name == "resnet50"
    assert model.output_shape == (None, 2048)
    preprocessing = model.get_layer("preprocessing")
    assert preprocessing.mode == "caffe"
    assert model.layers.index(preprocessing) == 1
    assert model.count_params() == 23_587_712


# --- ViT -----------------------------------------------------------------------------------------

TINY_VIT = dict(patch_size=8, dim=32, depth=2, heads=2, dim_head=8, mlp_dim=64)


def test_vit_parameter_count_by_hand():
    model = build_vit((16, 16, 3), num_classes=5, **TINY_VIT)
    # P = 192, N = 4, T = 5, I = 16:
    # patch embedding 2*192 + (192*32 + 32) + 2*32 = 6624; class token 32 + positions 5*32 = 192;
    # per block 64 + 3*32*16 + (16*32 + 32) + 64 + (32*64 + 64) + (64*32 + 32) = 6400, x2;
    # final norm 64; classifier 32*5 + 5 = 165.
    assert model.count_params() == 6624 + 192 + 2 * 6400 + 64 + 165 == 19_845


def test_vit_parameter_count_without_projection_or_class_token():
    model = build_vit(
        (16, 16, 3), patch_size=8, dim=32, depth=1, heads=1, dim_head=32, mlp_dim=64, pool="mean"
    )
    # heads == 1 and dim_head == dim: no output projection; pool="mean": no class token.
    # 6624 + 4*32 + (64 + 3*32*32 + 64 + 2112 + 2080) + 64
    assert model.count_params() == 6624 + 128 + 7392 + 64 == 14_208


def _layer_norm(x, weights):
    gamma, beta = weights
    mean = x.mean(-1, keepdims=True)
    variance = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + 1e-5) * gamma + beta


def _gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def vit_reference(model, images, heads, dim_head, patch, depth):
    """vit-pytorch's ViT forward in float64 NumPy with the Keras model's weights."""
    w = {layer.name: [np.asarray(v, np.float64) for v in layer.weights] for layer in model.layers}
    x = (images / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    batch, height, width, _ = x.shape
    patches = [
        x[:, r * patch : (r + 1) * patch, c * patch : (c + 1) * patch, :].reshape(batch, -1)
        for r in range(height // patch)
        for c in range(width // patch)
    ]
    x = np.stack(patches, axis=1)
    x = _layer_norm(x, w["patch_norm"])
    x = x @ w["patch_embedding"][0] + w["patch_embedding"][1]
    x = _layer_norm(x, w["embedding_norm"])
    cls = np.broadcast_to(w["class_token"][0], (batch, 1, x.shape[-1]))
    x = np.concatenate([cls, x], axis=1) + w["position_embedding"][0]
    tokens = x.shape[1]
    for b in range(depth):
        y = _layer_norm(x, w[f"block{b}_attention_norm"])
        qkv_kernel, out_kernel, out_bias = w[f"block{b}_attention"]
        q, k, v = np.split(y @ qkv_kernel, 3, axis=-1)
        q, k, v = (
            t.reshape(batch, tokens, heads, dim_head).transpose(0, 2, 1, 3) for t in (q, k, v)
        )
        attention = _softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(dim_head))
        y = (attention @ v).transpose(0, 2, 1, 3).reshape(batch, tokens, heads * dim_head)
        x = x + y @ out_kernel + out_bias
        y = _layer_norm(x, w[f"block{b}_mlp_norm"])
        y = _gelu(y @ w[f"block{b}_mlp_dense1"][0] + w[f"block{b}_mlp_dense1"][1])
        x = x + y @ w[f"block{b}_mlp_dense2"][0] + w[f"block{b}_mlp_dense2"][1]
    x = _layer_norm(x, w["final_norm"])[:, 0]
    return x @ w["predictions"][0] + w["predictions"][1]


@pytest.mark.backend
def test_vit_forward_matches_float64_numpy_reference():
    keras.utils.set_random_seed(1)
    model = create_backbone("vit", (16, 16, 3), include_top=True, classes=5, **TINY_VIT)
    images = np.random.default_rng(1).uniform(0, 255, size=(2, 16, 16, 3))
    out = model.predict(images.astype("float32"), verbose=0)
    expected = vit_reference(model, images, heads=2, dim_head=8, patch=8, depth=2)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.backend
def test_vit_is_deterministic_under_a_seed_and_loads_a_local_weights_file(tmp_path):
    keras.utils.set_random_seed(7)
    first = create_backbone("vit", (16, 16, 3), **TINY_VIT)
    keras.utils.set_random_seed(7)
    again = create_backbone("vit", (16, 16, 3), **TINY_VIT)
    for a, b in zip(first.weights, again.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    path = tmp_path / "vit.weights.h5"
    first.save_weights(str(path))
    keras.utils.set_random_seed(8)
    loaded = create_backbone("vit", (16, 16, 3), weights=str(path), **TINY_VIT)
    images = np.random.default_rng(2).uniform(0, 255, size=(2, 16, 16, 3)).astype("float32")
    np.testing.assert_array_equal(
        loaded.predict(images, verbose=0), first.predict(images, verbose=0)
    )
    assert loaded.output_shape == (None, 32)


def test_vit_refuses_other_pooling():
    with pytest.raises(ValueError, match="pool='cls' or pool='mean'"):
        create_backbone("vit", (16, 16, 3), pooling="max", **TINY_VIT)
