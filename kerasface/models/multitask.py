"""The multi-task model: a shared trunk, an identity embedding, one head
per attribute, and per attribute an adversary on the identity embedding behind a gradient
reversal, so that the embedding carries as little attribute information as it can.

    model = build_multitask_model({"gender": 2, "emotion": 3}, num_identities=60,
                                  backbone="iresnet18", input_shape=(56, 56, 3))

::

    image -> trunk ─┬─ pooled features ─> attribute_<a> (Dense ReLU -> Dense, sigmoid | softmax)
                    └─ embedding ─┬─> margin head (identity labels in) -> logits     ("id")
                                  └─> L2 -> GradientReversal(lambda) -> adversary_<a>  ("da_<a>")

Outputs (a dict): ``"id"`` (margin-head logits, or the embedding itself for a metric loss such
as triplet), ``"<a>"`` per attribute and ``"da_<a>"`` per adversary. An attribute of two values
has one sigmoid output, one of C values C softmax outputs (``kerasface.data.spec``'s layout).
The trunk is a registry backbone as the recognition task builds it (``build_embedding_model``):
face backbones (iresnet, seresnet, mobilefacenet) give their own embedding, and the attribute
heads take their last feature map, average-pooled; other backbones give pooled features, the
embedding a Dense + BatchNorm on them. ``identity_model`` and ``attribute_model`` cut the
exportable parts out of a built (or loaded) model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import keras
from keras import ops

from kerasface.models.embedding import build_embedding_model
from kerasface.models.layers import L2Normalize
from kerasface.models.reversal import GradientReversal

TRUNK = "trunk"
REVERSAL = "gradient_reversal"
ID_OUTPUT = "id"


def attribute_outputs(num_values: int) -> int:
    """Outputs of an attribute of ``num_values`` values: 1 (sigmoid) for two, else one per value."""
    if num_values < 2:
        raise ValueError(f"an attribute needs at least two values, got {num_values}")
    return 1 if num_values == 2 else num_values


@keras.saving.register_keras_serializable(package="kerasface")
class FastDense(keras.layers.Dense):
    """Dense whose kernel and bias are ``speed`` times its trained variables (initialised at
    ``1 / speed`` of Dense's), so that under Adam (whose steps do not depend on the gradient's
    scale) it learns ``speed`` times faster than the rest of the model: an adversary that keeps
    up with the trunk it is reversed into (two time-scale training)."""

    def __init__(self, units, speed: float = 1.0, **kwargs):
        super().__init__(units, **kwargs)
        self.speed = float(speed)

    def build(self, input_shape):
        super().build(input_shape)
        self._kernel.assign(self._kernel / self.speed)

    def call(self, inputs, training=None):
        x = ops.matmul(inputs, ops.cast(self.kernel, inputs.dtype) * self.speed)
        if self.use_bias:
            x = x + ops.cast(self.bias, inputs.dtype) * self.speed
        return self.activation(x) if self.activation is not None else x

    def get_config(self):
        return {**super().get_config(), "speed": self.speed}


def attribute_head(num_values: int, units: int, name: str, speed: float = 1.0) -> keras.Sequential:
    """Dense(units, ReLU) -> Dense -> sigmoid (two values) or softmax (more), in float32;
    ``speed`` > 1: ``FastDense`` layers that learn that many times faster."""
    width = attribute_outputs(num_values)
    dense = keras.layers.Dense if speed == 1 else (lambda *a, **k: FastDense(*a, speed=speed, **k))
    layers = [dense(units, activation="relu", name=f"{name}_hidden")] if units else []
    layers += [dense(width, name=f"{name}_logits"),
               keras.layers.Activation("sigmoid" if width == 1 else "softmax", dtype="float32",
                                       name=f"{name}_scores")]
    return keras.Sequential(layers, name=name)


def build_trunk(backbone: str, input_shape, embedding_dim: int, **backbone_kwargs) -> keras.Model:
    """``image -> [pooled features, embedding]``, named "trunk"."""
    embedder = build_embedding_model(backbone, tuple(input_shape), embedding_dim, **backbone_kwargs)
    names = {layer.name for layer in embedder.layers}
    if "flatten" in names:  # face backbones: the feature map before their embedding layers
        features = embedder.get_layer("flatten").input
        features = keras.layers.GlobalAveragePooling2D(name="trunk_pool")(features)
    elif "embedding_dense" in names:  # other backbones: their pooled features
        features = embedder.get_layer("embedding_dense").input
    else:
        raise ValueError(f"backbone {backbone!r}: no feature layer found for the attribute heads")
    return keras.Model(embedder.input, [features, embedder.output], name=TRUNK)


def build_multitask_model(
    attributes: Mapping[str, int],
    num_identities: int | None = None,
    *,
    backbone: str = "iresnet18",
    input_shape=(112, 112, 3),
    embedding_dim: int = 512,
    identity_head: str | None = "arcface",
    head_kwargs: dict | None = None,
    adversarial: bool = True,
    adversaries: Iterable[str] | None = None,
    reversal_lambda: float = 1.0,
    reversal_warmup_steps: int = 0,
    head_units: int = 128,
    adversary_speed: float = 1.0,
    backbone_kwargs: dict | None = None,
    name: str = "multitask",
) -> keras.Model:
    """The multi-task model. ``attributes``: name -> number of values. ``identity_head``: a
    margin head of ``kerasface.losses`` (the model then takes ``[image, identity]``; needs
    ``num_identities``), or None for a metric loss on the embedding (the model takes the image
    alone and its ``"id"`` output is the embedding). ``adversarial``: an adversary per attribute of
    ``adversaries`` (None: every attribute) behind ``GradientReversal(reversal_lambda,
    reversal_warmup_steps)``, learning ``adversary_speed`` times faster than the rest (``FastDense``)."""
    if not attributes:
        raise ValueError("the multitask model needs at least one attribute")
    trunk = build_trunk(backbone, input_shape, embedding_dim, **(backbone_kwargs or {}))
    images = keras.Input(tuple(input_shape), name="image")
    features, embedding = trunk(images)
    inputs, outputs = [images], {}
    if identity_head:
        from kerasface.losses import margin_head

        if not num_identities:
            raise ValueError(f"the {identity_head} head needs the number of training identities")
        labels = keras.Input((), dtype="int32", name="identity")
        inputs.append(labels)
        head = margin_head(identity_head, num_identities, **(head_kwargs or {}), name="margin_head")
        outputs[ID_OUTPUT] = head(embedding, labels)
    else:
        outputs[ID_OUTPUT] = keras.layers.Activation("linear", dtype="float32", name="id_embedding")(embedding)
    for attribute, values in attributes.items():
        outputs[attribute] = attribute_head(values, head_units, f"attribute_{attribute}")(features)
    adversaries = list(attributes) if adversaries is None else list(adversaries)
    unknown = sorted(set(adversaries) - set(attributes))
    if unknown:
        raise ValueError(f"adversaries {unknown} are not among the attributes {list(attributes)}")
    if adversarial and adversaries:
        unit = L2Normalize(name="embedding_l2")(embedding)
        reversed_ = GradientReversal(reversal_lambda, reversal_warmup_steps, name=REVERSAL)(unit)
        for attribute in adversaries:
            values = attributes[attribute]
            outputs[f"da_{attribute}"] = attribute_head(values, head_units, f"adversary_{attribute}",
                                                        adversary_speed)(reversed_)
    return keras.Model(inputs if len(inputs) > 1 else images, outputs, name=name)


def identity_model(model: keras.Model) -> keras.Model:
    """The identity embedding model alone: ``image -> embedding`` (no head, no adversary)."""
    trunk = model.get_layer(TRUNK)
    return keras.Model(trunk.inputs[0], trunk.outputs[1], name="embedding")


def attribute_names(model: keras.Model) -> list[str]:
    """The attributes of a multitask model, in the order of its outputs."""
    outputs = model.output if isinstance(model.output, dict) else {}
    names = [k for k in outputs if k != ID_OUTPUT and not k.startswith("da_")]
    return names or [layer.name.removeprefix("attribute_") for layer in model.layers
                     if layer.name.startswith("attribute_")]


def attribute_model(model: keras.Model, attributes: list[str] | None = None) -> keras.Model:
    """The attribute predictor alone: ``image -> (B, L)`` scores in the label vector's layout
    (one sigmoid score per two-value attribute, C softmax scores per C-value one, attributes in
    the order given, by default the model's), as the attributes task's models give."""
    trunk = model.get_layer(TRUNK)
    images = keras.Input(trunk.inputs[0].shape[1:], name="image")
    features, _ = trunk(images)
    scores = [model.get_layer(f"attribute_{a}")(features) for a in (attributes or attribute_names(model))]
    joined = scores[0] if len(scores) == 1 else keras.layers.Concatenate(name="attributes", dtype="float32")(scores)
    return keras.Model(images, joined, name="attributes")


def predictor_model(model: keras.Model) -> keras.Model:
    """``image -> {"embedding", "<a>", "da_<a>"}`` from the training model's layers, without the
    margin head: what evaluation and the probe run."""
    trunk = model.get_layer(TRUNK)
    images = keras.Input(trunk.inputs[0].shape[1:], name="image")
    features, embedding = trunk(images)
    outputs = {"embedding": embedding}
    names = attribute_names(model)
    for a in names:
        outputs[a] = model.get_layer(f"attribute_{a}")(features)
    if any(layer.name == REVERSAL for layer in model.layers):
        reversed_ = model.get_layer(REVERSAL)(model.get_layer("embedding_l2")(embedding))
        layer_names = {layer.name for layer in model.layers}
        for a in names:
            if f"adversary_{a}" in layer_names:
                outputs[f"da_{a}"] = model.get_layer(f"adversary_{a}")(reversed_)
    return keras.Model(images, outputs, name="predictor")
