"""Concept erasure: the closed-form adversary that leaves no linear read-out of the chosen
attributes in an embedding (LEACE, Belrose et al., 2023, "LEACE: Perfect linear concept erasure
in closed form", arXiv:2306.03819).

No linear predictor of an attribute ``y`` from ``u`` does better than a constant if and only if
their cross-covariance is zero (their Theorem 3.1). The least-squares eraser that gets there,
fitted on the embeddings ``u`` (L2-normalised) of a training set:

    r(u) = u - W+ P W (u - mean(u))

``W = cov(u, u)^(-1/2)`` (the whitening, on the eigen-directions whose variance is above
``tolerance`` times the largest), ``W+`` its pseudo-inverse, ``P`` the orthogonal projection onto
the column space of ``W cov(u, y)``, ``y`` the attributes' targets side by side
(``kerasface.data.spec``'s layout; each column's cross-covariance over the samples with a value).
It takes out one direction per target column at most, so the rest of the embedding (the identity)
is changed as little as a linear map can.

    eraser = ConceptErasure()                       # the identity map until fitted
    eraser.set_eraser(*fit_concept_eraser(train_embeddings, [pose_targets, emotion_targets]))
    erased = eraser(embeddings)
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

TOLERANCE = 1e-6


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cross_covariance(u: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """cov(u, y) (D, C) over the samples whose targets hold no NaN (zeros when fewer than two)."""
    targets = np.asarray(targets, np.float64)
    keep = ~np.isnan(targets).any(axis=1)
    if keep.sum() < 2:
        return np.zeros((u.shape[1], targets.shape[1]))
    uk, yk = u[keep] - u[keep].mean(0), targets[keep] - targets[keep].mean(0)
    return uk.T @ yk / len(uk)


def fit_concept_eraser(embeddings, targets: list, tolerance: float = TOLERANCE) -> tuple[np.ndarray, np.ndarray]:
    """``(mean (D,), matrix (D, D))`` of the LEACE eraser of the attributes ``targets`` (one
    ``(N, C)`` target matrix per attribute, NaN where missing) from ``embeddings`` (N, D), for
    ``r = u - (u - mean) @ matrix`` on L2-normalised rows ``u``; in float64."""
    u = unit_rows(embeddings)
    mean = u.mean(0)
    centred = u - mean
    values, vectors = np.linalg.eigh(centred.T @ centred / len(u))
    keep = values > tolerance * max(values.max(), 1e-30)
    vectors, values = vectors[:, keep], values[keep]
    whiten = vectors @ np.diag(values ** -0.5) @ vectors.T
    unwhiten = vectors @ np.diag(values ** 0.5) @ vectors.T
    cross = np.concatenate([cross_covariance(u, t) for t in targets], axis=1) if targets else np.zeros((u.shape[1], 0))
    basis, singular, _ = np.linalg.svd(whiten @ cross, full_matrices=False)
    rank = int(np.sum(singular > tolerance * max(singular.max(initial=0.0), 1e-30))) if singular.size else 0
    projection = basis[:, :rank] @ basis[:, :rank].T
    # column form r = u - W+ P W (u - mean); for rows the transpose, W P W+ (all three symmetric)
    return mean, whiten @ projection @ unwhiten


@keras.saving.register_keras_serializable(package="kerasface")
class ConceptErasure(keras.layers.Layer):
    """``x -> u - (u - mean) @ matrix``, ``u = x / |x|``: the LEACE eraser (see the module) as a
    layer, its ``mean`` and ``matrix`` non-trainable weights saved with the model; the
    L2-normalisation alone until ``set_eraser`` is given a fitted one."""

    def build(self, input_shape):
        dim = int(input_shape[-1])
        self.mean = self.add_weight(shape=(dim,), initializer="zeros", trainable=False, dtype="float32", name="mean")
        self.matrix = self.add_weight(shape=(dim, dim), initializer="zeros", trainable=False, dtype="float32",
                                      name="matrix")

    def set_eraser(self, mean, matrix) -> None:
        if not self.built:
            self.build((None, len(mean)))
        self.mean.assign(np.asarray(mean, np.float32))
        self.matrix.assign(np.asarray(matrix, np.float32))

    def call(self, x):
        x = ops.cast(x, "float32")
        u = x / ops.maximum(ops.norm(x, axis=-1, keepdims=True), 1e-12)
        return u - ops.matmul(u - self.mean, self.matrix)

    def compute_output_shape(self, input_shape):
        return input_shape
