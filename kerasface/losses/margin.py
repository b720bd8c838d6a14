"""Margin heads: class logits from L2-normalised embeddings x and class centres W.

Every head holds the class centres as one weight ``centres`` of shape (embedding_dim,
num_classes), or (num_classes, embedding_dim) with ``class_major``, and is called
``head(embeddings, labels)`` with int class indices of shape (B,) or (B, 1); it returns
float32 logits (B, num_classes) for ``keras.losses.SparseCategoricalCrossentropy(from_logits=True)``.
With ``cos_j = x^ . w^_j``, the non-target logits are ``s * cos_j`` and the target logit is
``s * f(cos_y)``, f the head's margin. ``labels=None`` (inference) gives ``s * cos_j`` for every class.

The arithmetic runs in float32 whatever the dtype policy (the layer does not autocast; inputs
are cast to float32 inside, the centres are a float32 weight). cos is clipped to
[-1 + eps, 1 - eps] before sqrt / arccos, so values and gradients stay finite at cos = +-1.
The target is picked with one_hot and where: no data-dependent shapes (XLA, TPU).
Follows insightface's arcface_torch losses.

A head is its formula, in pieces that :class:`kerasface.losses.PartialFC` (the sampled
softmax over any head) also calls: ``cosine`` (of every class, or of some), ``own_cosine``
(against each sample's own centre), ``target`` and ``scale``.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from kerasface.registry import MARGIN_HEADS

EPS = 1e-7


def l2_normalize(x, axis=-1):
    """``x / sqrt(max(sum(x**2), 1e-12))``."""
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), 1e-12))


def clip_cosine(cos, eps=EPS):
    return ops.clip(cos, -1.0 + eps, 1.0 - eps)


def arc_margin(cos, margin, easy_margin=False):
    """``cos(theta + m)`` from cos theta (m a float or a (B, 1) tensor).

    Where ``theta + m > pi`` (cos theta < cos(pi - m)) the insightface fallback
    ``cos theta - m sin m``; with ``easy_margin`` where cos theta <= 0, cos theta unchanged.
    """
    c = clip_cosine(cos)
    phi = c * ops.cos(margin) - ops.sqrt(1.0 - c * c) * ops.sin(margin)
    if easy_margin:
        return ops.where(cos > 0.0, phi, cos)
    return ops.where(cos > ops.cos(math.pi - margin), phi, cos - ops.sin(math.pi - margin) * margin)


def feature_norms(embeddings):
    """(B, 1) ``||x||`` in float32."""
    return ops.sqrt(ops.sum(ops.square(ops.cast(embeddings, "float32")), axis=-1, keepdims=True))


@keras.saving.register_keras_serializable(package="kerasface")
class MarginHead(keras.layers.Layer):
    """Base of the margin heads: logits ``s * cos_j``, the target through :meth:`target`.

    ``class_major`` stores the centres (num_classes, embedding_dim), so that gathering some
    classes' centres takes whole rows (what :class:`~kerasface.losses.PartialFC` does each step).
    """

    def __init__(self, num_classes: int, scale: float = 64.0, class_major: bool = False, **kwargs):
        kwargs.pop("autocast", None)  # float32 arithmetic: inputs and weights never autocast
        super().__init__(autocast=False, **kwargs)
        self.num_classes = int(num_classes)
        self.scale = float(scale)
        self.class_major = bool(class_major)

    def build(self, embeddings_shape):
        dim = int(embeddings_shape[-1])
        self.centres = self.add_weight(
            shape=(self.num_classes, dim) if self.class_major else (dim, self.num_classes),
            initializer=keras.initializers.RandomNormal(stddev=0.01),
            dtype="float32", autocast=False, name="centres",
        )

    def centre_columns(self, index=None):
        """(embedding_dim, S) float32 centres of the classes ``index`` (S,), all when None."""
        centres = ops.cast(self.centres, "float32")
        if not self.class_major:
            return centres if index is None else ops.take(centres, index, axis=1)
        return ops.transpose(centres if index is None else ops.take(centres, index, axis=0))

    def centre_rows(self, index):
        """(S, embedding_dim) float32 centres of the classes ``index`` (S,)."""
        centres = ops.cast(self.centres, "float32")
        if self.class_major:
            return ops.take(centres, index, axis=0)
        return ops.transpose(ops.take(centres, index, axis=1))

    def cosine(self, embeddings, index=None):
        """(B, C) ``x^ . w^_j`` in float32; with ``index`` (S,) only those classes' columns."""
        x = l2_normalize(ops.cast(embeddings, "float32"), axis=-1)
        return ops.matmul(x, l2_normalize(self.centre_columns(index), axis=0))

    def own_cosine(self, embeddings, labels):
        """(B, 1) cos theta_y against each sample's own centre, ``labels`` (B,) int32."""
        x = l2_normalize(ops.cast(embeddings, "float32"), axis=-1)
        return ops.sum(x * l2_normalize(self.centre_rows(labels), axis=-1), axis=-1, keepdims=True)

    def target(self, cos, norms, training=None):
        """Target cosine with the margin, from cos theta_y (B, 1) and ||x|| (B, 1)."""
        return cos

    def call(self, embeddings, labels=None, training=None):
        cos = self.cosine(embeddings)
        if labels is None:
            return self.scale * cos
        one_hot = ops.one_hot(ops.reshape(ops.cast(labels, "int32"), (-1,)), self.num_classes)
        cos_y = ops.sum(cos * one_hot, axis=-1, keepdims=True)
        target = self.target(cos_y, feature_norms(embeddings), training)
        return self.scale * ops.where(one_hot > 0.5, target, cos)

    def compute_output_shape(self, embeddings_shape, labels_shape=None):
        return (embeddings_shape[0], self.num_classes)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "scale": self.scale,
                "class_major": self.class_major}

    @classmethod
    def from_config(cls, config):
        """A config with a ``sample_rate`` (saved when Partial FC was an option of the heads)
        gives the equivalent ``PartialFC(head, sample_rate)``."""
        config = dict(config)
        sample_rate = config.pop("sample_rate", None)
        if sample_rate is None:
            return super().from_config(config)
        from kerasface.losses.partial_fc import PartialFC

        name = config.pop("name", None)
        layer = PartialFC(super().from_config(config), sample_rate, name=name)
        layer._from_head_config = True
        return layer


@MARGIN_HEADS.register("softmax")
@keras.saving.register_keras_serializable(package="kerasface")
class Softmax(MarginHead):
    """Plain softmax classifier: logits ``W^T x + b`` (no normalisation, no margin): its
    "cosine" is that dot product plus the bias, its scale 1."""

    def __init__(self, num_classes: int, **kwargs):
        kwargs.pop("scale", None)
        super().__init__(num_classes, scale=1.0, **kwargs)

    def build(self, embeddings_shape):
        super().build(embeddings_shape)
        self.bias = self.add_weight(
            shape=(self.num_classes,), initializer="zeros", dtype="float32", autocast=False,
            name="bias",
        )

    def cosine(self, embeddings, index=None):
        bias = self.bias if index is None else ops.take(self.bias, index, axis=0)
        return ops.matmul(ops.cast(embeddings, "float32"), self.centre_columns(index)) + bias

    def own_cosine(self, embeddings, labels):
        return (ops.sum(ops.cast(embeddings, "float32") * self.centre_rows(labels), axis=-1, keepdims=True)
                + ops.expand_dims(ops.take(self.bias, labels, axis=0), 1))

    def get_config(self):
        config = super().get_config()
        config.pop("scale")
        return config


@MARGIN_HEADS.register("normface")
@keras.saving.register_keras_serializable(package="kerasface")
class NormFace(MarginHead):
    """NormFace (Wang et al. 2017): ``s * cos theta_j`` for every class, no margin."""

    def __init__(self, num_classes: int, scale: float = 30.0, **kwargs):
        super().__init__(num_classes, scale=scale, **kwargs)


@MARGIN_HEADS.register("sphereface")
@keras.saving.register_keras_serializable(package="kerasface")
class SphereFace(MarginHead):
    """SphereFace / A-Softmax (Liu et al. 2017): target ``s * psi(theta)``,

    ``psi(theta) = (-1)^k cos(m theta) - 2k`` for theta in [k pi / m, (k + 1) pi / m]: the
    monotonically decreasing extension of cos(m theta) over [0, pi]. (The paper's annealing
    ``(lambda cos + psi) / (1 + lambda)`` and feature-norm scale are left to the caller.)
    """

    def __init__(self, num_classes: int, scale: float = 30.0, margin: float = 1.35, **kwargs):
        super().__init__(num_classes, scale=scale, **kwargs)
        self.margin = float(margin)

    def target(self, cos, norms, training=None):
        theta = ops.arccos(clip_cosine(cos))
        k = ops.floor(self.margin * theta / math.pi)
        sign = 1.0 - 2.0 * ops.mod(k, 2.0)
        return sign * ops.cos(self.margin * theta) - 2.0 * k

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


@MARGIN_HEADS.register("cosface")
@keras.saving.register_keras_serializable(package="kerasface")
class CosFace(MarginHead):
    """CosFace / AM-Softmax (Wang et al. 2018): target ``s * (cos theta - m)``."""

    def __init__(self, num_classes: int, scale: float = 64.0, margin: float = 0.35, **kwargs):
        super().__init__(num_classes, scale=scale, **kwargs)
        self.margin = float(margin)

    def target(self, cos, norms, training=None):
        return cos - self.margin

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


@MARGIN_HEADS.register("arcface")
@keras.saving.register_keras_serializable(package="kerasface")
class ArcFace(MarginHead):
    """ArcFace (Deng et al. 2019): target ``s * cos(theta + m)``.

    Where ``theta + m > pi``: ``cos theta - m sin m`` (insightface's
    ``where(cos > cos(pi - m), phi, cos - sin(pi - m) m)``); ``easy_margin``: where cos <= 0,
    cos theta unchanged.
    """

    def __init__(
        self, num_classes: int, scale: float = 64.0, margin: float = 0.5,
        easy_margin: bool = False, **kwargs,
    ):
        super().__init__(num_classes, scale=scale, **kwargs)
        self.margin = float(margin)
        self.easy_margin = bool(easy_margin)

    def target(self, cos, norms, training=None):
        return arc_margin(cos, self.margin, self.easy_margin)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "easy_margin": self.easy_margin}


@MARGIN_HEADS.register("combined")
@keras.saving.register_keras_serializable(package="kerasface")
class CombinedMargin(MarginHead):
    """Combined margin (insightface): target ``s * (cos(m1 theta + m2) - m3)``.

    m1 = SphereFace's multiplicative, m2 = ArcFace's additive angular, m3 = CosFace's additive
    cosine margin. With m1 = 1 the angular part takes ArcFace's fallback where ``theta + m2 > pi``
    (``cos theta - m2 sin m2``, as arcface_torch's ``CombinedMarginLoss``), so the target keeps
    decreasing in theta; with m1 != 1 the formula is used as it stands (insightface's original).
    """

    def __init__(
        self, num_classes: int, scale: float = 64.0, m1: float = 1.0, m2: float = 0.5,
        m3: float = 0.0, **kwargs,
    ):
        super().__init__(num_classes, scale=scale, **kwargs)
        self.m1, self.m2, self.m3 = float(m1), float(m2), float(m3)

    def target(self, cos, norms, training=None):
        if self.m1 == 1.0:
            return arc_margin(cos, self.m2) - self.m3
        return ops.cos(self.m1 * ops.arccos(clip_cosine(cos)) + self.m2) - self.m3

    def get_config(self):
        return {**super().get_config(), "m1": self.m1, "m2": self.m2, "m3": self.m3}
