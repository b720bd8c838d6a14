"""The FAISS gallery index: recall against exact search, adding and removing people, reloading."""

import numpy as np
import pytest

pytest.importorskip("faiss")

from kerasface.errors import BadInputError  # noqa: E402
from kerasface.faces.gallery import Gallery  # noqa: E402
from kerasface.faces.index import KINDS, VectorIndex  # noqa: E402
from kerasface.faces.search_benchmark import benchmark_search, perturbed, unit_vectors  # noqa: E402

DIM = 64


def _gallery(vectors) -> Gallery:
    return Gallery([f"p{k}" for k in range(len(vectors))], vectors.copy(), [1] * len(vectors), "model",
                   unit_vectors(np.random.default_rng(9), 1, DIM)[0], (112, 112))


@pytest.fixture(scope="module")
def vectors():
    return unit_vectors(np.random.default_rng(0), 4000, DIM)


@pytest.mark.parametrize("kind", KINDS)
def test_recall_at_1_against_exact_search(vectors, kind):
    rng = np.random.default_rng(1)
    queries = perturbed(rng, vectors, 300, noise=0.8)
    exact = np.argmax(queries @ vectors.T, axis=1)
    rows, scores = VectorIndex.build(vectors, kind).search(queries, 1)
    assert np.mean(rows[:, 0] == exact) >= (1.0 if kind == "flat" else 0.95)
    np.testing.assert_allclose(scores[rows[:, 0] == exact, 0],
                               np.max(queries @ vectors.T, axis=1)[rows[:, 0] == exact], atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_add_remove_and_reload(vectors, kind, tmp_path):
    gallery = _gallery(vectors)
    gallery.build_index(kind)
    rng = np.random.default_rng(2)
    newcomer = unit_vectors(rng, 1, DIM)[0]
    assert not gallery.add("newcomer", newcomer, count=2, files=["a.jpg", "b.jpg"])
    assert gallery.index.faiss_index.ntotal == len(vectors) + 1
    gallery.remove("p10")
    with pytest.raises(BadInputError, match="nobody: no such person"):
        gallery.remove("nobody")
    assert gallery.add("p20", newcomer)
    assert "p10" not in gallery.names and gallery.names.count("p20") == 1 and len(gallery.names) == len(vectors)

    probes = np.stack([vectors[10], vectors[11], vectors[20], newcomer])
    rows, scores = gallery.match(probes)
    assert gallery.names[rows[0]] != "p10" and scores[0] < 0.9
    assert gallery.names[rows[1]] == "p11" and scores[1] == pytest.approx(1.0, abs=1e-5)
    assert gallery.names[rows[2]] != "p20"
    assert gallery.names[rows[3]] in ("newcomer", "p20")
    np.testing.assert_allclose(gallery.embeddings[gallery.position("p11")], vectors[11])

    path = tmp_path / "gallery.npz"
    gallery.save(path)
    loaded = Gallery.load(path)
    assert loaded.index.kind == kind and loaded.names == gallery.names and loaded.counts == gallery.counts
    assert loaded.files["newcomer"] == ["a.jpg", "b.jpg"]
    np.testing.assert_array_equal(loaded.match(probes)[0], rows)
    loaded.add("late", vectors[10])
    assert loaded.names[loaded.match(vectors[10:11])[0][0]] == "late"


def test_many_removals_compact_the_index_on_save(vectors, tmp_path):
    gallery = _gallery(vectors[:200])
    gallery.build_index("hnsw")
    for k in range(0, 200, 2):
        assert gallery.names[gallery.match(vectors[k:k + 1])[0][0]] == f"p{k}"
        gallery.remove(f"p{k}")
        assert gallery.match(vectors[k:k + 1])[1][0] < 0.9  # masked from the next search on
    assert gallery.index.removed == 100
    gallery.save(tmp_path / "g.npz")
    loaded = Gallery.load(tmp_path / "g.npz")
    assert loaded.index.removed == 0 and loaded.index.faiss_index.ntotal == 100
    rows, _ = loaded.match(vectors[1:200:2])
    assert [loaded.names[r] for r in rows] == [f"p{k}" for k in range(1, 200, 2)]


@pytest.mark.parametrize("size", [3, 40, 700])
def test_ivf_pq_on_a_small_gallery_finds_every_vector_and_reports_its_lists(size):
    """Fewer vectors than a sub-quantizer's 16 centroids, fewer than the 624 it wants, and a few
    lists: each gallery vector's nearest is itself, at its exact cosine 1 (the re-ranking)."""
    from kerasface.faces.index import pq_codes_per_vector

    vectors = unit_vectors(np.random.default_rng(size), size, DIM)
    index = VectorIndex.build(vectors, "ivf-pq")
    rows, scores = index.search(vectors, 2)
    assert rows[:, 0].tolist() == list(range(size))
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    assert index.nlist == max(1, size // 39) and VectorIndex.build(vectors, "hnsw").nlist is None
    assert (pq_codes_per_vector(512), pq_codes_per_vector(64), pq_codes_per_vector(100), pq_codes_per_vector(3)) \
        == (64, 8, 10, 1)


def test_an_empty_gallery_matches_nobody_and_grows():
    gallery = _gallery(np.empty((0, DIM), np.float32))
    gallery.build_index("hnsw")
    assert gallery.match(unit_vectors(np.random.default_rng(3), 2, DIM))[0].tolist() == [-1, -1]
    for k in range(40):
        gallery.add(f"n{k}", unit_vectors(np.random.default_rng(k), 1, DIM)[0])
    assert gallery.names[gallery.match(unit_vectors(np.random.default_rng(7), 1, DIM))[0][0]] == "n7"
    with pytest.raises(BadInputError, match="embedding of 3 values"):
        gallery.add("short", np.ones(3))
    for kind in ("ivf", "ivf-pq"):
        with pytest.raises(BadInputError, match=f"an {kind} index is trained .* has none yet: use hnsw or flat"):
            VectorIndex.build(np.empty((0, DIM), np.float32), kind)
    with pytest.raises(BadInputError, match="unknown index type 'lsh'"):
        VectorIndex.build(np.empty((0, DIM), np.float32), "lsh")


def test_a_damaged_index_names_the_file(vectors, tmp_path):
    gallery = _gallery(vectors[:100])
    gallery.build_index("flat")
    path = tmp_path / "g.npz"
    gallery.save(path)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["index"] = arrays["index"][:50]
    np.savez(path, **arrays)
    with pytest.raises(BadInputError, match="g.npz: the stored flat index does not load"):
        Gallery.load(path)


def test_benchmark_rows_cover_each_index_and_setting():
    rows = benchmark_search(800, dim=32, queries=20, kinds=("flat", "hnsw", "ivf-pq"),
                            sweep={"hnsw": [8, 64], "ivf-pq": [1, 20]})
    assert [(r["index"], r["params"].get("ef_search"), r["params"].get("nprobe")) for r in rows] == [
        ("flat", None, None), ("hnsw", 8, None), ("hnsw", 64, None), ("ivf-pq", None, 1), ("ivf-pq", None, 20)]
    assert rows[0]["recall_at_1"] == 1.0 and rows[4]["params"]["nlist"] == 20
    assert all(0 <= r["recall_at_1"] <= 1 and r["p99_ms"] >= r["p50_ms"] for r in rows)
    assert rows[2]["recall_at_1"] >= rows[1]["recall_at_1"]
    assert rows[4]["recall_at_1"] > rows[3]["recall_at_1"]  # all 20 lists searched against one


def test_changes_persist_in_a_journal_that_load_replays(vectors, tmp_path, monkeypatch):
    from kerasface.faces import gallery as gallery_module
    from kerasface.faces.gallery import journal_path

    path, journal = tmp_path / "g.npz", journal_path(tmp_path / "g.npz")
    gallery = _gallery(vectors[:50])
    gallery.build_index("hnsw")
    gallery.persist(path, "p0")
    assert path.is_file() and not journal.exists()
    snapshot = path.read_bytes()
    gallery.add("new", vectors[60], count=3, files=["x.jpg"])
    gallery.persist(path, "new")
    gallery.remove("p1")
    gallery.persist(path, "p1")
    gallery.add("p2", vectors[61])
    gallery.persist(path, "p2")
    assert path.read_bytes() == snapshot and len(journal.read_text().splitlines()) == 4

    loaded = Gallery.load(path)
    assert loaded.names == gallery.names and loaded.counts == gallery.counts and loaded.files["new"] == ["x.jpg"]
    np.testing.assert_array_equal(loaded.embeddings, gallery.embeddings)
    assert loaded.names[loaded.match(vectors[61:62])[0][0]] == "p2"

    with open(journal, "a") as fh:
        fh.write('{"add": "torn", "count": 1, "fi')
    assert Gallery.load(path).names == gallery.names
    reopened = Gallery.load(path)
    reopened.add("after", vectors[62])
    reopened.persist(path, "after")
    assert Gallery.load(path).names == gallery.names + ["after"]

    stale = journal.read_bytes()
    reopened.save(path)
    assert not journal.exists()
    journal.write_bytes(stale)
    assert Gallery.load(path).names == reopened.names

    monkeypatch.setattr(gallery_module, "JOURNAL_LIMIT", 1)
    fresh = Gallery.load(path)
    for name in ("a", "b"):
        fresh.add(name, vectors[70])
        fresh.persist(path, name)
    assert Gallery.load(path).names == fresh.names and not journal.exists()
    fresh.add("c", vectors[71])
    fresh.persist(path, "c")
    assert len(journal.read_text().splitlines()) == 2 and Gallery.load(path).names == fresh.names

    journal.write_text(journal.read_text().splitlines()[0] + "\nnot json\n{}\n")
    with pytest.raises(BadInputError, match="g.npz.journal: line 2 is not a gallery change"):
        Gallery.load(path)
