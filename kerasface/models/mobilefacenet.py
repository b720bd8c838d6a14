"""MobileFaceNet (Chen et al., 2018, "MobileFaceNets: Efficient CNNs for Accurate Real-Time Face
Verification on Mobile Devices", arXiv:1804.07573), the paper's Table 1 as insightface and
Keras_insightface ship it, returning an embedding model.

    create_backbone("mobilefacenet", (112, 112, 3))                    # (None, 512)
    create_backbone("mobilefacenet", (112, 112, 3), embedding_dim=128)  # the paper's 128-d
    create_backbone("mobilefacenet", (112, 112, 3), scale=2)           # arcface_torch's "mbf"
"""

from __future__ import annotations

import keras
from keras import layers

from kerasface.models.iresnet import (
    activation_layer,
    batch_norm,
    check_activation,
    conv,
    embedding_backbone,
)
from kerasface.models.layers import ImagePreprocessing
from kerasface.registry import BACKBONES

# (expanded channels, output channels at scale 1, repeats, stride of the first repeat): Table 1's
# expansion t times the input channels; arcface_torch keeps the expanded widths at any scale
BOTTLENECKS = ((128, 64, 5, 2), (256, 128, 1, 2), (256, 128, 6, 1), (512, 128, 1, 2), (256, 128, 2, 1))
STEM_GROUPS = 64


def conv_bn_act(x, filters, kernel_size, stride, name, activation, depthwise=False, groups=1):
    x = conv(x, filters, kernel_size, stride, name + "_conv", depthwise=depthwise, groups=groups)
    x = batch_norm(name + "_bn")(x)
    return activation_layer(activation, name + "_act")(x)


def bottleneck(x, expanded: int, filters: int, stride: int, name: str, activation: str):
    """MobileNetV2 inverted residual with PReLU: conv1x1(expanded) -> depthwise 3x3(stride) ->
    linear conv1x1(filters) + BN, plus the input when stride is 1 and the channels match."""
    y = conv_bn_act(x, expanded, 1, 1, name + "_expand", activation)
    y = conv_bn_act(y, None, 3, stride, name + "_depthwise", activation, depthwise=True)
    y = conv(y, filters, 1, 1, name + "_project_conv")
    y = batch_norm(name + "_project_bn")(y)
    if stride == 1 and x.shape[-1] == filters:
        y = layers.Add(name=name + "_add")([x, y])
    return y


def build_mobilefacenet(
    input_shape, name="mobilefacenet", embedding_dim=512, activation="prelu", scale=1
) -> keras.Model:
    """RGB [0, 255] -> ImagePreprocessing("tf") -> conv3x3 s2 (64) -> depthwise 3x3 (64) ->
    ``BOTTLENECKS`` -> conv1x1 (512) -> linear global depthwise conv (kernel = the last feature
    map, 7x7 at 112x112) + BN -> linear conv1x1 (``Dense``, no bias) to ``embedding_dim`` -> BN.
    Conv/BN/PReLU everywhere but the linear layers; 64x64 works with a 4x4 global kernel.

    ``scale`` multiplies the stem and block output channels as arcface_torch's MobileFaceNet
    does (its "mbf" is scale 2: a 128-channel stem whose 3x3 conv has 64 groups)."""
    check_activation(activation, name)
    images = keras.Input(shape=tuple(input_shape), name="images")
    x = ImagePreprocessing("tf", name="preprocessing")(images)
    stem = STEM_GROUPS * scale
    x = conv_bn_act(x, stem, 3, 2, "stem", activation)
    x = conv_bn_act(x, stem, 3, 1, "stem_depthwise", activation, depthwise=scale == 1,
                    groups=1 if scale == 1 else STEM_GROUPS)
    for stage, (expanded, filters, repeats, stride) in enumerate(BOTTLENECKS, start=1):
        for block in range(repeats):
            block_stride = stride if block == 0 else 1
            x = bottleneck(
                x, expanded, filters * scale, block_stride, f"stage{stage}_block{block}", activation
            )
    x = conv_bn_act(x, 512, 1, 1, "conv_sep", activation)
    x = layers.DepthwiseConv2D(tuple(x.shape[1:3]), use_bias=False, name="gdc_conv")(x)
    x = batch_norm("gdc_bn")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(embedding_dim, use_bias=False, name="fc")(x)
    x = batch_norm("embedding")(x)
    return keras.Model(images, x, name=name)


@BACKBONES.register("mobilefacenet")
def mobilefacenet(
    input_shape,
    weights=None,
    include_top=False,
    pooling="avg",
    classes=1000,
    classifier_activation=None,
    name="mobilefacenet",
    embedding_dim=512,
    activation="prelu",
    scale=1,
) -> keras.Model:
    """MobileFaceNet (``build_mobilefacenet``); options ``embedding_dim=512`` (the paper: 128),
    ``activation='prelu'|'relu'``, ``scale=1`` (arcface_torch's "mbf": 2); the output is always the embedding, include_top=True is
    refused and ``pooling`` ignored."""
    return embedding_backbone(
        build_mobilefacenet,
        "mobilefacenet",
        input_shape,
        weights=weights,
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
        embedding_dim=embedding_dim,
        activation=activation,
        scale=scale,
    )
