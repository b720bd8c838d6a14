"""Multi-position crops: three views of one face for a three-branch model.

Horizontal crops sit left, centre and right at the vertical centre; vertical crops sit top,
centre and bottom at the horizontal centre. Each crop is ``size`` x ``size``; the image is first
resized to ``base_size(size, fraction)`` so that a crop covers ``fraction`` of each side.
"""

from __future__ import annotations

import tensorflow as tf

VIEW_MODES = ("single", "crops-horizontal", "crops-vertical")
VIEW_NAMES = {
    "single": ("image",),
    "crops-horizontal": ("left", "center", "right"),
    "crops-vertical": ("top", "center", "bottom"),
}


def crop_offsets(length: int, size: int) -> tuple[int, int, int]:
    """Start offsets of the first, centre and last crop along one axis."""
    if size > length:
        raise ValueError(f"crop size {size} exceeds image side {length}")
    return 0, (length - size) // 2, length - size


def multi_crop(image: tf.Tensor, size: int, positions: str = "horizontal") -> tuple[tf.Tensor, ...]:
    """Three ``size`` x ``size`` crops of a statically shaped (..., H, W, C) image or batch."""
    height, width = int(image.shape[-3]), int(image.shape[-2])
    ys, xs = crop_offsets(height, size), crop_offsets(width, size)
    if positions == "horizontal":
        corners = [(ys[1], x) for x in xs]
    elif positions == "vertical":
        corners = [(y, xs[1]) for y in ys]
    else:
        raise ValueError(f"positions must be 'horizontal' or 'vertical', got {positions!r}")
    return tuple(image[..., y : y + size, x : x + size, :] for y, x in corners)


def make_views(image: tf.Tensor, size: int, mode: str):
    """One view (centre crop, or the image itself when it is already ``size``) or three crops,
    of one (H, W, C) image or a (B, H, W, C) batch."""
    if mode == "single":
        return tf.image.resize_with_crop_or_pad(image, size, size)
    if mode in ("crops-horizontal", "crops-vertical"):
        return multi_crop(image, size, mode.split("-")[1])
    raise ValueError(f"unknown view mode {mode!r}; choose one of {VIEW_MODES}")
