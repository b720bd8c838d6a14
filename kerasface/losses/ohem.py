"""Online hard example mining (Shrivastava et al. 2016) over a head's logits."""

from __future__ import annotations

import math

import keras
from keras import ops

from kerasface.losses.distances import batch_index
from kerasface.losses.focal import log_target_probability
from kerasface.registry import LOGIT_LOSSES

# ceil(keep_ratio * B) is taken of keep_ratio * B - ROUNDING, so 0.7 * 10 keeps 7, not 8
ROUNDING = 1e-3


@LOGIT_LOSSES.register("ohem")
@keras.saving.register_keras_serializable(package="kerasface")
class OHEM(keras.losses.Loss):
    """Mean softmax cross-entropy ``-log p_t`` of the ``k = ceil(keep_ratio * B)`` samples with
    the largest loss. Called ``loss(labels, logits)`` with int labels. k is static when the
    batch size is; with a dynamic batch size a mask over the sorted losses keeps the top k.
    """

    def __init__(self, keep_ratio=0.7, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < keep_ratio <= 1.0:
            raise ValueError(f"keep_ratio must be in (0, 1]; got {keep_ratio}")
        self.keep_ratio = float(keep_ratio)

    def call(self, y_true, y_pred):
        losses = -log_target_probability(y_true, y_pred)
        batch = y_pred.shape[0]
        if batch is not None:
            k = max(1, math.ceil(self.keep_ratio * batch - ROUNDING))
            return ops.mean(ops.top_k(losses, k, sorted=False)[0])
        k = ops.maximum(ops.ceil(self.keep_ratio * ops.sum(ops.ones_like(losses)) - ROUNDING), 1.0)
        largest_first = ops.flip(ops.sort(losses))
        kept = ops.cast(ops.cast(batch_index(y_pred), "float32") < k, "float32")
        return ops.sum(largest_first * kept) / k

    def get_config(self):
        return {**super().get_config(), "keep_ratio": self.keep_ratio}
