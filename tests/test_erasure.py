"""Concept erasure (``kerasface.models.erasure``): the fitted LEACE eraser leaves no cross-covariance
with the erased attributes (float64, missing values left out), takes out one direction per
target column and is a projection; a fresh probe no longer reads an erased attribute on held-out
samples and still reads one that was not erased; the layer applies it and saves with the model."""

import keras
import numpy as np
import pytest

from kerasface.eval.probe import probe_column
from kerasface.models.erasure import ConceptErasure, fit_concept_eraser, unit_rows


def faces(n=1200, dim=12, seed=0):
    """Embeddings that carry pose (3 values, along 2 directions of small variance among large ones)
    and gender (its own direction), as one-hot / 0-1 targets; 5% of the pose values missing."""
    rng = np.random.default_rng(seed)
    pose = rng.integers(0, 3, n)
    gender = rng.integers(0, 2, n)
    x = rng.normal(size=(n, dim))
    x[:, 0] += 1.0 * (pose == 1) - 1.0 * (pose == 2)
    x[:, 1] = 0.05 * rng.normal(size=n) + 0.1 * (pose == 0)
    x[:, 2] += 3.0 * gender
    x = x @ np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    pose_targets = np.eye(3)[pose]
    pose_targets[rng.random(n) < 0.05] = np.nan
    return x, pose_targets, gender[:, None].astype(float)


def erase(x, mean, matrix):
    u = unit_rows(x)
    return u - (u - mean) @ matrix


def covariance(u, targets):
    keep = ~np.isnan(targets).any(axis=1)
    return (u[keep] - u[keep].mean(0)).T @ (targets[keep] - targets[keep].mean(0)) / keep.sum()


def test_erased_embeddings_have_no_cross_covariance_with_the_attribute():
    x, pose, gender = faces()
    mean, matrix = fit_concept_eraser(x, [pose])
    erased = erase(x, mean, matrix)
    assert np.abs(covariance(unit_rows(x), pose)).max() > 1e-2
    assert np.abs(covariance(erased, pose)).max() < 1e-10
    assert np.linalg.matrix_rank(matrix, tol=1e-8) == 2  # one direction per one-hot column, less the one they sum to
    np.testing.assert_allclose(erased - (erased - mean) @ matrix, erased, atol=1e-10)  # erasing again changes nothing
    assert np.abs(covariance(erased, gender)).max() > 0.5 * np.abs(covariance(unit_rows(x), gender)).max()
    # two attributes at once
    mean2, matrix2 = fit_concept_eraser(x, [pose, gender])
    both = erase(x, mean2, matrix2)
    assert max(np.abs(covariance(both, pose)).max(), np.abs(covariance(both, gender)).max()) < 1e-10


def test_a_fresh_probe_no_longer_reads_the_erased_attribute_on_held_out_samples():
    x, pose, gender = faces(n=2400)
    train, test = slice(0, 1200), slice(1200, None)
    mean, matrix = fit_concept_eraser(x[train], [pose[train]])
    values = ["frontal", "left", "right"]
    plain = probe_column(unit_rows(x[train]), pose[train], unit_rows(x[test]), pose[test], values)
    erased_train, erased_test = erase(x[train], mean, matrix), erase(x[test], mean, matrix)
    erased = probe_column(erased_train, pose[train], erased_test, pose[test], values)
    kept = probe_column(erased_train, gender[train], erased_test, gender[test], ["f", "m"])
    assert plain > 0.9 and erased < 0.6 and kept > 0.9, (plain, erased, kept)


@pytest.mark.backend
def test_the_layer_applies_the_fitted_eraser_and_saves_with_the_model(tmp_path):
    x, pose, _ = faces(n=300)
    mean, matrix = fit_concept_eraser(x, [pose])
    inputs = keras.Input((x.shape[1],))
    layer = ConceptErasure(name="concept_erasure")
    model = keras.Model(inputs, layer(inputs))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x[:8].astype("float32"))), unit_rows(x[:8]),
                               atol=1e-6)  # not fitted: the L2-normalisation alone
    layer.set_eraser(mean, matrix)
    got = keras.ops.convert_to_numpy(model(x.astype("float32")))
    np.testing.assert_allclose(got, erase(x, mean, matrix), atol=1e-5)
    model.save(tmp_path / "eraser.keras")
    loaded = keras.saving.load_model(tmp_path / "eraser.keras", safe_mode=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x.astype("float32"))), got, atol=1e-6)
