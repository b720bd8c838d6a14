"""Backbones by name: ``create_backbone("densenet121", (64, 64, 3))``.

Every builder has the signature
``builder(input_shape, weights=None, include_top=False, pooling="avg", classes=1000,
classifier_activation=None, name=<backbone>, **kwargs) -> keras.Model`` and returns a model
that takes RGB images in [0, 255] (its weight-free ``ImagePreprocessing`` layer comes first) and
gives pooled features (``include_top=False``) or the classifier output (``include_top=True``).
``weights`` is None (random init) or the path of a local weights file; nothing is downloaded.
"""

from __future__ import annotations

import functools
import os

import keras

from kerasface.models.layers import ImagePreprocessing
from kerasface.models.vit import build_vit
from kerasface.registry import BACKBONES


def check_weights_argument(weights, backbone: str) -> None:
    """None or an existing local file; ``"imagenet"`` (a download) is refused with the fix."""
    if weights is None:
        return
    if weights == "imagenet":
        raise ValueError(
            f"{backbone}: weights='imagenet' would download from the internet, which kerasface "
            "never does; download the weights file yourself and pass its local path "
            "(weights='/path/to/file.weights.h5'), or weights=None for random init"
        )
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"{backbone}: weights file {weights!r} does not exist")


KERAS_APPLICATIONS = {
    # name: (keras.applications builder, preprocessing of [0, 255] RGB, paper)
    "densenet121": ("DenseNet121", "torch", "DenseNet-121 (Huang et al., 2017)"),
    "efficientnetv2s": ("EfficientNetV2S", "none", "EfficientNetV2-S (Tan & Le, 2021); it rescales its own input"),
    "resnet50": ("ResNet50", "caffe", "ResNet-50 (He et al., 2016)"),
}


def keras_application(
    application: str,
    input_shape,
    weights=None,
    include_top=False,
    pooling="avg",
    classes=1000,
    classifier_activation=None,
    name=None,
    **kwargs,
) -> keras.Model:
    """A ``keras.applications`` model (``KERAS_APPLICATIONS``) behind its preprocessing layer."""
    builder, preprocessing, _ = KERAS_APPLICATIONS[application]
    name = name or application
    check_weights_argument(weights, name)
    images = keras.Input(shape=tuple(input_shape), name="images")
    x = ImagePreprocessing(preprocessing, name="preprocessing")(images)
    built = getattr(keras.applications, builder)(
        include_top=include_top,
        weights=None,
        input_tensor=x,
        input_shape=tuple(input_shape),
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        **kwargs,
    )
    model = keras.Model(images, built.output, name=name)
    if weights is not None:
        model.load_weights(weights)
    return model


for _name, (_, _preprocessing, _paper) in KERAS_APPLICATIONS.items():
    _builder = functools.partial(keras_application, _name)
    _builder.__doc__ = f"{_paper}, from ``keras.applications``; {_preprocessing!r} preprocessing."
    BACKBONES.register(_name)(_builder)


@BACKBONES.register("vit")
def vit(
    input_shape,
    weights=None,
    include_top=False,
    pooling="avg",
    classes=1000,
    classifier_activation=None,
    name="vit",
    **kwargs,
) -> keras.Model:
    """Our ViT (``kerasface.models.vit.build_vit``; kwargs ``patch_size, dim, depth, heads,
    mlp_dim, dropout, emb_dropout, dim_head, pool``); "torch" preprocessing.

    A ViT always pools its tokens, by ``pool`` ("cls" default, or "mean"), so ``pooling`` must
    stay "avg" (pooled features)."""
    check_weights_argument(weights, name)
    if pooling != "avg":
        raise ValueError(
            f"vit: pooling={pooling!r} is not supported; a ViT returns pooled features, "
            "chosen by pool='cls' or pool='mean'"
        )
    model = build_vit(
        input_shape,
        num_classes=classes if include_top else None,
        classifier_activation=classifier_activation,
        name=name,
        preprocessing="torch",
        **kwargs,
    )
    if weights is not None:
        model.load_weights(weights)
    return model


def create_backbone(
    name: str,
    input_shape,
    weights=None,
    include_top: bool = False,
    pooling: str | None = "avg",
    classes: int = 1000,
    classifier_activation=None,
    **kwargs,
) -> keras.Model:
    """The registered backbone ``name`` (see ``list_backbones()``); the model is named after it
    unless ``model_name`` is given."""
    builder = BACKBONES.get(name)
    model_name = kwargs.pop("model_name", None)
    if model_name is not None:
        kwargs["name"] = model_name
    return builder(
        input_shape,
        weights=weights,
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        **kwargs,
    )


def list_backbones() -> list[str]:
    return BACKBONES.names()
