from collections import Counter

import numpy as np
import pytest

from kerasface.data.spec import DatasetSpec, Samples, encode_labels
from kerasface.data.splits import (
    identity_split_index,
    sample_split_index,
    split_by_identity,
    split_by_sample,
    split_samples,
)

COLUMNS = {"gender": ["female", "male"], "emotion": ["neutral", "smile", "surprise"]}


def make_samples(images_per_identity, rows=None):
    identity = np.repeat(np.arange(len(images_per_identity)), images_per_identity)
    n = len(identity)
    if rows is None:
        rows = [{"gender": "male", "emotion": "neutral"}] * n
    return Samples([f"/data/{i:04d}.png" for i in range(n)], identity, encode_labels(COLUMNS, rows))


def ids(part):
    return set(part.identity.tolist())


def test_identity_split_is_disjoint_and_covers_everything():
    samples = make_samples([3, 5, 2, 4, 6, 1, 3, 2, 5, 4])
    train, test = split_by_identity(samples, test_fraction=0.3, seed=1)
    assert len(ids(test)) == 3 and len(ids(train)) == 7
    assert not ids(train) & ids(test)
    assert sorted([*train.paths, *test.paths]) == sorted(samples.paths)
    assert list(train.paths) == sorted(train.paths)  # original order kept

    train, val, test = split_by_identity(samples, test_fraction=0.3, seed=1, validation_fraction=0.2)
    assert (len(ids(train)), len(ids(val)), len(ids(test))) == (5, 2, 3)
    assert not (ids(train) & ids(val) or ids(train) & ids(test) or ids(val) & ids(test))
    assert len(train) + len(val) + len(test) == len(samples)
    for part in (train, val, test):
        for i in ids(part):  # every image of an identity goes with it
            assert np.sum(part.identity == i) == np.sum(samples.identity == i)


def test_identity_split_deterministic_and_seed_dependent():
    samples = make_samples([2] * 20)
    a = split_by_identity(samples, 0.5, seed=3)[1]
    b = split_by_identity(samples, 0.5, seed=3)[1]
    c = split_by_identity(samples, 0.5, seed=4)[1]
    assert ids(a) == ids(b) and len(ids(a)) == 10
    assert ids(a) != ids(c)


def test_identity_split_keeps_one_identity_per_part_when_few():
    train, val, test = split_by_identity(make_samples([2, 2, 2]), 0.5, validation_fraction=0.3)
    assert len(ids(train)) == len(ids(val)) == len(ids(test)) == 1
    train, test = split_by_identity(make_samples([4, 4]), 0.1)
    assert len(ids(train)) == len(ids(test)) == 1


def test_identity_split_errors_name_the_numbers():
    with pytest.raises(ValueError, match="needs at least 2 identities, got 1"):
        split_by_identity(make_samples([5]), 0.5)
    with pytest.raises(ValueError, match="needs at least 3 identities, got 2"):
        split_by_identity(make_samples([5, 5]), 0.5, validation_fraction=0.2)
    with pytest.raises(ValueError, match="2 of 4 samples have identity -1"):
        identity_split_index(np.array([0, -1, 1, -1]))
    with pytest.raises(ValueError, match="must be < 1.*0.6 \\+ 0.4"):
        split_by_identity(make_samples([1] * 10), 0.6, validation_fraction=0.4)
    with pytest.raises(ValueError, match=r"test_fraction must lie in \[0, 1\), got 1.5"):
        split_by_identity(make_samples([1] * 10), 1.5)


def test_a_test_fraction_of_zero_holds_out_nobody_for_test():
    samples = make_samples([3, 5, 2, 4])
    train, test = split_by_identity(samples, test_fraction=0.0)
    assert len(test) == 0 and len(train) == len(samples)
    train, val, test = split_by_identity(samples, test_fraction=0.0, validation_fraction=0.25, seed=3)
    assert len(test) == 0 and len(ids(val)) == 1 and len(ids(train)) == 3
    train, test = split_by_sample(samples, 0.0)
    assert len(test) == 0 and len(train) == len(samples)


def test_sample_split_keeps_per_identity_proportions():
    samples = make_samples([10, 6, 4, 2, 1])
    train, test = split_by_sample(samples, 0.5, seed=2)
    assert Counter(test.identity.tolist()) == {0: 5, 1: 3, 2: 2, 3: 1}
    assert 4 in ids(train) and 4 not in ids(test)  # a single image stays in train
    assert sorted([*train.paths, *test.paths]) == sorted(samples.paths)

    # 0.3 of 10/6/4/2 = 3/1.8/1.2/0.6 and 22 * 0.3 = 6.6 -> 7: floors 3+1+1+0 and the two
    # largest remainders (1.8, 0.6) round up
    train, test = split_by_sample(samples, 0.3, seed=2)
    assert Counter(test.identity.tolist()) == {0: 3, 1: 2, 2: 1, 3: 1}
    assert len(train) == 16


def test_sample_split_three_parts_within_rounding():
    sizes = [20, 11, 7, 5, 3]
    samples = make_samples(sizes)
    train, val, test = split_by_sample(samples, 0.3, seed=5, validation_fraction=0.2)
    assert len(train) + len(val) + len(test) == len(samples)
    assert len({*train.paths, *val.paths, *test.paths}) == len(samples)
    for i, n in enumerate(sizes):
        t, v = np.sum(test.identity == i), np.sum(val.identity == i)
        assert np.floor(n * 0.3) <= t <= np.ceil(n * 0.3)
        assert np.floor(n * 0.2) <= v <= np.ceil(n * 0.2)
        assert np.sum(train.identity == i) >= 1
    assert (len(test), len(val)) == (14, 9)  # 46 * 0.3 = 13.8 and 46 * 0.2 = 9.2, rounded


def test_sample_split_stratified_by_label_column():
    rows = [{"gender": "male" if i < 30 else "female", "emotion": ["neutral", "smile", "surprise"][i % 3]}
            for i in range(40)]
    samples = make_samples([4] * 10, rows)
    train, test = split_by_sample(samples, 0.5, seed=0, stratify="gender", label_columns=COLUMNS)
    male_test = int(np.sum(test.labels[:, 0] == 1))
    assert male_test == 15 and len(test) - male_test == 5

    with pytest.raises(ValueError, match="cannot stratify by 'age'; choose None or one of: identity, gender, emotion"):
        split_by_sample(samples, stratify="age", label_columns=COLUMNS)


def test_plain_shuffle_split_is_exactly_half_and_deterministic():
    samples = make_samples([7] * 9)
    train, test = split_by_sample(samples, 0.5, seed=11, stratify=None)
    assert (len(train), len(test)) == (31, 32)  # 63 * 0.5 = 31.5 rounds up
    again = split_by_sample(samples, 0.5, seed=11, stratify=None)[1]
    other = split_by_sample(samples, 0.5, seed=12, stratify=None)[1]
    np.testing.assert_array_equal(test.paths, again.paths)
    assert list(test.paths) != list(other.paths)


def test_sample_split_index_matches_sample_split():
    samples = make_samples([5, 5, 5])
    train_i, val_i, test_i = sample_split_index(samples.identity, 0.4, seed=9)
    train, test = split_by_sample(samples, 0.4, seed=9)
    assert len(val_i) == 0
    np.testing.assert_array_equal(samples.paths[train_i], train.paths)
    np.testing.assert_array_equal(samples.paths[test_i], test.paths)


def test_split_samples_dispatches_on_mode():
    samples = make_samples([4] * 6)
    spec = DatasetSpec("t", samples, [f"p{i}" for i in range(6)], COLUMNS)
    train, test = split_samples(spec, mode="identity", test_fraction=0.5, seed=1)
    assert not ids(train) & ids(test) and len(ids(test)) == 3
    train, test = split_samples(spec, mode="sample", test_fraction=0.25, seed=1)
    assert Counter(test.identity.tolist()) == {i: 1 for i in range(6)}
    train, val, test = split_samples(spec, "sample", 0.25, 0.25, seed=1)
    assert Counter(val.identity.tolist()) == {i: 1 for i in range(6)}
    with pytest.raises(ValueError, match="unknown split mode 'person'; choose one of: sample, identity"):
        split_samples(spec, mode="person")
