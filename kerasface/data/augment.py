"""Training augmentation inside ``tf.data.map``: rotation, flip, brightness, contrast, noise.

Each element's parameters (angle, flip, contrast, brightness) are drawn statelessly under a
seed of its own (``draw_parameters``); ``augment_batch`` applies them to a whole batch at once
(rotation and flip in one resampling) and draws the noise per batch. A pipeline is reproducible
under its seed whatever the parallelism, and differs from epoch to epoch.
Images are float32 in [0, 255] and are clipped back to that range.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf

from kerasface.data.spec import LabelMirror

VALUE_RANGE = 255.0
TINY = float(np.finfo(np.float32).tiny)


@dataclasses.dataclass
class AugmentConfig:
    """noise_sigma: std of additive gaussian noise as a fraction of the value range (5%).
    max_rotation: rotation angle drawn uniformly in [-max, max] degrees (the paper used 0-50).
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


def rotation_transform(angle: tf.Tensor, height, width) -> tf.Tensor:
    """Projective transform (output -> input coordinates) of a rotation by ``angle`` radians
    (counter-clockwise on screen) about the image centre, as ``ImageProjectiveTransformV3`` reads it;
    ``angle`` a scalar or a vector (then one transform per row)."""
    cos, sin = tf.cos(angle), tf.sin(angle)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    x_offset = cx - (cos * cx - sin * cy)
    y_offset = cy - (sin * cx + cos * cy)
    zero = tf.zeros_like(cos)
    return tf.stack([cos, -sin, x_offset, sin, cos, y_offset, zero, zero], axis=-1)


def _transform(images: tf.Tensor, transforms: tf.Tensor, window: tuple[int, int, int, int] | None,
               fill_mode: str = "REFLECT") -> tf.Tensor:
    """``ImageProjectiveTransformV3`` of a (B, H, W, C) batch, bilinear; with ``window``
    ``(top, left, height, width)`` only that part of the output is computed."""
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    if window is not None:
        top, left, height, width = window
        a0, a1, a2, b0, b1, b2, c0, c1 = tf.unstack(transforms, axis=-1)
        transforms = tf.stack([a0, a1, a2 + a0 * left + a1 * top, b0, b1, b2 + b0 * left + b1 * top, c0, c1], -1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.stack([height, width]), fill_value=0.0,
        interpolation="BILINEAR", fill_mode=fill_mode)


def rotate(image: tf.Tensor, angle: tf.Tensor, fill_mode: str = "REFLECT") -> tf.Tensor:
    height, width = tf.cast(tf.shape(image)[0], tf.float32), tf.cast(tf.shape(image)[1], tf.float32)
    transform = rotation_transform(tf.cast(angle, tf.float32), height, width)
    return _transform(image[None], transform[None], None, fill_mode)[0]


def draw_parameters(seed: tf.Tensor, config: AugmentConfig) -> dict[str, tf.Tensor]:
    """One element's random draws under its stateless ``seed`` (shape [2] int): rotation angle
    (radians), flip, contrast factor, brightness shift and the seed of its noise."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=5)
    limit = config.max_rotation * math.pi / 180.0
    delta = config.brightness * VALUE_RANGE
    return {
        "angle": tf.random.stateless_uniform([], seeds[0], -limit, limit) if limit else tf.constant(0.0),
        "flip": tf.random.stateless_uniform([], seeds[1]) < 0.5 if config.flip else tf.constant(False),
        "contrast": tf.random.stateless_uniform([], seeds[2], 1 - config.contrast, 1 + config.contrast),
        "brightness": tf.random.stateless_uniform([], seeds[3], -delta, delta) if delta else tf.constant(0.0),
        "noise_seed": seeds[4],
    }


def gaussian_noise(shape: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Standard normal values of ``shape`` under the stateless ``seed``, by the Box-Muller
    transform of uniform pairs (on CPU about half the cost of ``tf.random.stateless_normal``)."""
    size = tf.reduce_prod(shape)
    uniform = tf.random.stateless_uniform(tf.stack([2, (size + 1) // 2]), seed, minval=TINY, maxval=1.0)
    radius = tf.sqrt(-2.0 * tf.math.log(uniform[0]))
    angle = (2.0 * math.pi) * uniform[1]
    return tf.reshape(tf.concat([radius * tf.cos(angle), radius * tf.sin(angle)], 0)[:size], shape)


def augment_batch(images: tf.Tensor, params: dict[str, tf.Tensor], config: AugmentConfig,
                  window: tuple[int, int, int, int] | None = None) -> tf.Tensor:
    """Apply ``config`` to a (B, H, W, 3) float batch with the per-element ``params`` of
    ``draw_parameters`` (stacked): rotation about the centre and flip in one resampling, contrast,
    brightness, then gaussian noise drawn under the first element's noise seed, clipped.
    ``window`` ``(top, left, height, width)``: compute only that part of the result (the part the
    views cut), the same pixels as cropping the whole augmented image."""
    shape = tf.shape(images)
    height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    flip = params["flip"][:, None, None, None]
    if config.max_rotation > 0:
        transforms = rotation_transform(params["angle"], height, width)
        # flipped output x reads the rotation's input at x' = width - 1 - x
        a0, a1, a2, b0, b1, b2, c0, c1 = tf.unstack(transforms, axis=-1)
        mirrored = tf.stack([-a0, a1, a2 + a0 * (width - 1), -b0, b1, b2 + b0 * (width - 1), c0, c1], -1)
        images = _transform(images, tf.where(params["flip"][:, None], mirrored, transforms), window)
    else:
        if config.flip:
            images = tf.where(flip, tf.reverse(images, axis=[2]), images)
        if window is not None:
            top, left, h, w = window
            images = images[:, top:top + h, left:left + w]
    shift = params["brightness"][:, None, None, None]
    if config.contrast > 0:  # (image - mean) * factor + mean + shift
        factor = params["contrast"][:, None, None, None]
        images = images * factor + (tf.reduce_mean(images, axis=[1, 2], keepdims=True) * (1.0 - factor) + shift)
    elif config.brightness > 0:
        images = images + shift
    if config.noise_sigma > 0:
        noise = gaussian_noise(tf.shape(images), params["noise_seed"][0])
        images = images + noise * (config.noise_sigma * VALUE_RANGE)
    return tf.raw_ops.ClipByValue(t=images, clip_value_min=0.0, clip_value_max=VALUE_RANGE)


def augment_image(image: tf.Tensor, seed: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """Apply ``config`` to one float image under the stateless ``seed`` (shape [2] int)."""
    params = {k: v[None] for k, v in draw_parameters(seed, config).items()}
    return augment_batch(image[None], params, config)[0]


def mirror_labels(labels: tf.Tensor, flipped: tf.Tensor, mirror: LabelMirror | None) -> tf.Tensor:
    """``labels`` as they read for the flipped image when ``flipped``: labels that name a side
    follow it (``mirror``, see ``kerasface.data.spec.label_mirror``)."""
    if mirror is None:
        return labels
    permutation = tf.constant(mirror.permutation, tf.int32)
    complement = tf.constant(mirror.complement)
    mirrored = tf.gather(labels, permutation, axis=-1)
    mirrored = tf.where(complement, tf.ones_like(mirrored) - mirrored, mirrored)
    return tf.where(flipped, mirrored, labels)
