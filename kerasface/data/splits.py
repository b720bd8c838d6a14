"""Train/validation/test splits of a sample table, by identity (open set) or by sample.

By identity: identities are shuffled and partitioned, so no person is in two parts; this
is what face verification on unseen people needs. By sample: every stratum (an identity,
a label value, or the whole table) gives about the same fraction of its samples to each
part; a plain "shuffle, then 50/50 split" is ``split_by_sample(s, 0.5,
stratify=None)``.
"""

from __future__ import annotations


import numpy as np

from kerasface.rounding import round_half_up
from kerasface.data.spec import DatasetSpec, Samples, column_values


def _check_fractions(test_fraction: float, validation_fraction: float) -> None:
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must lie in [0, 1), got {test_fraction}")
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"validation_fraction must lie in [0, 1), got {validation_fraction}")
    if test_fraction + validation_fraction >= 1:
        raise ValueError(
            f"test_fraction + validation_fraction must be < 1 to leave a training part, "
            f"got {test_fraction} + {validation_fraction}"
        )


def _parts(samples: Samples, train, val, test, with_validation: bool):
    parts = [samples.subset(np.sort(i)) for i in (train, val, test)]
    return tuple(parts) if with_validation else (parts[0], parts[2])


def identity_split_index(
    identity: np.ndarray, test_fraction: float = 0.5, seed: int = 0, validation_fraction: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted (train, val, test) sample indices with disjoint identity sets.

    ``round(n_identities * fraction)`` identities go to test and to validation (halves
    round up), at least one each where the fraction is > 0 (none where it is 0), and at least
    one to train.
    """
    _check_fractions(test_fraction, validation_fraction)
    identity = np.asarray(identity, np.int64)
    unknown = int(np.sum(identity < 0))
    if unknown:
        raise ValueError(
            f"split by identity needs every sample's identity; {unknown} of {len(identity)} "
            f"samples have identity -1"
        )
    ids = np.unique(identity)
    parts_needed = 1 + (test_fraction > 0) + (validation_fraction > 0)
    if len(ids) < parts_needed:
        raise ValueError(
            f"split by identity into {parts_needed} parts needs at least {parts_needed} "
            f"identities, got {len(ids)}"
        )
    n_test = max(1, round_half_up(len(ids) * test_fraction)) if test_fraction > 0 else 0
    n_val = max(1, round_half_up(len(ids) * validation_fraction)) if validation_fraction > 0 else 0
    while n_test + n_val > len(ids) - 1:
        if n_test >= n_val:
            n_test -= 1
        else:
            n_val -= 1
    order = np.random.default_rng(seed).permutation(ids)
    test_ids, val_ids = order[:n_test], order[n_test:n_test + n_val]
    in_test, in_val = np.isin(identity, test_ids), np.isin(identity, val_ids)
    return (
        np.flatnonzero(~in_test & ~in_val),
        np.flatnonzero(in_val),
        np.flatnonzero(in_test),
    )


def split_by_identity(
    samples: Samples, test_fraction: float = 0.5, seed: int = 0, validation_fraction: float = 0.0
) -> tuple[Samples, ...]:
    """(train, test), or (train, val, test) when ``validation_fraction`` > 0, with disjoint identities."""
    train, val, test = identity_split_index(samples.identity, test_fraction, seed, validation_fraction)
    return _parts(samples, train, val, test, validation_fraction > 0)


def _allocate(sizes: np.ndarray, fraction: float, capacity: np.ndarray, rng) -> np.ndarray:
    """Per stratum floor or ceil of ``size * fraction`` (at most ``capacity``), totalling the
    rounded overall share: largest remainders get the ceil, ties in random order."""
    exact = sizes * fraction
    base = np.minimum(np.floor(exact).astype(np.int64), capacity)
    remainder = exact - np.floor(exact)
    extra = round_half_up(float(exact.sum())) - int(base.sum())
    tiebreak = rng.permutation(len(sizes))
    order = tiebreak[np.argsort(-remainder[tiebreak], kind="stable")]
    order = order[(remainder[order] > 0) & (base[order] < capacity[order])]
    base[order[:max(extra, 0)]] += 1
    return base


def sample_split_index(
    strata: np.ndarray, test_fraction: float = 0.5, seed: int = 0, validation_fraction: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted (train, val, test) sample indices, stratified by the values of ``strata``.

    Each stratum of n >= 2 samples gives floor or ceil of ``n * fraction`` samples to test
    and to validation and keeps at least one for train; the totals are the rounded overall
    shares where those bounds allow. A stratum of one sample goes to train.
    """
    _check_fractions(test_fraction, validation_fraction)
    strata = np.asarray(strata)
    rng = np.random.default_rng(seed)
    _, inverse, sizes = np.unique(strata, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    splittable = sizes >= 2
    capacity = np.where(splittable, sizes - 1, 0)
    n_test = _allocate(np.where(splittable, sizes, 0), test_fraction, capacity, rng)
    n_val = _allocate(np.where(splittable, sizes, 0), validation_fraction, capacity - n_test, rng)

    train, val, test = [], [], []
    members_of = np.split(np.argsort(inverse, kind="stable"), np.cumsum(sizes)[:-1])
    for members, t, v in zip(members_of, n_test, n_val):
        members = rng.permutation(members)
        test.append(members[:t])
        val.append(members[t:t + v])
        train.append(members[t + v:])
    return tuple(np.sort(np.concatenate(p)).astype(np.int64) for p in (train, val, test))


def split_by_sample(
    samples: Samples,
    test_fraction: float = 0.5,
    seed: int = 0,
    validation_fraction: float = 0.0,
    stratify: str | None = "identity",
    label_columns: dict[str, list[str]] | None = None,
) -> tuple[Samples, ...]:
    """(train, test), or (train, val, test) when ``validation_fraction`` > 0, split per stratum.

    ``stratify``: "identity" (each identity splits its images), a label column name (each
    value splits its samples; needs ``label_columns``) or None (one stratum: shuffle and cut).
    """
    if stratify is None:
        strata = np.zeros(len(samples), np.int64)
    elif stratify == "identity":
        strata = samples.identity
    else:
        if not label_columns or stratify not in label_columns:
            available = ", ".join(["identity", *(label_columns or {})])
            raise ValueError(f"cannot stratify by {stratify!r}; choose None or one of: {available}")
        strata = column_values(label_columns, samples.labels)[stratify]
    train, val, test = sample_split_index(strata, test_fraction, seed, validation_fraction)
    return _parts(samples, train, val, test, validation_fraction > 0)


SPLIT_MODES = ("sample", "identity")


def split_samples(
    spec: DatasetSpec,
    mode: str = "sample",
    test_fraction: float = 0.5,
    validation_fraction: float = 0.0,
    seed: int = 0,
    stratify: str | None = "identity",
) -> tuple[Samples, ...]:
    """The trainer's split: ``mode="identity"`` (open set) or ``"sample"`` (stratified by ``stratify``)."""
    if mode == "identity":
        return split_by_identity(spec.samples, test_fraction, seed, validation_fraction)
    if mode == "sample":
        return split_by_sample(
            spec.samples, test_fraction, seed, validation_fraction, stratify, spec.label_columns
        )
    raise ValueError(f"unknown split mode {mode!r}; choose one of: {', '.join(SPLIT_MODES)}")
