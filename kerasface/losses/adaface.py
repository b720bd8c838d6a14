"""AdaFace (Kim et al. 2022): a margin adapted to image quality through the feature norm."""

from __future__ import annotations

import math

import keras
from keras import ops

from kerasface.losses.margin import MarginHead
from kerasface.registry import MARGIN_HEADS


@MARGIN_HEADS.register("adaface")
@keras.saving.register_keras_serializable(package="kerasface")
class AdaFace(MarginHead):
    """Target ``s * (cos(clip(theta + g_angular, eps, pi - eps)) - g_additive)`` with

    ``margin_scaler = clip((||x|| - mu) / (sigma + eps) * h, -1, 1)``,
    ``g_angular = -m * margin_scaler``, ``g_additive = m + m * margin_scaler``.

    mu, sigma: running mean and (unbiased) std of the batch norms, clipped to [0.001, 100]
    with no gradient, updated with momentum ``t_alpha`` before use when training (the official
    code's order; they start at 20 and 100) and saved with the model as non-trainable weights.
    eps = 1e-3 as in the official code.
    """

    eps = 1e-3

    def __init__(
        self, num_classes: int, scale: float = 64.0, margin: float = 0.4, h: float = 0.333,
        t_alpha: float = 0.01, **kwargs,
    ):
        super().__init__(num_classes, scale=scale, **kwargs)
        self.margin, self.h, self.t_alpha = float(margin), float(h), float(t_alpha)

    def build(self, embeddings_shape):
        super().build(embeddings_shape)
        self.batch_mean = self._statistic("batch_mean", 20.0)
        self.batch_std = self._statistic("batch_std", 100.0)

    def _statistic(self, name, initial):
        return self.add_weight(
            shape=(), initializer=keras.initializers.Constant(initial), dtype="float32",
            autocast=False, trainable=False, name=name,
        )

    def target(self, cos, norms, training=None):
        norms = ops.stop_gradient(ops.clip(norms, 0.001, 100.0))
        mean, std = ops.convert_to_tensor(self.batch_mean), ops.convert_to_tensor(self.batch_std)
        if training:
            count = ops.sum(ops.ones_like(norms))
            norms_mean = ops.mean(norms)
            norms_std = ops.sqrt(
                ops.sum(ops.square(norms - norms_mean)) / ops.maximum(count - 1.0, 1.0)
            )
            mean = self.t_alpha * norms_mean + (1.0 - self.t_alpha) * mean
            std = self.t_alpha * norms_std + (1.0 - self.t_alpha) * std
            self.batch_mean.assign(mean)
            self.batch_std.assign(std)
        scaler = ops.clip((norms - mean) / (std + self.eps) * self.h, -1.0, 1.0)
        g_angular = -self.margin * scaler
        g_additive = self.margin + self.margin * scaler
        theta = ops.arccos(ops.clip(cos, -1.0 + self.eps, 1.0 - self.eps))
        return ops.cos(ops.clip(theta + g_angular, self.eps, math.pi - self.eps)) - g_additive

    def get_config(self):
        return {
            **super().get_config(), "margin": self.margin, "h": self.h, "t_alpha": self.t_alpha,
        }
