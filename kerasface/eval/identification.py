"""Identification against a gallery: closed-set rank-k accuracy and CMC, open-set DIR@FAR.

A probe's score for an identity is the largest cosine similarity between the probe and that
identity's gallery embeddings. Closed set: the rank of the true identity is the number of
identities scoring at least as high as it (ties count against the probe, so a constant model
does not score 100%); CMC(k) = fraction of probes with rank <= k (Moon & Phillips, 2001).
Open set (Phillips et al., FRVT / Grother & Phillips 2004): the threshold ``t`` is set on probes
of identities absent from the gallery so that at most FAR of them have a top score ``> t``
(false alarms); DIR@FAR = fraction of known probes ranked first at a score ``> t``. A FAR is
reported only when there are ``>= 1 / FAR`` unknown probes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from kerasface.errors import BadInputError
from kerasface.eval.verification import FAR_TARGETS, far_key, l2_normalize


@dataclasses.dataclass
class ClosedSetResult:
    rank1: float
    rank5: float
    cmc: np.ndarray
    num_probes: int
    num_identities: int
    num_unknown: int

    def to_dict(self) -> dict:
        return {"rank1": self.rank1, "rank5": self.rank5, "cmc": [float(v) for v in self.cmc],
                "num_probes": self.num_probes, "num_identities": self.num_identities,
                "num_unknown_skipped": self.num_unknown}


@dataclasses.dataclass
class OpenSetResult:
    dir_at_far: dict[str, float]
    thresholds: dict[str, float]
    num_known: int
    num_unknown: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def identity_scores(gallery, gallery_ids: Sequence, probes) -> tuple[np.ndarray, np.ndarray]:
    """The gallery's identities (sorted) and the (probes, identities) matrix of each probe's
    best cosine similarity to each identity."""
    gallery, probes = l2_normalize(gallery), l2_normalize(probes)
    gallery_ids = np.asarray(gallery_ids)
    if gallery.ndim != 2 or probes.ndim != 2 or gallery.shape[1] != probes.shape[1]:
        raise BadInputError(f"gallery {gallery.shape} and probes {probes.shape}: expected (n, dim) arrays of one dim")
    if len(gallery_ids) != len(gallery):
        raise BadInputError(f"{len(gallery)} gallery embeddings but {len(gallery_ids)} gallery identities")
    identities, which = np.unique(gallery_ids, return_inverse=True)
    order = np.argsort(which, kind="stable")
    starts = np.searchsorted(which[order], np.arange(len(identities)))
    return identities, np.maximum.reduceat(probes @ gallery[order].T, starts, axis=1)


def _ranks(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    true_score = scores[np.arange(len(truth)), truth]
    return np.sum(scores >= true_score[:, None], axis=1)


def closed_set(gallery, gallery_ids: Sequence, probes, probe_ids: Sequence) -> ClosedSetResult:
    """Rank-1, rank-5 and the CMC curve (index k-1 = rank k) of the probes whose identity is in
    the gallery; the others are counted in ``num_unknown`` and left out."""
    identities, scores = identity_scores(gallery, gallery_ids, probes)
    probe_ids = np.asarray(probe_ids)
    if len(probe_ids) != len(scores):
        raise BadInputError(f"{len(scores)} probe embeddings but {len(probe_ids)} probe identities")
    known = np.isin(probe_ids, identities)
    if not known.any():
        raise BadInputError("no probe's identity is in the gallery")
    ranks = _ranks(scores[known], np.searchsorted(identities, probe_ids[known]))
    cmc = np.array([np.mean(ranks <= k) for k in range(1, len(identities) + 1)])
    return ClosedSetResult(float(cmc[0]), float(cmc[min(4, len(cmc) - 1)]), cmc, int(known.sum()),
                           len(identities), int((~known).sum()))


def open_set(gallery, gallery_ids: Sequence, probes, probe_ids: Sequence,
             fars: Sequence[float] = FAR_TARGETS) -> OpenSetResult:
    """DIR at each FAR the unknown probes can measure, and the similarity threshold it uses."""
    identities, scores = identity_scores(gallery, gallery_ids, probes)
    probe_ids = np.asarray(probe_ids)
    if len(probe_ids) != len(scores):
        raise BadInputError(f"{len(scores)} probe embeddings but {len(probe_ids)} probe identities")
    known = np.isin(probe_ids, identities)
    if known.all() or not known.any():
        raise BadInputError(
            f"{int(known.sum())} probes of gallery identities and {int((~known).sum())} of others: open-set "
            "identification needs both")
    ranks = _ranks(scores[known], np.searchsorted(identities, probe_ids[known]))
    known_top = scores[known].max(axis=1)
    alarms = np.sort(scores[~known].max(axis=1))[::-1]
    dirs, thresholds = {}, {}
    for far in fars:
        if len(alarms) * far < 1 - 1e-9:
            continue
        threshold = alarms[min(int(np.floor(far * len(alarms) + 1e-9)), len(alarms) - 1)]
        dirs[far_key(far)] = float(np.mean((ranks == 1) & (known_top > threshold)))
        thresholds[far_key(far)] = float(threshold)
    return OpenSetResult(dirs, thresholds, int(known.sum()), int((~known).sum()))


def cmc_figure(results: Mapping[str, ClosedSetResult], max_rank: int = 20):
    """CMC curves (identification rate against rank) on one Figure; None when empty."""
    from kerasface.eval.figures import new_figure

    if not results:
        return None
    figure = new_figure(7, 4.5)
    ax = figure.add_subplot()
    for name, r in results.items():
        ranks = np.arange(1, min(max_rank, len(r.cmc)) + 1)
        ax.plot(ranks, r.cmc[: len(ranks)], marker="o", markersize=3,
                label=f"{name} (rank-1 {100 * r.rank1:.2f}%)")
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate")
    ax.set_ylim(0, 1.01)
    ax.set_title("CMC (closed set)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return figure
