"""Verification of a labelled split: same- and different-identity pairs of its samples, drawn
uniformly without replacement in O(samples + pairs) memory and time, and their figures.

No pair list is built: with the samples sorted by identity, the r-th same-identity pair of a
group of n is (a, b), 0 <= a < b < n, with b = floor((1 + sqrt(1 + 8r)) / 2) and
a = r - b(b - 1)/2; the r-th different-identity pair is ranked by its first sample in that
order, which pairs with every sample of the groups after its own. Drawing ranks without
replacement gives unique pairs and no self-pairs.
"""

from __future__ import annotations

import numpy as np

from kerasface.eval.pairs import contiguous_folds
from kerasface.eval.verification import VerificationResult, evaluate

MAX_PAIRS = 3000


def _same_pairs(order, starts, sizes, ranks) -> np.ndarray:
    """Sample indices of the same-identity pairs of the given ranks."""
    counts = sizes * (sizes - 1) // 2
    ends = np.cumsum(counts)
    group = np.searchsorted(ends, ranks, side="right")
    local = ranks - (ends[group] - counts[group])
    b = np.floor((1 + np.sqrt(1 + 8 * local.astype(np.float64))) / 2).astype(np.int64)
    b -= (b * (b - 1) // 2 > local).astype(np.int64)  # float rounding, either way
    b += ((b + 1) * b // 2 <= local).astype(np.int64)
    a = local - b * (b - 1) // 2
    return np.stack([order[starts[group] + a], order[starts[group] + b]], 1)


def _different_pairs(order, starts, sizes, ranks) -> np.ndarray:
    """Sample indices of the different-identity pairs of the given ranks."""
    group_end = np.repeat(starts + sizes, sizes)  # per sorted position: where its group ends
    partners = len(order) - group_end
    ends = np.cumsum(partners)
    first = np.searchsorted(ends, ranks, side="right")
    second = group_end[first] + ranks - (ends[first] - partners[first])
    return np.stack([order[first], order[second]], 1)


def identity_pairs(identity: np.ndarray, max_pairs: int = MAX_PAIRS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(pairs (N, 2) of sample indices, first < second; issame (N,)): ``min(max_pairs // 2, same,
    different)`` same-identity pairs drawn from all of them, as many different-identity pairs,
    shuffled together (all same pairs when they are that few)."""
    identity = np.asarray(identity)
    n = len(identity)
    order = np.argsort(identity, kind="stable")
    _, starts, sizes = np.unique(identity[order], return_index=True, return_counts=True)
    starts, sizes = starts.astype(np.int64), sizes.astype(np.int64)
    num_same = int((sizes * (sizes - 1) // 2).sum())
    num_different = n * (n - 1) // 2 - num_same
    count = min(max_pairs // 2, num_same, num_different)
    if count == 0:
        raise ValueError(f"{n} images of {len(sizes)} identities make no same- and different-identity pairs "
                         "to verify; give the split at least two identities with two images each")
    rng = np.random.default_rng(seed)
    same = _same_pairs(order, starts, sizes, rng.choice(num_same, count, replace=False))
    different = _different_pairs(order, starts, sizes, rng.choice(num_different, count, replace=False))
    pairs = np.sort(np.concatenate([same, different]), axis=1)
    issame = np.repeat([True, False], count)
    shuffled = rng.permutation(2 * count)
    return pairs[shuffled], issame[shuffled]


def pair_folds(num_pairs: int) -> np.ndarray:
    """The protocol's 10 contiguous folds (fewer when there are fewer pairs)."""
    return contiguous_folds(num_pairs, min(10, num_pairs))


def verify_identities(identity: np.ndarray, embeddings: np.ndarray, seed: int = 0,
                      max_pairs: int = MAX_PAIRS) -> tuple[VerificationResult, np.ndarray, np.ndarray]:
    """(figures, pairs, issame): ``kerasface.eval.verification.evaluate`` of the ``identity_pairs``
    of embedded samples, in ``pair_folds``."""
    pairs, issame = identity_pairs(identity, max_pairs, seed)
    result = evaluate(embeddings[pairs[:, 0]], embeddings[pairs[:, 1]], issame, pair_folds(len(issame)))
    return result, pairs, issame
