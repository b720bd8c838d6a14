"""Margin heads: class logits from L2-normalised embeddings x and class centres W.

Every head holds the class centres as one weight ``centres`` of shape (embedding_dim,
num_classes) and is called ``head(embeddings, labels)`` with int class indices of shape (B,)
or (B, 1); it returns float32 logits (B, num_classes) for
``keras.losses.SparseCategoricalCrossentropy(from_logits=True)``. With ``cos_j = x^ . w^_j``,
the non-target logits are ``s * cos_j`` and the target logit is ``s * f(cos_y)``, f the head's
margin. ``labels=None`` (inference) gives ``s * cos_j`` for every class.

The arithmetic runs in float32 whatever the dtype policy (the layer does not autocast; inputs
are cast to float32 inside, the centres are a float32 weight). cos is clipped to
[-1 + eps, 1 - eps] before sqrt / arccos, so values and gradients stay finite at cos = +-1.
The target is picked with one_hot and where: no data-dependent shapes (XLA, TPU).
Follows insightface's arcface_torch losses.

Partial FC (An et al. 2022; insightface's ``PartialFC_V2``), an option of every head:
``sample_rate`` (e.g. 0.1) makes a call with labels compute logits against the batch's positive
centres plus a uniformly sampled subset of the others, ``num_sample = max(1, int(sample_rate *
num_classes))`` columns in all, a static size (XLA, TPU). Its output is laid out so the loss
needs no remapped labels: column 0 holds each sample's target logit (its margin applied to its
own centre, gathered directly), columns 1..num_sample the sampled classes' logits with the
sample's own class masked to -1e30, so ``softmax_cross_entropy(label=0)`` is exactly
insightface's cross-entropy over the sampled set. The sample is drawn per call: the batch's
classes get score 2, every class a uniform [0, 1) score, and the top ``num_sample`` scores are
kept (insightface's ``perm[positive] = 2.0; topk``); when the batch holds more distinct classes
than ``num_sample`` some positives are missing as negatives of the other samples, never as
targets. ``sample_rate=1.0`` keeps every class (no sampling): loss and gradients equal the
full head's. A Partial FC head stores its centres class-major, shape (num_classes,
embedding_dim) as insightface's ``PartialFC_V2.weight``, so a step gathers whole rows (on
TensorFlow the gradient is then ``IndexedSlices`` of the sampled rows; a column gather of the
(embedding_dim, num_classes) weight and its gradient costs far more on CPU; see
docs/benchmarks.md, "Partial FC"). All centres stay one weight, updated by the optimizer as
usual (the gradient is zero outside the sampled rows; momentum and weight decay still touch
every row); the saving is the (B, C) logits and the three B x C x D matmuls of a step, which
become B x num_sample. Without labels (inference)
every head gives ``s * cos_j`` for all classes, Partial FC or not.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from kerasface.registry import LOSSES

EPS = 1e-7
MASKED_LOGIT = -1e30  # exp() of it is exactly 0 in float32; finite, so 0 * it stays 0


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


@keras.saving.register_keras_serializable(package="kerasface")
class MarginHead(keras.layers.Layer):
    """Base of the margin heads: logits ``s * cos_j``, the target through :meth:`target`.

    ``sample_rate`` (None: the full head) turns on Partial FC (see the module docstring)."""

    def __init__(self, num_classes: int, scale: float = 64.0, sample_rate: float | None = None, **kwargs):
        kwargs.pop("autocast", None)  # float32 arithmetic: inputs and weights never autocast
        super().__init__(autocast=False, **kwargs)
        self.num_classes = int(num_classes)
        self.scale = float(scale)
        if sample_rate is not None and not 0.0 < float(sample_rate) <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1] (or None for the full head), got {sample_rate!r}")
        self.sample_rate = None if sample_rate is None else float(sample_rate)
        self.num_sample = (None if sample_rate is None
                           else min(self.num_classes, max(1, int(self.sample_rate * self.num_classes))))
        if self.num_sample is not None and self.num_sample < self.num_classes:
            self.seed_generator = keras.random.SeedGenerator(name="partial_fc_seed")

    @property
    def class_major(self) -> bool:
        """True when the centres are stored (num_classes, embedding_dim) (Partial FC)."""
        return self.sample_rate is not None

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

    def cosine(self, embeddings, index=None):
        """(B, C) ``x^ . w^_j`` in float32; with ``index`` (S,) only those classes' columns."""
        x = l2_normalize(ops.cast(embeddings, "float32"), axis=-1)
        return ops.matmul(x, l2_normalize(self.centre_columns(index), axis=0))

    def target(self, cos, norms, training=None):
        """Target cosine with the margin, from cos theta_y (B, 1) and ||x|| (B, 1)."""
        return cos

    def call(self, embeddings, labels=None, training=None):
        if labels is not None and self.sample_rate is not None:
            return self.partial_logits(embeddings, labels, training=training)
        cos = self.cosine(embeddings)
        if labels is None:
            return self.scale * cos
        one_hot = ops.one_hot(ops.reshape(ops.cast(labels, "int32"), (-1,)), self.num_classes)
        cos_y = ops.sum(cos * one_hot, axis=-1, keepdims=True)
        x = ops.cast(embeddings, "float32")
        norms = ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))
        return self.scale * ops.where(one_hot > 0.5, self.target(cos_y, norms, training), cos)

    # Partial FC
    def sample_classes(self, labels):
        """(num_sample,) int32 class indices: every class of ``labels`` (B,) while they fit, the
        rest drawn uniformly without replacement; all classes, in order, when num_sample = C."""
        if self.num_sample >= self.num_classes:
            return ops.arange(self.num_classes, dtype="int32")
        scores = keras.random.uniform((self.num_classes,), seed=self.seed_generator)
        positives = ops.reshape(ops.cast(labels, "int32"), (-1, 1))
        scores = ops.scatter_update(scores, positives, ops.full((ops.shape(positives)[0],), 2.0))
        return ops.cast(ops.top_k(scores, self.num_sample, sorted=False)[1], "int32")

    def class_logits(self, embeddings, index):
        """(B, S) logits of the classes ``index`` without any margin."""
        return self.scale * self.cosine(embeddings, index)

    def target_logits(self, embeddings, labels, training=None):
        """(B, 1) each sample's logit for its own class, margin applied."""
        x = ops.cast(embeddings, "float32")
        own = l2_normalize(ops.take(ops.cast(self.centres, "float32"), labels, axis=0), axis=-1)  # (B, D)
        cos_y = ops.sum(l2_normalize(x, axis=-1) * own, axis=-1, keepdims=True)
        norms = ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))
        return self.scale * self.target(cos_y, norms, training)

    def partial_logits(self, embeddings, labels, index=None, training=None):
        """(B, 1 + num_sample): the target logit, then the sampled classes' logits (the sample's
        own class masked); cross-entropy with label 0 for every sample."""
        labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
        if index is None:
            index = self.sample_classes(labels)
        others = self.class_logits(embeddings, index)
        own = ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(index, 0))
        others = ops.where(own, MASKED_LOGIT, others)
        return ops.concatenate([self.target_logits(embeddings, labels, training), others], axis=1)

    def compute_output_shape(self, embeddings_shape, labels_shape=None):
        if labels_shape is not None and self.sample_rate is not None:
            return (embeddings_shape[0], 1 + self.num_sample)
        return (embeddings_shape[0], self.num_classes)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "scale": self.scale,
                "sample_rate": self.sample_rate}


@LOSSES.register("softmax")
@keras.saving.register_keras_serializable(package="kerasface")
class Softmax(MarginHead):
    """Plain softmax classifier: logits ``W^T x + b`` (no normalisation, no margin)."""

    def __init__(self, num_classes: int, **kwargs):
        kwargs.pop("scale", None)
        super().__init__(num_classes, scale=1.0, **kwargs)

    def build(self, embeddings_shape):
        super().build(embeddings_shape)
        self.bias = self.add_weight(
            shape=(self.num_classes,), initializer="zeros", dtype="float32", autocast=False,
            name="bias",
        )

    def call(self, embeddings, labels=None, training=None):
        if labels is not None and self.sample_rate is not None:
            return self.partial_logits(embeddings, labels, training=training)
        return ops.matmul(ops.cast(embeddings, "float32"), self.centre_columns()) + self.bias

    def class_logits(self, embeddings, index):
        bias = ops.take(self.bias, index, axis=0)
        return ops.matmul(ops.cast(embeddings, "float32"), self.centre_columns(index)) + bias

    def target_logits(self, embeddings, labels, training=None):
        own = ops.take(self.centres, labels, axis=0)  # (B, D): Partial FC's class-major centres
        return (ops.sum(ops.cast(embeddings, "float32") * own, axis=-1, keepdims=True)
                + ops.expand_dims(ops.take(self.bias, labels, axis=0), 1))

    def get_config(self):
        config = super().get_config()
        config.pop("scale")
        return config


@LOSSES.register("normface")
@keras.saving.register_keras_serializable(package="kerasface")
class NormFace(MarginHead):
    """NormFace (Wang et al. 2017): ``s * cos theta_j`` for every class, no margin."""

    def __init__(self, num_classes: int, scale: float = 30.0, **kwargs):
        super().__init__(num_classes, scale=scale, **kwargs)


@LOSSES.register("sphereface")
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


@LOSSES.register("cosface")
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


@LOSSES.register("arcface")
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


@LOSSES.register("combined")
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
