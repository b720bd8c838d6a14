"""Verification pairs drawn from a split's identities, without enumerating the pairs."""

import itertools

import numpy as np
import pytest

from kerasface.eval.identity import identity_pairs, verify_identities


def check_pairs(identity, pairs, issame, count):
    assert pairs.shape == (2 * count, 2) and issame.sum() == count and (~issame).sum() == count
    assert (pairs[:, 0] < pairs[:, 1]).all()  # ordered, so no self-pair
    assert len(np.unique(pairs, axis=0)) == len(pairs)
    np.testing.assert_array_equal(identity[pairs[:, 0]] == identity[pairs[:, 1]], issame)


def test_pairs_of_a_million_samples_are_valid_unique_balanced_and_seeded():
    """A 10% test split of MS1M holds about 580k images; all pairs of a million would take terabytes."""
    identity = np.random.default_rng(0).integers(0, 20_000, 1_000_000)
    pairs, issame = identity_pairs(identity, max_pairs=3000, seed=5)
    check_pairs(identity, pairs, issame, 1500)
    again, again_same = identity_pairs(identity, max_pairs=3000, seed=5)
    np.testing.assert_array_equal(again, pairs)
    np.testing.assert_array_equal(again_same, issame)
    assert not np.array_equal(identity_pairs(identity, max_pairs=3000, seed=6)[0], pairs)


def test_pairs_of_one_huge_identity_decode_large_ranks():
    """999,998 images of one person (5e11 same pairs) and two of others: every different pair
    holds one of the two, every same pair two of the large group."""
    identity = np.zeros(1_000_000, np.int64)
    identity[[17, 999_999]] = [1, 2]
    pairs, issame = identity_pairs(identity, max_pairs=3000, seed=0)
    check_pairs(identity, pairs, issame, 1500)
    different = pairs[~issame]
    assert np.isin(different, [17, 999_999]).any(axis=1).all()
    assert pairs[issame].max() > 900_000  # ranks near the end of the group reached, not only the first rows


def brute_force(identity):
    same, different = set(), set()
    for i, j in itertools.combinations(range(len(identity)), 2):
        (same if identity[i] == identity[j] else different).add((i, j))
    return same, different


def test_every_same_pair_is_taken_when_they_are_few():
    identity = np.array([3, 0, 3, 1, 0, 3, 2, 1])
    same, different = brute_force(identity)
    pairs, issame = identity_pairs(identity, max_pairs=3000, seed=1)
    check_pairs(identity, pairs, issame, len(same))
    assert {tuple(p) for p in pairs[issame].tolist()} == same
    assert {tuple(p) for p in pairs[~issame].tolist()} <= different


def test_pairs_are_drawn_uniformly_from_all_of_them():
    """Over many seeds each same and each different pair is drawn about equally often."""
    identity = np.array([0, 0, 0, 1, 1, 1, 2])  # 6 same pairs, 15 different ones; 2 of each drawn
    same, different = brute_force(identity)
    counts = {p: 0 for p in same | different}
    seeds = 3000
    for seed in range(seeds):
        pairs, _ = identity_pairs(identity, max_pairs=4, seed=seed)
        for p in pairs.tolist():
            counts[tuple(p)] += 1
    for pair_set in (same, different):
        expected = seeds * 2 / len(pair_set)
        observed = np.array([counts[p] for p in pair_set])
        assert np.abs(observed - expected).max() < 5 * np.sqrt(expected), (observed, expected)


def test_a_split_without_same_or_different_pairs_is_refused():
    with pytest.raises(ValueError, match="3 images of 3 identities"):
        identity_pairs(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="3 images of 1 identities"):
        identity_pairs(np.array([4, 4, 4]))


def test_verification_of_identities_scores_their_pairs():
    """Embeddings that are one direction per identity verify perfectly; the pairs come back."""
    identity = np.repeat(np.arange(6), 5)
    embeddings = np.eye(8)[identity] + 0.01 * np.random.default_rng(0).normal(size=(30, 8))
    result, pairs, issame = verify_identities(identity, embeddings, seed=2, max_pairs=60)
    check_pairs(identity, pairs, issame, 30)
    assert result.auc_cosine == 1.0 and result.accuracy == 1.0 and result.num_pairs == 60
