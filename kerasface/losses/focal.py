"""Focal loss (Lin et al. 2017) over a head's logits."""

from __future__ import annotations

import keras
from keras import ops

from kerasface.registry import LOGIT_LOSSES


def log_target_probability(labels, logits):
    """(B,) ``log p_t = log_softmax(logits)[label]`` in float32, labels (B,) or (B, 1)."""
    logits = ops.cast(logits, "float32")
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    one_hot = ops.one_hot(labels, ops.shape(logits)[-1])
    return ops.sum(one_hot * ops.log_softmax(logits, axis=-1), axis=-1)


@LOGIT_LOSSES.register("focal")
@keras.saving.register_keras_serializable(package="kerasface")
class FocalLoss(keras.losses.Loss):
    """``-(1 - p_t)^gamma log p_t`` per sample (p_t the softmax probability of the label),
    averaged by the reduction; gamma = 0 is softmax cross-entropy. Called
    ``loss(labels, logits)`` with int labels.
    """

    def __init__(self, gamma=2.0, **kwargs):
        super().__init__(**kwargs)
        self.gamma = float(gamma)

    def call(self, y_true, y_pred):
        log_pt = log_target_probability(y_true, y_pred)
        return -ops.power(1.0 - ops.exp(log_pt), self.gamma) * log_pt

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma}
