"""Per-label ROC curves and AUC on the test split (sklearn ``roc_curve`` / ``roc_auc_score``).

AUC = P(score of a random positive > score of a random negative), ties counting 1/2.
Labels whose test targets are not usable (one class only, not 0/1, non-finite scores)
are skipped with the reason, never raised on: the report comes at the end of a long run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np


@dataclasses.dataclass
class LabelROC:
    fpr: np.ndarray
    tpr: np.ndarray
    auc: float
    positives: int
    negatives: int


def _skip_reason(y_true: np.ndarray, y_score: np.ndarray) -> str | None:
    if y_true.size == 0:
        return "no samples"
    if not np.all(np.isfinite(y_score)):
        return "y_score has non-finite values"
    classes = np.unique(y_true)
    if not np.all(np.isin(classes, (0, 1))):
        return f"y_true is not 0/1 (values {classes[:5].tolist()})"
    if classes.size < 2:
        return f"one class only in y_true (all {int(classes[0])}, {y_true.size} samples)"
    return None


def label_rocs(
    roc: Mapping[str, tuple[np.ndarray, np.ndarray]] | None,
) -> tuple[dict[str, LabelROC], dict[str, str]]:
    """Per label name the ROC curve and AUC; and per skipped label, why it was skipped."""
    from sklearn.metrics import roc_auc_score, roc_curve

    curves, skipped = {}, {}
    for label, pair in (roc or {}).items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"roc[{label!r}] must be a (y_true, y_score) pair")
        y_true = np.asarray(pair[0], dtype=np.float64).ravel()
        y_score = np.asarray(pair[1], dtype=np.float64).ravel()
        if y_true.shape != y_score.shape:
            raise ValueError(
                f"roc[{label!r}]: y_true has {y_true.size} values but y_score has {y_score.size}"
            )
        reason = _skip_reason(y_true, y_score)
        if reason:
            skipped[str(label)] = reason
            continue
        fpr, tpr, _ = roc_curve(y_true, y_score)
        positives = int(y_true.sum())
        curves[str(label)] = LabelROC(
            fpr, tpr, float(roc_auc_score(y_true, y_score)), positives, y_true.size - positives
        )
    return curves, skipped
