"""Pairwise distances and masks of a batch for the metric losses (static shapes, keras.ops only)."""

from __future__ import annotations

from keras import ops

from kerasface.losses.margin import l2_normalize

DISTANCES = ("l2", "squared_l2", "cosine")


def pairwise_distance(embeddings, distance="l2"):
    """(B, B) distances between the L2-normalised embeddings, zero on the diagonal.

    "squared_l2": ``||a - b||^2``; "l2": its square root (zero, with a zero gradient, where the
    squared distance is 0); "cosine": ``1 - cos``.
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance {distance!r} is not one of {', '.join(DISTANCES)}")
    x = l2_normalize(ops.cast(embeddings, "float32"), axis=-1)
    dot = ops.matmul(x, ops.transpose(x))
    off_diagonal = 1.0 - ops.cast(same_index(x), "float32")
    if distance == "cosine":
        return (1.0 - dot) * off_diagonal
    squared_norms = ops.sum(ops.square(x), axis=-1)
    squared = ops.expand_dims(squared_norms, 1) + ops.expand_dims(squared_norms, 0) - 2.0 * dot
    squared = ops.maximum(squared, 0.0) * off_diagonal
    if distance == "squared_l2":
        return squared
    positive = squared > 0.0
    return ops.where(positive, ops.sqrt(ops.where(positive, squared, 1.0)), 0.0)


def batch_index(x):
    """0, 1, ..., B - 1 along the first axis of x (works with a dynamic batch size)."""
    return ops.cumsum(ops.ones_like(x[:, 0], dtype="int32")) - 1


def same_index(x):
    """(B, B) boolean identity matrix."""
    index = batch_index(x)
    return ops.equal(ops.expand_dims(index, 1), ops.expand_dims(index, 0))


def label_masks(labels, embeddings):
    """(same, different): (B, B) booleans, ``same`` without the diagonal."""
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    equal = ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(labels, 0))
    return ops.logical_and(equal, ops.logical_not(same_index(embeddings))), ops.logical_not(equal)


def masked_maximum(data, mask, axis):
    """Max of data where mask (TF Addons' trick: the row minimum where mask is empty)."""
    minimum = ops.min(data, axis=axis, keepdims=True)
    return ops.max((data - minimum) * mask, axis=axis, keepdims=True) + minimum


def masked_minimum(data, mask, axis):
    """Min of data where mask (the row maximum where mask is empty)."""
    maximum = ops.max(data, axis=axis, keepdims=True)
    return ops.min((data - maximum) * mask, axis=axis, keepdims=True) + maximum
