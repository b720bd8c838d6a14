"""Attribute metrics: accuracy, per-label AUC, one-vs-rest macro AUC of multi-class columns."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from kerasface.errors import BadInputError
from kerasface.eval.attributes import attribute_metrics


def test_attribute_metrics_binary_multiclass_and_skipped():
    rng = np.random.default_rng(0)
    n = 300
    columns = {"gender": ["f", "m"], "pose": ["frontal", "left", "right"], "glasses": ["no", "yes"]}
    gender = rng.integers(0, 2, n)
    pose = rng.integers(0, 3, n)
    y_true = np.column_stack([gender, np.eye(3)[pose], np.zeros(n)])
    logits = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[pose]
    softmax = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    gender_score = np.clip(0.5 * gender + rng.uniform(0, 0.6, n), 0, 1)
    y_score = np.column_stack([gender_score, softmax, rng.uniform(0, 1, n)])
    metrics = attribute_metrics(y_true, y_score, columns)
    assert metrics.column_auc["gender"] == pytest.approx(roc_auc_score(gender, gender_score))
    assert metrics.column_auc["pose"] == pytest.approx(roc_auc_score(pose, softmax, multi_class="ovr"))
    assert metrics.column_accuracy["pose"] == pytest.approx(np.mean(softmax.argmax(1) == pose))
    assert metrics.column_accuracy["gender"] == pytest.approx(np.mean((gender_score >= 0.5) == gender))
    assert metrics.accuracy == pytest.approx(np.mean((y_score >= 0.5) == (y_true >= 0.5)))
    assert "glasses" not in metrics.column_auc and "glasses=yes" not in metrics.label_auc
    assert "one class only" in metrics.skipped["glasses=yes"]
    assert set(metrics.label_auc) == {"gender=m", "pose=frontal", "pose=left", "pose=right"}
    assert metrics.mean_auc == pytest.approx(np.mean([metrics.column_auc["gender"], metrics.column_auc["pose"]]))
    with pytest.raises(BadInputError, match="give 5 outputs but the arrays have 4"):
        attribute_metrics(y_true[:, :4], y_score[:, :4], columns)
