"""P x K batches for metric-learning losses: P distinct identities, K images of each.

Batch-hard triplet mining needs positives and negatives in every batch (Hermans et al.,
"In Defense of the Triplet Loss for Person Re-Identification", 2017). Identities are
drawn from a stream of shuffled passes over all eligible identities, so within an epoch
each appears as often as every other, give or take one; each identity's images are
dealt from its own shuffled deck, so all of them come round before any repeats.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from kerasface.data.spec import Samples


def _eligible(identity: np.ndarray, drop_identities_below: int) -> dict[int, np.ndarray]:
    identity = np.asarray(identity, np.int64)
    order = np.argsort(identity, kind="stable")
    ids, starts, counts = np.unique(identity[order], return_index=True, return_counts=True)
    minimum = max(1, drop_identities_below)
    return {
        int(i): order[s:s + c]
        for i, s, c in zip(ids, starts, counts)
        if i >= 0 and c >= minimum
    }


def _check(p: int, k: int, eligible: dict, identity, drop_identities_below: int) -> None:
    if p < 1 or k < 1:
        raise ValueError(f"P x K batches need p >= 1 and k >= 1, got p={p}, k={k}")
    if len(eligible) < p:
        known = len(np.unique(np.asarray(identity)[np.asarray(identity) >= 0]))
        raise ValueError(
            f"P x K batches need at least p={p} identities with >= {max(1, drop_identities_below)} "
            f"image(s), found {len(eligible)} (of {known} identities)"
        )


def pk_num_batches(identity: np.ndarray, p: int, k: int, drop_identities_below: int = 1) -> int:
    """Default batches per epoch: enough to draw about every eligible sample once
    (``ceil(n_samples / (p*k))``), and at least enough to show every identity once
    (``ceil(n_identities / p)``)."""
    eligible = _eligible(identity, drop_identities_below)
    _check(p, k, eligible, identity, drop_identities_below)
    n_samples = sum(len(m) for m in eligible.values())
    return max(math.ceil(len(eligible) / p), math.ceil(n_samples / (p * k)))


def pk_batch_order(
    identity: np.ndarray,
    p: int,
    k: int,
    seed: int = 0,
    epoch: int = 0,
    drop_identities_below: int = 1,
    num_batches: int | None = None,
) -> np.ndarray:
    """(num_batches, p*k) sample indices; row = p distinct identities x k samples, grouped by identity.

    Identities with fewer than ``drop_identities_below`` images (and identity -1) are left
    out; one with fewer than k images contributes all its images and fills the rest by
    drawing with replacement. ``num_batches`` defaults to ``pk_num_batches``. The order is
    a function of (seed, epoch) only.
    """
    eligible = _eligible(identity, drop_identities_below)
    _check(p, k, eligible, identity, drop_identities_below)
    if num_batches is None:
        num_batches = pk_num_batches(identity, p, k, drop_identities_below)
    rng = np.random.default_rng([seed, epoch])
    ids = np.fromiter(eligible, np.int64, len(eligible))
    stream: deque[int] = deque()
    decks: dict[int, deque[int]] = {}

    def deal(ident: int) -> list[int]:
        members = eligible[ident]
        if len(members) < k:
            return [*rng.permutation(members), *rng.choice(members, k - len(members))]
        deck = decks.setdefault(ident, deque())
        if len(deck) < k:
            rest = members[~np.isin(members, np.fromiter(deck, np.int64, len(deck)))]
            deck.extend(rng.permutation(rest).tolist())
        return [deck.popleft() for _ in range(k)]

    out = np.empty((num_batches, p * k), np.int64)
    for b in range(num_batches):
        chosen: list[int] = []
        deferred: list[int] = []
        while len(chosen) < p:
            if not stream:
                stream.extend(rng.permutation(ids).tolist())
            ident = stream.popleft()
            (deferred if ident in chosen else chosen).append(ident)
        stream.extendleft(reversed(deferred))
        out[b] = np.concatenate([deal(i) for i in chosen])
    return out


def pk_dataset(
    samples: Samples,
    p: int,
    k: int,
    seed: int = 0,
    epochs: int | None = None,
    drop_identities_below: int = 1,
    num_batches: int | None = None,
    fields: bool = False,
):
    """A ``tf.data.Dataset`` of sample indices in P x K order, epoch after epoch.

    Batch it with ``.batch(p * k)`` and no shuffle: batch j of epoch e is row j of
    ``pk_batch_order(samples.identity, p, k, seed, e, ...)``. ``epochs=None`` repeats
    forever (use ``pk_num_batches`` as steps per epoch). With ``fields=True`` each element
    is a dict of ``index``, ``path``, ``identity`` and ``labels``.
    """
    import tensorflow as tf

    identity = np.asarray(samples.identity, np.int64)
    if num_batches is None:
        num_batches = pk_num_batches(identity, p, k, drop_identities_below)
    else:
        _check(p, k, _eligible(identity, drop_identities_below), identity, drop_identities_below)

    def epoch_order(epoch):
        order = pk_batch_order(identity, p, k, seed, int(epoch), drop_identities_below, num_batches)
        return order.reshape(-1)

    def indices_of(epoch):
        flat = tf.numpy_function(epoch_order, [epoch], tf.int64, stateful=False)
        return tf.data.Dataset.from_tensor_slices(tf.reshape(flat, [num_batches * p * k]))

    epoch_ids = tf.data.Dataset.counter() if epochs is None else tf.data.Dataset.range(epochs)
    dataset = epoch_ids.flat_map(indices_of)
    if not fields:
        return dataset
    paths = tf.constant(np.asarray(samples.paths, dtype=str))
    identities = tf.constant(identity)
    labels = tf.constant(np.asarray(samples.labels, np.float32))
    return dataset.map(
        lambda i: {
            "index": i,
            "path": tf.gather(paths, i),
            "identity": tf.gather(identities, i),
            "labels": tf.gather(labels, i),
        }
    )
