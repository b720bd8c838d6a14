"""Attribute losses and metrics that leave missing values out.

A sample whose attribute value is missing has NaN targets for that attribute (``read_csv(...,
missing_labels=True)``): it counts toward neither that attribute's loss nor its AUC, and the
loss is the mean over the samples that have a value (0 when none in the batch has one).

Targets and scores follow ``kerasface.data.spec``: a two-value attribute is one 0/1 target
with one sigmoid score, an attribute of C values C one-hot targets with C softmax scores.
"""

from __future__ import annotations

import keras
from keras import ops

EPSILON = 1e-7


def present_mask(y_true):
    """(B,) float32: 1 where the sample has a value for the attribute (no NaN target)."""
    missing = ops.any(ops.isnan(ops.cast(y_true, "float32")), axis=-1)
    return 1.0 - ops.cast(missing, "float32")


def masked_crossentropy(y_true, y_pred, class_weights=None, epsilon: float = EPSILON):
    """Weighted mean of the per-sample cross-entropy over the samples with a value:
    ``sum(m_i w_i ce_i) / sum(m_i w_i)``, ``m_i`` 1 where the targets hold no NaN, ``w_i`` the
    weight of the sample's value (``class_weights``, one per value; two for a 0/1 target)."""
    y_true = ops.cast(y_true, "float32")
    scores = ops.clip(ops.cast(y_pred, "float32"), epsilon, 1.0 - epsilon)
    mask = present_mask(y_true)
    targets = ops.where(ops.isnan(y_true), 0.0, y_true)
    if scores.shape[-1] == 1:
        t, p = targets[..., 0], scores[..., 0]
        per_sample = -(t * ops.log(p) + (1.0 - t) * ops.log(1.0 - p))
        weights = ops.ones_like(t) if class_weights is None else (
            (1.0 - t) * float(class_weights[0]) + t * float(class_weights[1]))
    else:
        per_sample = -ops.sum(targets * ops.log(scores), axis=-1)
        weights = ops.ones_like(per_sample) if class_weights is None else ops.sum(
            targets * ops.convert_to_tensor([float(w) for w in class_weights], "float32"), axis=-1)
    weights = weights * mask
    return ops.sum(weights * per_sample) / ops.maximum(ops.sum(weights), 1e-12)


@keras.saving.register_keras_serializable(package="kerasface")
class MaskedCrossentropy(keras.losses.Loss):
    """Binary (one sigmoid score) or categorical (softmax scores) cross-entropy of one attribute,
    averaged over the samples whose value is not missing (``masked_crossentropy``).
    ``class_weights``: optional weight per value (e.g. 1 / undersampling factor for the majority)."""

    def __init__(self, class_weights=None, epsilon: float = EPSILON, name="masked_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.epsilon = float(epsilon)

    def call(self, y_true, y_pred):
        return masked_crossentropy(y_true, y_pred, self.class_weights, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "class_weights": self.class_weights, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="kerasface")
class MaskedAUC(keras.metrics.AUC):
    """ROC AUC of one attribute over the samples whose value is not missing; for C values build it
    with ``multi_label=True, num_labels=C`` (the mean one-vs-rest AUC)."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "float32")
        missing = ops.isnan(y_true)
        weight = ops.broadcast_to(ops.expand_dims(present_mask(y_true), -1), ops.shape(y_true))
        if sample_weight is not None:
            weight = weight * ops.reshape(ops.cast(sample_weight, "float32"), (-1, 1))
        return super().update_state(ops.where(missing, 0.0, y_true), y_pred, sample_weight=weight)
