"""Contrastive loss (Hadsell, Chopra and LeCun 2006) on all in-batch pairs."""

from __future__ import annotations

import keras
from keras import ops

from kerasface.losses.distances import batch_index, label_masks, pairwise_distance
from kerasface.registry import METRIC_LOSSES


@METRIC_LOSSES.register("contrastive")
@keras.saving.register_keras_serializable(package="kerasface")
class ContrastiveLoss(keras.losses.Loss):
    """Mean over the pairs i < j of ``d^2`` (same identity) or ``max(margin - d, 0)^2``
    (different), d the euclidean distance between the L2-normalised embeddings (the paper's
    1/2 factors dropped, as in TF Addons). Called ``loss(labels, embeddings)``.
    """

    def __init__(self, margin=1.0, **kwargs):
        super().__init__(**kwargs)
        self.margin = float(margin)

    def call(self, y_true, y_pred):
        d = pairwise_distance(y_pred, "l2")
        _, different = label_masks(y_true, y_pred)
        pair = ops.where(different, ops.square(ops.maximum(self.margin - d, 0.0)), ops.square(d))
        index = batch_index(y_pred)
        upper = ops.cast(ops.expand_dims(index, 1) < ops.expand_dims(index, 0), "float32")
        return ops.sum(pair * upper) / ops.maximum(ops.sum(upper), 1.0)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}
