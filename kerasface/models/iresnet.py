"""Improved ResNets for face recognition (IResNet: Duta et al., 2020, arXiv:2004.04989; the
"IR" block of ArcFace, Deng et al., 2019, arXiv:1801.07698), after insightface's arcface_torch
``iresnet.py``. Each returns an embedding model, not a classifier.

    create_backbone("iresnet50", (112, 112, 3))   # (None, 512) embeddings

Trainable parameters at 112x112 equal arcface_torch's (iresnet18 24,025,088; iresnet50
43,590,336; iresnet100 65,155,648). For loading converted torch weights, note that Keras
flattens the last feature map in (H, W, C) order and torch in (C, H, W) order.
"""

from __future__ import annotations

import functools

import keras
from keras import layers

from kerasface.models.backbones import check_weights_argument
from kerasface.models.layers import ImagePreprocessing
from kerasface.registry import BACKBONES

BN_EPSILON = 1e-5  # torch.nn.BatchNorm2d's default
BN_MOMENTUM = 0.9  # torch's momentum=0.1 (weight of the new batch)
PRELU_INIT = 0.25  # torch.nn.PReLU's default
ACTIVATIONS = ("prelu", "relu")

IRESNET_LAYERS = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
    "iresnet200": (6, 26, 60, 6),
}
STAGE_CHANNELS = (64, 128, 256, 512)


def batch_norm(name: str, **kwargs) -> layers.BatchNormalization:
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name, **kwargs)


def activation_layer(activation: str, name: str) -> layers.Layer:
    """PReLU with one alpha per channel (torch ``nn.PReLU(C)``), or ReLU."""
    if activation == "prelu":
        return layers.PReLU(
            alpha_initializer=keras.initializers.Constant(PRELU_INIT), shared_axes=[1, 2], name=name
        )
    return layers.ReLU(name=name)


def check_activation(activation: str, backbone: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"{backbone}: activation={activation!r} is not one of {', '.join(ACTIVATIONS)}"
        )


def conv(x, filters: int, kernel_size: int, stride: int, name: str, depthwise: bool = False, groups: int = 1):
    """Bias-free conv with torch's symmetric ``padding=kernel_size // 2``. At stride 1 that is
    Keras' "same"; at stride 2 "same" pads only bottom/right, so explicit zero padding then a
    "valid" conv (an extra copy of the input, which "same" at stride 1 avoids; see
    docs/benchmarks.md, "Recognition train step").
    ``groups``: a grouped conv (torch ``groups``), as arcface_torch's MobileFaceNet stem has."""
    padding = kernel_size // 2
    conv_kwargs = dict(use_bias=False, name=name)
    if stride == 1:
        conv_kwargs["padding"] = "same"
    elif padding:
        x = layers.ZeroPadding2D(padding, name=name + "_pad")(x)
    if depthwise:
        return layers.DepthwiseConv2D(kernel_size, stride, **conv_kwargs)(x)
    return layers.Conv2D(filters, kernel_size, stride, groups=groups, **conv_kwargs)(x)


def squeeze_excitation(x, reduction: int, name: str):
    """SE module (Hu et al., 2018, arXiv:1709.01507): ``x * sigmoid(W2 relu(W1 avgpool(x)))``."""
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True, name=name + "_squeeze")(x)
    s = layers.Dense(channels // reduction, activation="relu", name=name + "_reduce")(s)
    s = layers.Dense(channels, activation="sigmoid", name=name + "_expand")(s)
    return layers.Multiply(name=name + "_scale")([x, s])


def ir_block(x, filters: int, stride: int, name: str, activation="prelu", se_reduction=None):
    """arcface_torch ``IBasicBlock``: BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN
    [-> SE], plus the input, through conv1x1(stride) + BN when the shape changes."""
    y = batch_norm(name + "_bn1")(x)
    y = conv(y, filters, 3, 1, name + "_conv1")
    y = batch_norm(name + "_bn2")(y)
    y = activation_layer(activation, name + "_act")(y)
    y = conv(y, filters, 3, stride, name + "_conv2")
    y = batch_norm(name + "_bn3")(y)
    if se_reduction:
        y = squeeze_excitation(y, se_reduction, name + "_se")
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = conv(x, filters, 1, stride, name + "_downsample_conv")
        shortcut = batch_norm(name + "_downsample_bn")(shortcut)
    return layers.Add(name=name + "_add")([y, shortcut])


def build_ir_network(
    input_shape,
    blocks_per_stage,
    name: str,
    embedding_dim: int = 512,
    dropout: float = 0.0,
    activation: str = "prelu",
    se_reduction=None,
    width: int = 64,
) -> keras.Model:
    """RGB [0, 255] -> ImagePreprocessing("tf") (insightface's ``(x/255 - 0.5)/0.5``) ->
    conv3x3(width) + BN + PReLU -> 4 stages of IR blocks (``width`` x 1/2/4/8 channels, 64: the
    published 64/128/256/512; the first block of each with stride 2) -> BN -> flatten -> dropout -> Dense(embedding_dim) -> BN with a
    fixed scale of 1 (arcface_torch's ``features``; no gamma weight).

    Each stride-2 stage maps a side ``n`` to ``ceil(n / 2)``, so 112 -> 7 and the Dense layer
    sees ``512 * 7 * 7`` features; 64 -> 4, 56 -> 4."""
    check_activation(activation, name)
    images = keras.Input(shape=tuple(input_shape), name="images")
    x = ImagePreprocessing("tf", name="preprocessing")(images)
    channels_per_stage = [width * c // STAGE_CHANNELS[0] for c in STAGE_CHANNELS]
    x = conv(x, channels_per_stage[0], 3, 1, "stem_conv")
    x = batch_norm("stem_bn")(x)
    x = activation_layer(activation, "stem_act")(x)
    for stage, (channels, blocks) in enumerate(zip(channels_per_stage, blocks_per_stage), start=1):
        for block in range(blocks):
            x = ir_block(
                x,
                channels,
                stride=2 if block == 0 else 1,
                name=f"stage{stage}_block{block}",
                activation=activation,
                se_reduction=se_reduction,
            )
    x = batch_norm("head_bn")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(embedding_dim, name="fc")(x)
    x = batch_norm("embedding", scale=False)(x)
    return keras.Model(images, x, name=name)


def embedding_backbone(
    builder,
    backbone: str,
    input_shape,
    weights=None,
    include_top=False,
    pooling="avg",
    classes=1000,
    classifier_activation=None,
    name=None,
    **options,
) -> keras.Model:
    """Registry adapter for an embedding network: include_top=True is refused, ``pooling``,
    ``classes`` and ``classifier_activation`` are ignored (the output is always the embedding),
    ``weights`` is None or a local weights file."""
    name = name or backbone
    check_weights_argument(weights, name)
    if include_top:
        raise ValueError(
            f"{backbone}: include_top=True is not supported; it is an embedding model (its output "
            "is the embedding_dim-d embedding): put a head or a margin loss on top instead"
        )
    model = builder(input_shape, name=name, **options)
    if weights is not None:
        model.load_weights(weights)
    return model


def register_ir_network(backbone: str, blocks_per_stage, se_reduction: int | None = None) -> None:
    """Register ``backbone`` as an IR network (``build_ir_network``) with these blocks per
    stage, and an SE module of reduction ``se_reduction`` in every block when given."""
    def builder(input_shape, name, embedding_dim=512, dropout=0.0, activation="prelu", width=64):
        return build_ir_network(input_shape, blocks_per_stage, name, embedding_dim, dropout, activation,
                                se_reduction=se_reduction, width=width)

    registered = functools.partial(embedding_backbone, builder, backbone)
    registered.embedding_output = True
    family = "IResNet" if se_reduction is None else f"IR-SE network (SE reduction {se_reduction})"
    registered.__doc__ = (
        f"{backbone}: {family} with {list(blocks_per_stage)} blocks per stage (``build_ir_network``); "
        "options ``embedding_dim=512, dropout=0.0, activation='prelu'|'relu', width=64``; the output "
        "is always the embedding."
    )
    BACKBONES.register(backbone)(registered)


for _backbone, _blocks in IRESNET_LAYERS.items():
    register_ir_network(_backbone, _blocks)
