"""Views: what each branch of a model sees of one sample.

Horizontal crops sit left, centre and right at the vertical centre; vertical crops sit top,
centre and bottom at the horizontal centre. Each crop is ``size`` x ``size``; the image is first
resized to ``base_size(size, fraction)`` so that a crop covers ``fraction`` of each side.
Modalities are the three ``size`` x ``size`` panels of a ``size`` x ``3 size`` tile, side by side
(albedo | normal map | depth, as ``pipelines/photometric_stereo.py`` writes them).
"""

from __future__ import annotations

import tensorflow as tf

VIEW_MODES = ("single", "crops-horizontal", "crops-vertical", "modalities")
VIEW_NAMES = {
    "single": ("image",),
    "crops-horizontal": ("left", "center", "right"),
    "crops-vertical": ("top", "center", "bottom"),
    "modalities": ("albedo", "normal", "depth"),
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


def split_panels(tile: tf.Tensor, size: int, count: int = 3) -> tuple[tf.Tensor, ...]:
    """The ``count`` side-by-side ``size`` x ``size`` panels of a (..., size, count * size, C) tile."""
    if tuple(tile.shape[-3:-1]) != (size, count * size):
        raise ValueError(f"a tile of {count} panels of {size}x{size} must be {size}x{count * size}, "
                         f"got {tuple(tile.shape[-3:-1])}")
    return tuple(tile[..., :, i * size : (i + 1) * size, :] for i in range(count))


def make_views(image: tf.Tensor, size: int, mode: str):
    """One view (centre crop, or the image itself when it is already ``size``), three crops or
    three modality panels, of one (H, W, C) image or a (B, H, W, C) batch."""
    if mode == "single":
        return tf.image.resize_with_crop_or_pad(image, size, size)
    if mode in ("crops-horizontal", "crops-vertical"):
        return multi_crop(image, size, mode.split("-")[1])
    if mode == "modalities":
        return split_panels(image, size)
    raise ValueError(f"unknown view mode {mode!r}; choose one of {VIEW_MODES}")
