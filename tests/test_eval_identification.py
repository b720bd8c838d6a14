"""Closed-set rank-k / CMC and open-set DIR@FAR on hand-made galleries."""

import numpy as np
import pytest

from kerasface.errors import BadInputError
from kerasface.eval.figures import save_png
from kerasface.eval.identification import closed_set, cmc_figure, identity_scores, open_set

GALLERY = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
GALLERY_IDS = ["A", "A", "B", "C"]


def test_closed_set_ranks_and_cmc_on_a_hand_made_gallery():
    probes = np.array([[0.9, 0.1], [0.6, 0.8], [0.0, -1.0], [-1.0, 0.1], [0.0, 2.0]])
    probe_ids = ["A", "B", "C", "C", "D"]
    # p2: A scores 0.96 (via [0.8, 0.6]) > B 0.8 -> rank 2; p3: A and C both score 0 -> tie, rank 2
    identities, scores = identity_scores(GALLERY, GALLERY_IDS, probes)
    assert identities.tolist() == ["A", "B", "C"]
    assert scores[1].tolist() == pytest.approx([0.96, 0.8, -0.6])
    result = closed_set(GALLERY, GALLERY_IDS, probes, probe_ids)
    assert result.cmc.tolist() == [0.5, 1.0, 1.0]
    assert result.rank1 == 0.5 and result.rank5 == 1.0
    assert (result.num_probes, result.num_identities, result.num_unknown) == (4, 3, 1)
    assert result.to_dict()["cmc"] == [0.5, 1.0, 1.0]


def test_constant_embeddings_do_not_identify_anyone():
    gallery = np.ones((4, 3))
    result = closed_set(gallery, ["a", "b", "c", "d"], np.ones((4, 3)), ["a", "b", "c", "d"])
    assert result.rank1 == 0.0 and result.cmc[-1] == 1.0


def _towards(identity: int, score: float, dim: int = 6) -> np.ndarray:
    """A unit vector whose cosine with gallery axis ``identity`` is ``score`` and 0 with the others."""
    v = np.zeros(dim)
    v[identity], v[-1] = score, np.sqrt(1 - score**2)
    return v


def test_open_set_dir_at_far():
    gallery, gallery_ids = np.eye(6)[:5], [0, 1, 2, 3, 4]
    unknown = [_towards(k % 5, s) for k, s in enumerate(np.linspace(0.9, 0.0, 10))]
    known = [_towards(0, 0.95), _towards(1, 0.85), _towards(2, 0.75), _towards(2, 0.99), _towards(4, 0.5)]
    known_ids = [0, 1, 2, 3, 4]  # the fourth is closest to identity 2: misidentified
    result = open_set(gallery, gallery_ids, np.array(known + unknown), known_ids + [9] * 10, fars=(0.1, 0.2, 0.01))
    # FAR 0.1: at most 1 of 10 alarms above t -> t = second-highest unknown score (0.8)
    assert result.thresholds["1e-1"] == pytest.approx(0.8)
    assert result.dir_at_far["1e-1"] == pytest.approx(2 / 5)  # 0.95 and 0.85 correct and above 0.8
    assert result.thresholds["2e-1"] == pytest.approx(0.7)
    assert result.dir_at_far["2e-1"] == pytest.approx(3 / 5)
    assert "1e-2" not in result.dir_at_far  # 10 unknown probes cannot measure 1%
    assert (result.num_known, result.num_unknown) == (5, 10)
    with pytest.raises(BadInputError, match="needs both"):
        open_set(gallery, gallery_ids, np.array(known), known_ids)


def test_cmc_png_and_bad_shapes(tmp_path):
    result = closed_set(GALLERY, GALLERY_IDS, GALLERY, GALLERY_IDS)
    assert result.rank1 == 1.0
    save_png(cmc_figure({"hand-made": result}), tmp_path / "cmc.png")
    assert (tmp_path / "cmc.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(BadInputError, match="gallery identities"):
        closed_set(GALLERY, ["A"], GALLERY, GALLERY_IDS)
    with pytest.raises(BadInputError, match="no probe's identity"):
        closed_set(GALLERY, GALLERY_IDS, GALLERY, ["X"] * 4)
