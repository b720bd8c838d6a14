"""MagFace (Meng et al. 2021): ArcFace with a margin that grows with the feature magnitude."""

from __future__ import annotations

import keras
from keras import ops

from kerasface.losses.margin import MarginHead, arc_margin
from kerasface.registry import MARGIN_HEADS


@MARGIN_HEADS.register("magface")
@keras.saving.register_keras_serializable(package="kerasface")
class MagFace(MarginHead):
    """Target ``s * cos(theta + m(a))`` with a = ||x|| clipped to [l_a, u_a] and

    ``m(a) = (u_m - l_m) / (u_a - l_a) * (a - l_a) + l_m`` (ArcFace's fallback where
    theta + m(a) > pi). The regulariser ``lambda_g * mean(g(a))``, ``g(a) = 1 / a + a / u_a^2``,
    is added with ``add_loss`` whenever labels are given.
    """

    def __init__(
        self, num_classes: int, scale: float = 64.0, l_a: float = 10.0, u_a: float = 110.0,
        l_m: float = 0.45, u_m: float = 0.8, lambda_g: float = 35.0, **kwargs,
    ):
        super().__init__(num_classes, scale=scale, **kwargs)
        self.l_a, self.u_a = float(l_a), float(u_a)
        self.l_m, self.u_m = float(l_m), float(u_m)
        self.lambda_g = float(lambda_g)

    def magnitude_margin(self, a):
        return (self.u_m - self.l_m) / (self.u_a - self.l_a) * (a - self.l_a) + self.l_m

    def regulariser(self, a):
        return 1.0 / a + a / self.u_a**2

    def target(self, cos, norms, training=None):
        a = ops.clip(norms, self.l_a, self.u_a)
        self.add_loss(self.lambda_g * ops.mean(self.regulariser(a)))
        return arc_margin(cos, self.magnitude_margin(a))

    def get_config(self):
        return {
            **super().get_config(), "l_a": self.l_a, "u_a": self.u_a, "l_m": self.l_m,
            "u_m": self.u_m, "lambda_g": self.lambda_g,
        }
