"""Face verification of embedding pairs: the LFW 10-fold accuracy, ROC AUC, TAR@FAR and EER.

Accuracy is insightface's (``recognition/arcface_torch/eval/verification.py``, ``calculate_roc``):
embeddings L2-normalised, squared euclidean distance ``d = ||e1 - e2||^2`` (in [0, 4]), a pair
predicted "same" when ``d < t``, thresholds ``t`` in ``np.arange(0, 4, 0.01)``; for each fold (in
file order, no shuffling) the threshold with the best accuracy on the other folds (the first one on
ties, as ``np.argmax``) is applied to the held-out fold; accuracy and its (population) std are taken
over the folds.

The ROC uses the cosine similarity of the pairs: TAR@FAR is the true-accept rate at the loosest
threshold whose false-accept rate is <= FAR, reported only for FARs that the negatives can
measure (``negatives >= 1 / FAR``); EER is where FAR = 1 - TAR (linear interpolation between ROC
points). ``auc_euclidean`` scores pairs by ``-||e1 - e2||`` on the embeddings as given, so it
differs from ``auc_cosine`` only for embeddings that are not unit vectors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from kerasface.errors import BadInputError

THRESHOLDS = np.arange(0, 4, 0.01)
FAR_TARGETS = (1e-1, 1e-2, 1e-3, 1e-4)


@dataclasses.dataclass
class VerificationResult:
    accuracy: float
    accuracy_std: float
    threshold: float
    auc_cosine: float
    auc_euclidean: float
    tar_at_far: dict[str, float]
    eer: float
    num_pairs: int
    num_positive: int
    num_negative: int
    fold_accuracies: list[float]
    fpr: np.ndarray = dataclasses.field(repr=False, default=None)
    tpr: np.ndarray = dataclasses.field(repr=False, default=None)

    def to_dict(self) -> dict:
        """The figures as plain JSON values (without the ROC curve)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("fpr", "tpr")}
        out["tar_at_far"] = dict(self.tar_at_far)
        out["fold_accuracies"] = [float(a) for a in self.fold_accuracies]
        return out


def far_key(far: float) -> str:
    """``1e-3`` for 0.001: the name of a FAR in dicts and metric names."""
    return f"{far:.0e}".replace("e-0", "e-").replace("e+00", "")


def l2_normalize(embeddings: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (zero rows kept), as ``sklearn.preprocessing.normalize``."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return embeddings / norms


def fold_ids(folds, num_pairs: int) -> np.ndarray:
    """Per-pair fold ids from a fold count (contiguous folds, as ``KFold(folds, shuffle=False)``)
    or from per-pair ids."""
    from kerasface.eval.pairs import contiguous_folds

    if np.isscalar(folds):
        return contiguous_folds(num_pairs, int(folds))
    ids = np.asarray(folds)
    if ids.shape != (num_pairs,):
        raise BadInputError(f"folds has shape {ids.shape}; expected one fold id per pair ({num_pairs},)")
    return ids


def protocol_accuracy(dist: np.ndarray, issame: np.ndarray, folds,
                      thresholds: np.ndarray = THRESHOLDS) -> tuple[np.ndarray, np.ndarray]:
    """Per fold: the held-out accuracy at the threshold chosen on the other folds, and that
    threshold (insightface ``calculate_roc``, counting ``d < t`` with one sorted search per fold)."""
    dist = np.asarray(dist, dtype=np.float64)
    issame = np.asarray(issame, dtype=bool)
    ids = fold_ids(folds, len(dist))
    names = np.unique(ids)
    if len(names) < 2:
        raise BadInputError("the verification protocol needs at least 2 folds")
    correct = np.empty((len(names), len(thresholds)), np.int64)
    sizes = np.empty(len(names), np.int64)
    for f, name in enumerate(names):
        in_fold = ids == name
        same = np.sort(dist[in_fold & issame])
        different = np.sort(dist[in_fold & ~issame])
        true_accepts = np.searchsorted(same, thresholds, side="left")
        true_rejects = len(different) - np.searchsorted(different, thresholds, side="left")
        correct[f] = true_accepts + true_rejects
        sizes[f] = in_fold.sum()
    train_correct = correct.sum(axis=0, keepdims=True) - correct
    best = np.argmax(train_correct, axis=1)
    return correct[np.arange(len(names)), best] / sizes, thresholds[best]


def _roc(issame: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(issame, scores, drop_intermediate=False)
    return fpr, tpr, float(roc_auc_score(issame, scores))


def tar_at_far(fpr: np.ndarray, tpr: np.ndarray, far: float) -> float:
    """TPR at the last ROC point (loosest threshold) whose FPR is <= ``far``."""
    return float(tpr[np.searchsorted(fpr, far, side="right") - 1])


def nearest_tar_at_far(fpr: np.ndarray, tpr: np.ndarray, far: float) -> float:
    """TPR of the ROC point whose FPR is nearest to ``far`` (of equally near points the last, of
    highest TPR): how insightface's IJB scripts (``ijb_11.py``) read TAR@FAR off ``roc_curve``."""
    distance = np.abs(np.asarray(fpr)[::-1] - far)
    return float(np.asarray(tpr)[::-1][np.argmin(distance)])


def equal_error_rate(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """The rate where FPR = FNR = 1 - TPR, interpolated between the two ROC points around it."""
    gap = (1.0 - tpr) - fpr
    i = int(np.argmax(gap <= 0))
    if i == 0:
        return float(fpr[0])
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def evaluate(emb1, emb2, issame, folds=10) -> VerificationResult:
    """Verification figures of pairs ``(emb1[k], emb2[k])`` labelled ``issame[k]``; ``folds``: a
    number of contiguous folds or one fold id per pair (``PairSet.folds``)."""
    raw1, raw2 = np.asarray(emb1, np.float64), np.asarray(emb2, np.float64)
    issame = np.asarray(issame).astype(bool)
    if raw1.ndim != 2 or raw1.shape != raw2.shape or len(issame) != len(raw1):
        raise BadInputError(
            f"embeddings {raw1.shape} and {raw2.shape} with {len(issame)} labels: expected two (pairs, dim) "
            "arrays and one label per pair")
    if not (np.all(np.isfinite(raw1)) and np.all(np.isfinite(raw2))):
        raise BadInputError("embeddings hold NaN or infinite values")
    positives = int(issame.sum())
    negatives = len(issame) - positives
    if not positives or not negatives:
        raise BadInputError(f"{positives} same and {negatives} different pairs: verification needs both")
    e1, e2 = l2_normalize(raw1), l2_normalize(raw2)
    dist = np.sum(np.square(e1 - e2), axis=1)
    accuracies, thresholds = protocol_accuracy(dist, issame, folds)
    fpr, tpr, auc_cosine = _roc(issame, np.sum(e1 * e2, axis=1))
    _, _, auc_euclidean = _roc(issame, -np.linalg.norm(raw1 - raw2, axis=1))
    tars = {far_key(far): tar_at_far(fpr, tpr, far) for far in FAR_TARGETS if negatives * far >= 1 - 1e-9}
    return VerificationResult(
        accuracy=float(np.mean(accuracies)), accuracy_std=float(np.std(accuracies)),
        threshold=float(np.mean(thresholds)), auc_cosine=auc_cosine, auc_euclidean=auc_euclidean,
        tar_at_far=tars, eer=equal_error_rate(fpr, tpr), num_pairs=len(issame), num_positive=positives,
        num_negative=negatives, fold_accuracies=[float(a) for a in accuracies], fpr=fpr, tpr=tpr,
    )  # fmt: skip


def roc_figure(results: Mapping[str, VerificationResult]):
    """ROC curves (TAR against FAR, log FAR axis) of several pair sets on one matplotlib Figure;
    None when ``results`` is empty."""
    from kerasface.eval.figures import new_figure

    curves = {name: r for name, r in results.items() if r.fpr is not None}
    if not curves:
        return None
    figure = new_figure()
    ax = figure.add_subplot()
    floor = min(1.0 / r.num_negative for r in curves.values())
    for name, r in curves.items():
        keep = r.fpr > 0
        ax.plot(r.fpr[keep], r.tpr[keep], linewidth=1.3,
                label=f"{name} (acc {100 * r.accuracy:.2f}%, AUC {r.auc_cosine:.4f}, EER {100 * r.eer:.2f}%)")
    ax.set_xscale("log")
    ax.set_xlim(max(floor, 1e-6), 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.set_title("verification ROC (cosine similarity)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize="small")
    return figure

