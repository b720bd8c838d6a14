"""Linear probes: how much attribute information a frozen embedding still carries.

A fresh logistic regression per attribute column is fitted on the (L2-normalised, standardised)
embeddings of one set and scored by its AUC on another (``column_auc``: one-vs-rest macro for
columns of more than two values). Samples whose value of the column is missing (NaN targets)
are left out of both. An embedding that hides an attribute gives a probe AUC near 0.5.
"""

from __future__ import annotations

import math

import numpy as np

from kerasface.data.spec import column_slices
from kerasface.eval.attributes import column_auc
from kerasface.eval.verification import l2_normalize


def probe_column(train_x, train_y, test_x, test_y, values: list[str], seed: int = 0, C: float = 1.0) -> float:
    """Test AUC of a logistic-regression probe of one column (targets ``(N, 1)`` 0/1 or
    ``(N, C)`` one-hot, NaN where missing); NaN when the training targets hold one value."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    train_y, test_y = np.asarray(train_y, np.float64), np.asarray(test_y, np.float64)
    keep = ~np.isnan(train_y).any(axis=1)
    x, y = np.asarray(train_x)[keep], train_y[keep]
    classes = y[:, 0].astype(int) if y.shape[1] == 1 else np.argmax(y, axis=1)
    if len(np.unique(classes)) < 2:
        return math.nan
    scaler = StandardScaler().fit(x)
    probe = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(scaler.transform(x), classes)
    proba = probe.predict_proba(scaler.transform(np.asarray(test_x)))
    scores = np.zeros((len(proba), max(2, len(values))))
    scores[:, probe.classes_] = proba
    scores = scores[:, 1:2] if test_y.shape[1] == 1 else scores
    return column_auc(test_y, scores, values)


def linear_probe(train_embeddings, train_labels, test_embeddings, test_labels,
                 label_columns: dict[str, list[str]], seed: int = 0) -> dict[str, float]:
    """Per label column, the test AUC of a linear probe trained on the training embeddings
    (label matrices in ``kerasface.data.spec``'s layout)."""
    train_x, test_x = l2_normalize(train_embeddings), l2_normalize(test_embeddings)
    out = {}
    for column, s in column_slices(label_columns).items():
        out[column] = probe_column(train_x, np.asarray(train_labels)[:, s], test_x, np.asarray(test_labels)[:, s],
                                   label_columns[column], seed=seed)
    return out
