"""Partial FC (An et al. 2022; insightface's ``PartialFC_V2(margin_loss, ...)``) over any margin head.

``PartialFC(head, sample_rate)`` (e.g. 0.1), called with labels, computes logits against the
batch's positive centres plus a uniformly sampled subset of the others, ``num_sample =
max(1, int(sample_rate * num_classes))`` columns in all, a static size (XLA, TPU). Its output
is laid out so the loss needs no remapped labels: column 0 holds each sample's target logit
(the head's margin applied to its own centre, gathered directly), columns 1..num_sample the
sampled classes' logits with the sample's own class masked to -1e30, so
``softmax_cross_entropy(label=0)`` is exactly insightface's cross-entropy over the sampled set.

The sample is drawn per call: the batch's classes get score 2, every class a uniform [0, 1)
score, and the top ``num_sample`` scores are kept (insightface's ``perm[positive] = 2.0;
topk``); when the batch holds more distinct classes than ``num_sample`` some positives are
missing as negatives of the other samples, never as targets. ``sample_rate=1.0`` keeps every
class (no sampling): loss and gradients equal the full head's.

The head keeps its centres, stored class-major, shape (num_classes, embedding_dim) as
insightface's ``PartialFC_V2.weight``, so a step gathers whole rows (on TensorFlow the gradient
is then ``IndexedSlices`` of the sampled rows; a column gather of the (embedding_dim,
num_classes) weight and its gradient costs far more on CPU: docs/benchmarks.md, "Partial FC").
All centres stay one weight,
updated by the optimizer as usual (the gradient is zero outside the sampled rows; momentum and
weight decay still touch every row); the saving is the (B, C) logits and the three B x C x D
matmuls of a step, which become B x num_sample. Without labels (inference) it gives the
head's ``s * cos_j`` for all classes.
"""

from __future__ import annotations

import keras
from keras import ops

from kerasface.losses.margin import MarginHead, feature_norms
from kerasface.registry import MARGIN_HEADS

MASKED_LOGIT = -1e30  # exp() of it is exactly 0 in float32; finite, so 0 * it stays 0


@keras.saving.register_keras_serializable(package="kerasface")
class PartialFC(keras.layers.Layer):
    """Logits (B, 1 + num_sample) of ``head``'s target and sampled classes (the module docstring).

    An unbuilt ``head`` is switched to class-major centres.
    """

    def __init__(self, head: MarginHead, sample_rate: float, **kwargs):
        kwargs.pop("autocast", None)
        super().__init__(autocast=False, **kwargs)
        if not 0.0 < float(sample_rate) <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
        if not head.built:
            head.class_major = True
        self.head = head
        self.sample_rate = float(sample_rate)
        self.num_sample = min(head.num_classes, max(1, int(self.sample_rate * head.num_classes)))
        if self.num_sample < head.num_classes:
            self.seed_generator = keras.random.SeedGenerator(name="partial_fc_seed")
        self._from_head_config = False

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def centres(self):
        return self.head.centres

    def build(self, embeddings_shape):
        if not self.head.built:
            self.head.build(embeddings_shape)

    def sample_classes(self, labels):
        """(num_sample,) int32 class indices: every class of ``labels`` (B,) while they fit, the
        rest drawn uniformly without replacement; all classes, in order, when num_sample = C."""
        if self.num_sample >= self.num_classes:
            return ops.arange(self.num_classes, dtype="int32")
        scores = keras.random.uniform((self.num_classes,), seed=self.seed_generator)
        positives = ops.reshape(ops.cast(labels, "int32"), (-1, 1))
        scores = ops.scatter_update(scores, positives, ops.full((ops.shape(positives)[0],), 2.0))
        return ops.cast(ops.top_k(scores, self.num_sample, sorted=False)[1], "int32")

    def call(self, embeddings, labels=None, training=None):
        if labels is None:
            return self.head(embeddings, training=training)
        head = self.head
        labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
        index = self.sample_classes(labels)
        own = ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(index, 0))
        others = ops.where(own, MASKED_LOGIT, head.scale * head.cosine(embeddings, index))
        target = head.target(head.own_cosine(embeddings, labels), feature_norms(embeddings), training)
        return ops.concatenate([head.scale * target, others], axis=1)

    def compute_output_shape(self, embeddings_shape, labels_shape=None):
        if labels_shape is None:
            return (embeddings_shape[0], self.num_classes)
        return (embeddings_shape[0], 1 + self.num_sample)

    def load_own_variables(self, store):
        if self._from_head_config:
            raise ValueError(
                f"{self.name}: saved when Partial FC was a head option ({type(self.head).__name__} with "
                f"sample_rate {self.sample_rate}), whose weights this layout cannot read; build the model "
                f"with kerasface.losses.margin_head(name, num_classes, sample_rate={self.sample_rate}) "
                "(a PartialFC around the head) and set its weights")
        super().load_own_variables(store)

    def get_config(self):
        head = keras.saving.serialize_keras_object(self.head)
        head.pop("build_config", None)  # built inside this layer, under its name
        return {**super().get_config(), "head": head, "sample_rate": self.sample_rate}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        head = keras.saving.deserialize_keras_object(config.pop("head"))
        return cls(head, **config)


def margin_head(head: str, num_classes: int, /, sample_rate: float | None = None, **kwargs):
    """The margin head named ``head`` in ``MARGIN_HEADS`` over ``num_classes``, with ``kwargs``
    (its options and layer ``name``); with ``sample_rate``, ``PartialFC(head, sample_rate)``
    under that layer name."""
    if sample_rate is None:
        return MARGIN_HEADS.create(head, num_classes, **kwargs)
    name = kwargs.pop("name", None)
    return PartialFC(MARGIN_HEADS.create(head, num_classes, **kwargs), sample_rate, name=name)
