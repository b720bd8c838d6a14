"""Triplet loss with in-batch mining: semi-hard (FaceNet), batch-hard, batch-all."""

from __future__ import annotations

import keras
from keras import ops

from kerasface.losses.distances import (
    DISTANCES, label_masks, masked_maximum, masked_minimum, pairwise_distance,
)
from kerasface.registry import METRIC_LOSSES

MINING = ("semi-hard", "hard", "all")


@METRIC_LOSSES.register("triplet")
@keras.saving.register_keras_serializable(package="kerasface")
class TripletLoss(keras.losses.Loss):
    """``max(d(a, p) - d(a, n) + margin, 0)`` over in-batch triplets; ``loss(labels, embeddings)``.

    - "semi-hard" (Schroff et al. 2015, FaceNet), as TF Addons' ``TripletSemiHardLoss``: for
      each anchor-positive pair the closest negative farther than the positive, else the
      farthest negative; averaged over all anchor-positive pairs.
    - "hard" (Hermans et al. 2017, batch-hard): per anchor the farthest positive and the closest
      negative; averaged over the anchors that have a positive.
    - "all" (batch-all): mean over the valid triplets whose loss is positive.

    Embeddings are L2-normalised first; distance "l2", "squared_l2" or "cosine" (1 - cos).
    Returns 0 where the batch holds no positive pair.
    """

    def __init__(self, margin=0.35, mining="semi-hard", distance="l2", **kwargs):
        super().__init__(**kwargs)
        if mining not in MINING:
            raise ValueError(f"mining {mining!r} is not one of {', '.join(MINING)}")
        if distance not in DISTANCES:
            raise ValueError(f"distance {distance!r} is not one of {', '.join(DISTANCES)}")
        self.margin, self.mining, self.distance = float(margin), mining, distance

    def call(self, y_true, y_pred):
        d = pairwise_distance(y_pred, self.distance)
        same, different = label_masks(y_true, y_pred)
        mine = {"semi-hard": semi_hard, "hard": batch_hard, "all": batch_all}[self.mining]
        return mine(d, ops.cast(same, "float32"), ops.cast(different, "float32"), self.margin)

    def get_config(self):
        return {
            **super().get_config(), "margin": self.margin, "mining": self.mining,
            "distance": self.distance,
        }


def _mean(values, count):
    return ops.sum(values) / ops.maximum(count, 1.0)


def semi_hard(d, same, different, margin):
    """Pair (a, p): the closest negative with d(a, n) > d(a, p), else the farthest negative."""
    d_an = ops.expand_dims(d, 1)  # [a, 1, n]
    beyond = different[:, None, :] * ops.cast(d_an > ops.expand_dims(d, 2), "float32")  # [a, p, n]
    closest_beyond = masked_minimum(d_an, beyond, axis=2)[:, :, 0]
    farthest = masked_maximum(d, different, axis=1)
    negative = ops.where(ops.max(beyond, axis=2) > 0, closest_beyond, farthest)
    return _mean(ops.maximum((margin + d - negative) * same, 0.0), ops.sum(same))


def batch_hard(d, same, different, margin):
    """Anchor a: the farthest positive against the closest negative."""
    hardest_positive = masked_maximum(d, same, axis=1)[:, 0]
    hardest_negative = masked_minimum(d, different, axis=1)[:, 0]
    has_positive = ops.max(same, axis=1)
    hinge = ops.maximum(hardest_positive - hardest_negative + margin, 0.0)
    return _mean(hinge * has_positive, ops.sum(has_positive))


def batch_all(d, same, different, margin):
    """Every valid (a, p, n); the mean over those with a positive loss."""
    valid = same[:, :, None] * different[:, None, :]
    losses = ops.maximum(ops.expand_dims(d, 2) - ops.expand_dims(d, 1) + margin, 0.0) * valid
    return _mean(losses, ops.sum(ops.cast(losses > 1e-16, "float32")))
