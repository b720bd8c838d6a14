"""The LFW verification protocol against a loop re-implementation of insightface's calculate_roc,
and the ROC figures on embeddings with known answers."""

import json

import numpy as np
import pytest
from sklearn.model_selection import KFold
from sklearn.preprocessing import normalize

from kerasface.errors import BadInputError
from kerasface.eval.figures import save_png
from kerasface.eval.verification import THRESHOLDS, equal_error_rate, evaluate, roc_figure, tar_at_far


def insightface_accuracy(embeddings1, embeddings2, actual_issame, nrof_folds=10):
    """insightface recognition/arcface_torch/eval/verification.py: calculate_roc + calculate_accuracy,
    one threshold at a time."""
    embeddings1, embeddings2 = normalize(embeddings1), normalize(embeddings2)
    dist = np.sum(np.square(np.subtract(embeddings1, embeddings2)), 1)
    k_fold = KFold(n_splits=nrof_folds, shuffle=False)
    accuracy, chosen = np.zeros(nrof_folds), np.zeros(nrof_folds)
    for fold_idx, (train_set, test_set) in enumerate(k_fold.split(np.arange(len(dist)))):
        acc_train = np.zeros(len(THRESHOLDS))
        for threshold_idx, threshold in enumerate(THRESHOLDS):
            predict = np.less(dist[train_set], threshold)
            actual = actual_issame[train_set]
            acc_train[threshold_idx] = (np.sum(predict & actual) + np.sum(~predict & ~actual)) / len(train_set)
        best = np.argmax(acc_train)
        predict = np.less(dist[test_set], THRESHOLDS[best])
        actual = actual_issame[test_set]
        accuracy[fold_idx] = (np.sum(predict & actual) + np.sum(~predict & ~actual)) / len(test_set)
        chosen[fold_idx] = THRESHOLDS[best]
    return accuracy, chosen


def noisy_pairs(num_pairs, noise, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    issame = rng.random(num_pairs) < 0.5
    base = rng.normal(size=(num_pairs, dim))
    noisy = base + noise * rng.normal(size=(num_pairs, dim))
    other = np.where(issame[:, None], noisy, rng.normal(size=(num_pairs, dim)))
    return base, other, issame


@pytest.mark.parametrize("num_pairs, noise", [(600, 0.8), (613, 1.5), (240, 3.0)])
def test_accuracy_equals_the_loop_reimplementation(num_pairs, noise):
    e1, e2, issame = noisy_pairs(num_pairs, noise, seed=num_pairs)
    expected, chosen = insightface_accuracy(e1, e2, issame)
    result = evaluate(e1, e2, issame)
    assert result.fold_accuracies == pytest.approx(expected.tolist(), abs=1e-12)
    assert result.accuracy == pytest.approx(np.mean(expected), abs=1e-12)
    assert result.accuracy_std == pytest.approx(np.std(expected), abs=1e-12)
    assert result.threshold == pytest.approx(np.mean(chosen), abs=1e-12)
    assert 0.5 < result.accuracy < 1.0


def test_ties_in_distances_pick_the_first_best_threshold():
    """Unit axis vectors give squared distances of exactly 0, 2 and 4: many thresholds tie on the
    training folds, and the first of them must be the one used (np.argmax)."""
    rng = np.random.default_rng(3)
    axes = np.eye(4)
    n = 200
    issame = rng.random(n) < 0.5
    first = axes[rng.integers(0, 4, n)]
    kind = np.where(issame, rng.choice([0, 0, 0, 1], n), rng.choice([0, 1, 1, 2], n))
    second = np.where((kind == 0)[:, None], first, np.where((kind == 2)[:, None], -first, np.roll(first, 1, axis=1)))
    dist = np.sum((first - second) ** 2, axis=1)
    assert set(np.unique(dist)) == {0.0, 2.0, 4.0}
    expected, chosen = insightface_accuracy(first, second, issame)
    result = evaluate(first, second, issame)
    assert result.fold_accuracies == pytest.approx(expected.tolist(), abs=1e-12)
    assert result.threshold == pytest.approx(np.mean(chosen), abs=1e-12)
    assert np.all(chosen == THRESHOLDS[1])  # 0.01: the first threshold accepting d = 0 and rejecting d = 2


def test_declared_folds_give_the_same_split_as_a_fold_count():
    e1, e2, issame = noisy_pairs(600, 1.2, seed=5)
    by_count = evaluate(e1, e2, issame, folds=10)
    by_ids = evaluate(e1, e2, issame, folds=np.repeat(np.arange(10), 60))
    assert by_ids.fold_accuracies == by_count.fold_accuracies
    interleaved = evaluate(e1, e2, issame, folds=np.arange(600) % 10)
    assert interleaved.fold_accuracies != by_count.fold_accuracies


def test_separable_embeddings_score_perfectly():
    e1, e2, issame = noisy_pairs(2000, 0.002, seed=1)
    result = evaluate(e1, e2, issame)
    assert result.accuracy == 1.0 and result.accuracy_std == 0.0
    assert result.auc_cosine == 1.0 and result.auc_euclidean == 1.0
    assert result.eer == 0.0
    assert result.tar_at_far == {"1e-1": 1.0, "1e-2": 1.0}  # ~1,000 negatives: 1e-3 needs >= 1,000
    assert result.num_positive + result.num_negative == 2000


def test_random_embeddings_score_about_one_half():
    rng = np.random.default_rng(2)
    e1, e2 = rng.normal(size=(6000, 32)), rng.normal(size=(6000, 32))
    issame = np.tile(np.r_[np.ones(300, bool), np.zeros(300, bool)], 10)
    result = evaluate(e1, e2, issame)
    assert abs(result.accuracy - 0.5) < 0.04
    assert abs(result.auc_cosine - 0.5) < 0.03
    assert abs(result.eer - 0.5) < 0.03
    assert set(result.tar_at_far) == {"1e-1", "1e-2", "1e-3"}  # 3,000 negatives cannot measure 1e-4
    assert result.tar_at_far["1e-1"] == pytest.approx(0.1, abs=0.03)


def test_far_1e_4_is_reported_from_10000_negatives():
    rng = np.random.default_rng(4)
    issame = np.r_[np.ones(500, bool), np.zeros(10_000, bool)]
    e1 = rng.normal(size=(len(issame), 8))
    e2 = np.where(issame[:, None], e1 + 0.2 * rng.normal(size=e1.shape), rng.normal(size=e1.shape))
    assert "1e-4" in evaluate(e1, e2, issame).tar_at_far
    assert "1e-4" in evaluate(e1[1:], e2[1:], issame[1:]).tar_at_far
    assert "1e-4" not in evaluate(e1[:-1], e2[:-1], issame[:-1]).tar_at_far


def test_euclidean_auc_uses_the_embeddings_as_given():
    """Scaling one embedding of a pair changes neither cosine nor the protocol, only euclidean."""
    e1, e2, issame = noisy_pairs(400, 1.0, seed=7)
    plain = evaluate(e1, e2, issame)
    scale = np.random.default_rng(8).uniform(0.2, 5.0, size=(400, 1))
    scaled = evaluate(e1 * scale, e2, issame)
    assert scaled.auc_cosine == plain.auc_cosine and scaled.accuracy == plain.accuracy
    assert scaled.auc_euclidean != pytest.approx(plain.auc_euclidean, abs=1e-3)
    unit = evaluate(normalize(e1), normalize(e2), issame)
    assert unit.auc_euclidean == pytest.approx(unit.auc_cosine, abs=1e-12)


def test_tar_at_far_and_eer_on_a_hand_made_roc():
    fpr = np.array([0.0, 0.0, 0.001, 0.01, 0.05, 0.2, 1.0])
    tpr = np.array([0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 1.0])
    assert tar_at_far(fpr, tpr, 1e-3) == 0.5
    assert tar_at_far(fpr, tpr, 5e-3) == 0.5
    assert tar_at_far(fpr, tpr, 1e-2) == 0.7
    assert tar_at_far(fpr, tpr, 1e-4) == 0.3
    # FNR - FPR: 0.15 at (0.05, 0.8), -0.1 at (0.2, 0.9): crossing at t = 0.6 -> 0.05 + 0.6 * 0.15
    assert equal_error_rate(fpr, tpr) == pytest.approx(0.14)


def test_bad_input_is_refused():
    e1, e2, issame = noisy_pairs(40, 1.0)
    with pytest.raises(BadInputError, match="both"):
        evaluate(e1, e2, np.ones(40, bool))
    with pytest.raises(BadInputError, match="one label per pair"):
        evaluate(e1, e2[:-1], issame)
    bad = e1.copy()
    bad[3, 0] = np.nan
    with pytest.raises(BadInputError, match="NaN"):
        evaluate(bad, e2, issame)


def test_result_to_json_and_roc_png(tmp_path):
    e1, e2, issame = noisy_pairs(600, 1.0)
    results = {"a": evaluate(e1, e2, issame), "b": evaluate(e1, e2 + 1.0, issame)}
    data = json.loads(json.dumps(results["a"].to_dict()))
    assert data["num_pairs"] == 600 and len(data["fold_accuracies"]) == 10 and "fpr" not in data
    path = tmp_path / "roc.png"
    save_png(roc_figure(results), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["roc.png"]
    assert roc_figure({}) is None
