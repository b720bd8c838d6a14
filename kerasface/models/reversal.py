"""Gradient reversal (Ganin & Lempitsky, 2015, arXiv:1409.7495): the identity on the forward
pass, the gradient times ``-lambda`` on the backward pass, so that a head behind it learns to
predict something while the layers before it learn to hide it (an adversary).

    reversed_ = GradientReversal(1.0)(embedding)                    # constant lambda
    reversed_ = GradientReversal(1.0, warmup_steps=2000)(embedding) # DANN warm-up

With ``warmup_steps`` the strength follows DANN's schedule, ``lambda * (2 / (1 + exp(-gamma *
p)) - 1)`` with ``p = min(step / warmup_steps, 1)``: 0 at the first step, ``lambda`` from
``warmup_steps`` on. The step counter is a non-trainable weight advanced by every training call,
so it is saved in checkpoints and a resumed run goes on where it stopped. Written with
``keras.ops.custom_gradient`` only: it runs on TensorFlow and JAX.
"""

from __future__ import annotations

import keras
from keras import ops


@ops.custom_gradient
def reverse_gradient(x, strength):
    """``x`` unchanged; the gradient reaching ``x`` is ``-strength * upstream`` (none reaches
    ``strength``)."""

    def grad(*args, upstream=None):
        if upstream is None:  # TensorFlow and JAX pass the upstream gradient positionally
            (upstream,) = args
        return ops.negative(upstream) * ops.cast(strength, upstream.dtype), ops.zeros_like(strength)

    return x, grad


def dann_lambda(step, lambda_: float, warmup_steps: int, gamma: float = 10.0):
    """DANN's strength at ``step``: ``lambda * (2 / (1 + exp(-gamma * p)) - 1)``, ``p`` the
    share of ``warmup_steps`` done (capped at 1); ``lambda`` itself without warm-up."""
    if warmup_steps <= 0:
        return ops.convert_to_tensor(lambda_, "float32")
    progress = ops.minimum(ops.cast(step, "float32") / float(warmup_steps), 1.0)
    return lambda_ * (2.0 / (1.0 + ops.exp(-gamma * progress)) - 1.0)


@keras.saving.register_keras_serializable(package="kerasface")
class GradientReversal(keras.layers.Layer):
    """Identity forward, gradient times ``-lambda_`` backward; optional DANN warm-up of
    ``lambda_`` over ``warmup_steps`` training steps (``gamma`` its steepness). Holds one
    non-trainable weight, the training-step counter."""

    def __init__(self, lambda_: float = 1.0, warmup_steps: int = 0, gamma: float = 10.0, **kwargs):
        super().__init__(**kwargs)
        if lambda_ < 0:
            raise ValueError(f"GradientReversal: lambda_ must be >= 0, got {lambda_}")
        if warmup_steps < 0:
            raise ValueError(f"GradientReversal: warmup_steps must be >= 0, got {warmup_steps}")
        self.lambda_ = float(lambda_)
        self.warmup_steps = int(warmup_steps)
        self.gamma = float(gamma)

    def build(self, input_shape):
        self.step = self.add_weight(shape=(), initializer="zeros", trainable=False, dtype="float32",
                                    name="step", aggregation="only_first_replica")

    def strength(self):
        """The current lambda (a scalar tensor)."""
        return dann_lambda(self.step, self.lambda_, self.warmup_steps, self.gamma)

    def call(self, x, training=None):
        strength = self.strength()
        if training and self.warmup_steps > 0:
            self.step.assign(self.step + 1.0)
        return reverse_gradient(x, ops.cast(strength, x.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "lambda_": self.lambda_, "warmup_steps": self.warmup_steps,
                "gamma": self.gamma}
