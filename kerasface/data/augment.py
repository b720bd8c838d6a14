"""Training augmentation inside ``tf.data.map``: rotation, flip, brightness, contrast, noise.

Every random draw is stateless and keyed by a per-element seed, so a pipeline is reproducible
under its seed whatever the parallelism, and differs from epoch to epoch.
Images are float32 in [0, 255] and are clipped back to that range.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

from kerasface.data.spec import LabelMirror

VALUE_RANGE = 255.0


@dataclasses.dataclass
class AugmentConfig:
    """noise_sigma: std of additive gaussian noise as a fraction of the value range (5%).
    max_rotation: rotation angle drawn uniformly in [-max, max] degrees (the notes: 0-50).
    flip: horizontal flip with probability 1/2 (labels that name a side follow the image, see
    ``augment_example``).
    brightness: additive shift drawn in [-b, b] times the value range.
    contrast: factor drawn in [1 - c, 1 + c] around the image mean."""

    noise_sigma: float = 0.05
    max_rotation: float = 15.0
    flip: bool = True
    brightness: float = 0.1
    contrast: float = 0.1

    def __post_init__(self):
        if not 0.0 <= self.max_rotation <= 180.0:
            raise ValueError(f"max_rotation must lie in [0, 180] degrees, got {self.max_rotation}")
        for name in ("noise_sigma", "brightness", "contrast"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def rotation_transform(angle: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """Projective transform (output -> input coordinates) of a rotation by ``angle`` radians
    (counter-clockwise on screen) about the image centre, as ``ImageProjectiveTransformV3`` reads it."""
    cos, sin = tf.cos(angle), tf.sin(angle)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    x_offset = cx - (cos * cx - sin * cy)
    y_offset = cy - (sin * cx + cos * cy)
    zero = tf.zeros_like(cos)
    return tf.stack([cos, -sin, x_offset, sin, cos, y_offset, zero, zero])


def rotate(image: tf.Tensor, angle: tf.Tensor, fill_mode: str = "REFLECT") -> tf.Tensor:
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    transform = rotation_transform(
        tf.cast(angle, tf.float32), tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    )
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform[None],
        output_shape=tf.stack([height, width]),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode=fill_mode,
    )[0]


def augment_image(image: tf.Tensor, seed: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """Apply ``config`` to one float image under the stateless ``seed`` (shape [2] int)."""
    return _augment(image, seed, config)[0]


def augment_example(image: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor, config: AugmentConfig,
                    mirror: LabelMirror | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """``augment_image`` for an (image, label vector) pair: when the image is flipped, labels
    that name a side follow it (``mirror``, see ``kerasface.data.spec.label_mirror``)."""
    image, flipped = _augment(image, seed, config)
    if mirror is None:
        return image, labels
    permutation = tf.constant(mirror.permutation, tf.int32)
    complement = tf.constant(mirror.complement)
    mirrored = tf.gather(labels, permutation, axis=-1)
    mirrored = tf.where(complement, tf.ones_like(mirrored) - mirrored, mirrored)
    return image, tf.where(flipped, mirrored, labels)


def _augment(image: tf.Tensor, seed: tf.Tensor, config: AugmentConfig) -> tuple[tf.Tensor, tf.Tensor]:
    """The augmented image and whether it was flipped."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=5)
    if config.max_rotation > 0:
        limit = config.max_rotation * math.pi / 180.0
        angle = tf.random.stateless_uniform([], seeds[0], -limit, limit)
        image = rotate(image, angle)
    flipped = tf.constant(False)
    if config.flip:
        flipped = tf.random.stateless_uniform([], seeds[1]) < 0.5
        image = tf.cond(flipped, lambda: tf.image.flip_left_right(image), lambda: image)
    if config.contrast > 0:
        factor = tf.random.stateless_uniform([], seeds[2], 1 - config.contrast, 1 + config.contrast)
        mean = tf.reduce_mean(image, axis=[0, 1], keepdims=True)
        image = (image - mean) * factor + mean
    if config.brightness > 0:
        delta = config.brightness * VALUE_RANGE
        image = image + tf.random.stateless_uniform([], seeds[3], -delta, delta)
    if config.noise_sigma > 0:
        noise = tf.random.stateless_normal(tf.shape(image), seeds[4])
        image = image + noise * (config.noise_sigma * VALUE_RANGE)
    return tf.clip_by_value(image, 0.0, VALUE_RANGE), flipped
