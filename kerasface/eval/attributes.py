"""Attribute metrics of a multi-label model over one split.

The label vector follows ``kerasface.data.spec``: a two-value column is one 0/1 output, a column
of C > 2 values is C one-hot outputs (``column_slices``). Reported:

- ``accuracy``: binary accuracy over every output at ``threshold`` (Keras ``BinaryAccuracy``);
- ``label_auc``: ROC AUC of each output (``kerasface.report.roc``; an output whose targets hold
  one class is skipped, with the reason);
- ``column_accuracy``: per column, thresholded accuracy (two values) or argmax accuracy (C values);
- ``column_auc``: per column, the output's AUC (two values) or the one-vs-rest macro AUC: the
  mean of AUC(value vs the rest) over the values that occur in some but not all targets (equal to
  ``roc_auc_score(multi_class="ovr", average="macro")`` on softmax scores when every value occurs;
  the values left out are in ``skipped`` with the reason).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kerasface.errors import BadInputError


@dataclasses.dataclass
class AttributeMetrics:
    accuracy: float
    label_auc: dict[str, float]
    column_accuracy: dict[str, float]
    column_auc: dict[str, float]
    skipped: dict[str, str]

    @property
    def mean_auc(self) -> float | None:
        """Mean of the column AUCs (None when none could be measured)."""
        return float(np.mean(list(self.column_auc.values()))) if self.column_auc else None

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "mean_auc": self.mean_auc}


def attribute_metrics(y_true, y_score, label_columns: dict[str, list[str]] | None = None,
                      threshold: float = 0.5) -> AttributeMetrics:
    """Metrics of scores ``y_score`` (N, L) against 0/1 targets ``y_true`` (N, L); without
    ``label_columns`` every output is its own two-value column ``label_<j>``."""
    from kerasface.data.spec import column_slices, label_names
    from kerasface.report.roc import label_rocs

    y_true = np.asarray(y_true, dtype=np.float64)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.ndim == 1:
        y_true, y_score = y_true[:, None], y_score.reshape(len(y_score), -1)
    if y_true.shape != y_score.shape or y_true.ndim != 2:
        raise BadInputError(f"y_true {y_true.shape} and y_score {y_score.shape}: expected two (samples, labels) arrays")
    if label_columns is None:
        label_columns = {f"label_{j}": ["0", "1"] for j in range(y_true.shape[1])}
    names = label_names(label_columns)
    slices = column_slices(label_columns)
    if len(names) != y_true.shape[1]:
        raise BadInputError(f"the label columns give {len(names)} outputs but the arrays have {y_true.shape[1]}")

    curves, skipped = label_rocs({name: (y_true[:, j], y_score[:, j]) for j, name in enumerate(names)})
    label_auc = {name: curves[name].auc for name in names if name in curves}
    column_accuracy, column_auc = {}, {}
    for column, s in slices.items():
        truth, scores = y_true[:, s], y_score[:, s]
        if truth.shape[1] == 1:
            column_accuracy[column] = float(np.mean((scores[:, 0] >= threshold) == (truth[:, 0] >= 0.5)))
            name = names[s.start]
            if name in label_auc:
                column_auc[column] = label_auc[name]
            continue
        column_accuracy[column] = float(np.mean(np.argmax(scores, 1) == np.argmax(truth, 1)))
        measured = [label_auc[names[j]] for j in range(s.start, s.stop) if names[j] in label_auc]
        if measured:
            column_auc[column] = float(np.mean(measured))
        else:
            skipped[column] = "no value of the column has both positive and negative samples"
    accuracy = float(np.mean((y_score >= threshold) == (y_true >= 0.5)))
    return AttributeMetrics(accuracy, label_auc, column_accuracy, column_auc, skipped)


def column_auc(y_true, y_score, values: list[str]) -> float:
    """AUC of one attribute column of ``values`` (its outputs' targets and scores, (N, 1) or
    (N, C)) over the samples that have a value (rows without NaN targets); one-vs-rest macro for
    C > 2 values; NaN when no AUC can be measured."""
    import math

    y_true = np.asarray(y_true, dtype=np.float64)
    y_score = np.asarray(y_score, dtype=np.float64)
    keep = ~np.isnan(y_true).any(axis=1)
    if keep.sum() < 2:
        return math.nan
    return attribute_metrics(y_true[keep], y_score[keep], {"column": list(values)}).column_auc.get("column", math.nan)


def within_identity_variation(identity: np.ndarray, values: np.ndarray) -> float:
    """The share of an attribute's variation that lies within identities, in [0, 1]:

        sum_i n_i G_i / (N G),   G = n / (n - 1) * (1 - sum_v p_v^2)   (unbiased Gini impurity)

    over the identities i with n_i >= 2 labelled images (G_i of their values, G of all N of
    them). 0: the value is the identity's own (gender); about 1: it varies within an identity as
    freely as across the data (pose, expression). ``values``: one value index per sample, -1
    where missing. NaN when no identity has two labelled images or the attribute never varies."""
    identity, values = np.asarray(identity), np.asarray(values)
    keep = values >= 0
    identity, values = identity[keep], values[keep]
    _, groups = np.unique(identity, return_inverse=True)
    counts = np.bincount(groups)
    multi = counts[groups] >= 2
    identity, groups, values = identity[multi], groups[multi], values[multi]
    n = len(values)
    if n < 2:
        return float("nan")

    def gini(counts_by_value: np.ndarray) -> np.ndarray:
        total = counts_by_value.sum(axis=-1)
        purity = (counts_by_value * (counts_by_value - 1)).sum(axis=-1) / (total * (total - 1))
        return 1.0 - purity

    overall = gini(np.bincount(values).astype(np.float64))
    if overall <= 0:
        return float("nan")
    table = np.zeros((groups.max() + 1, values.max() + 1))
    np.add.at(table, (groups, values), 1.0)
    sizes = table.sum(axis=1)
    present = sizes >= 2
    within = float((sizes[present] * gini(table[present])).sum() / sizes[present].sum())
    return float(min(1.0, within / overall))
