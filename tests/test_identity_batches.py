import math
from collections import Counter

import numpy as np
import pytest

from kerasface.data.identity_batches import pk_batch_order, pk_dataset, pk_num_batches
from kerasface.data.spec import Samples

# identity 5 has 2 images, identity 6 has 1; the rest have 4 to 9
IMAGES_PER_IDENTITY = [6, 4, 9, 5, 7, 2, 1, 8]
IDENTITY = np.repeat(np.arange(len(IMAGES_PER_IDENTITY)), IMAGES_PER_IDENTITY)


def groups(row, k):
    return row.reshape(-1, k)


def test_every_batch_has_p_distinct_identities_with_k_images_each():
    p, k = 3, 4
    order = pk_batch_order(IDENTITY, p, k, seed=0)
    # 42 samples / 12 -> 4 batches; 8 identities / 3 -> 3 batches
    assert order.shape == (4, 12)
    for row in order:
        owners = IDENTITY[groups(row, k)]
        assert np.all(owners == owners[:, :1])  # each group of k is one identity
        assert len(set(owners[:, 0])) == p
        for group, ident in zip(groups(row, k), owners[:, 0]):
            if IMAGES_PER_IDENTITY[ident] >= k:
                assert len(set(group)) == k  # no repeats when the identity has enough images


def test_small_identities_fill_with_replacement():
    order = pk_batch_order(IDENTITY, 4, 3, seed=1, num_batches=10)
    seen = {5: 0, 6: 0}
    for row in order:
        for group in groups(row, 3):
            ident = int(IDENTITY[group[0]])
            if ident in seen:
                seen[ident] += 1
                assert set(group) == set(np.flatnonzero(IDENTITY == ident))  # all its images, repeated
    assert seen[5] > 0 and seen[6] > 0


def test_reproducible_for_seed_and_epoch_and_different_otherwise():
    a = pk_batch_order(IDENTITY, 3, 2, seed=5, epoch=2)
    np.testing.assert_array_equal(a, pk_batch_order(IDENTITY, 3, 2, seed=5, epoch=2))
    assert not np.array_equal(a, pk_batch_order(IDENTITY, 3, 2, seed=5, epoch=3))
    assert not np.array_equal(a, pk_batch_order(IDENTITY, 3, 2, seed=6, epoch=2))


def test_identities_appear_equally_often_and_images_are_dealt_evenly():
    identity = np.repeat(np.arange(7), 10)
    order = pk_batch_order(identity, 3, 2, seed=0, num_batches=35)  # 105 identity slots = 15 each
    per_identity = Counter(identity[order[:, ::2].reshape(-1)].tolist())
    assert set(per_identity.values()) == {15}
    per_image = Counter(order.reshape(-1).tolist())
    assert set(per_image.values()) == {3}  # 15 groups x 2 images over 10 images each
    for seed in range(1, 6):
        order = pk_batch_order(identity, 4, 2, seed=seed, num_batches=9)  # 36 slots over 7
        per_identity = Counter(identity[order[:, ::2].reshape(-1)].tolist())
        assert len(per_identity) == 7 and max(per_identity.values()) - min(per_identity.values()) <= 1


def test_drop_identities_below_and_unknown_identity():
    identity = np.concatenate([IDENTITY, [-1, -1, -1]])
    order = pk_batch_order(identity, 2, 2, seed=0, drop_identities_below=3, num_batches=20)
    used = set(identity[order.reshape(-1)].tolist())
    assert used == {0, 1, 2, 3, 4, 7}
    # default length: 39 eligible samples / 4 -> 10 batches
    assert pk_num_batches(identity, 2, 2, drop_identities_below=3) == math.ceil(39 / 4)
    assert pk_num_batches(np.repeat(np.arange(10), 2), 4, 8) == 3  # ceil(10 identities / 4)


def test_errors_name_the_numbers():
    with pytest.raises(ValueError, match=r"at least p=7 identities with >= 4 image\(s\), found 6 \(of 8 identities\)"):
        pk_batch_order(IDENTITY, 7, 2, drop_identities_below=4)
    with pytest.raises(ValueError, match="p >= 1 and k >= 1, got p=2, k=0"):
        pk_batch_order(IDENTITY, 2, 0)


def test_pk_dataset_batches_equal_pk_batch_order():
    p, k = 3, 2
    names = np.array([f"/faces/{i:03d}.png" for i in range(len(IDENTITY))], dtype=object)
    labels = (np.arange(len(IDENTITY))[:, None] % np.array([[2, 3]]) == 0).astype(np.float32)
    samples = Samples(names, IDENTITY, labels)
    n = pk_num_batches(IDENTITY, p, k)
    dataset = pk_dataset(samples, p, k, seed=4, epochs=2).batch(p * k)
    batches = np.stack([b.numpy() for b in dataset])
    expected = np.concatenate([pk_batch_order(IDENTITY, p, k, seed=4, epoch=e) for e in (0, 1)])
    assert batches.shape == (2 * n, p * k)
    np.testing.assert_array_equal(batches, expected)

    endless = pk_dataset(samples, p, k, seed=4, fields=True).batch(p * k).take(n + 1)
    batches = list(endless)
    first_of_epoch_1 = batches[n]
    np.testing.assert_array_equal(first_of_epoch_1["index"].numpy(), expected[n])
    index = expected[n]
    assert [s.decode() for s in first_of_epoch_1["path"].numpy()] == list(names[index])
    np.testing.assert_array_equal(first_of_epoch_1["identity"].numpy(), IDENTITY[index])
    np.testing.assert_array_equal(first_of_epoch_1["labels"].numpy(), labels[index])
