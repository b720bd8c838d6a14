"""A FAISS vector index over a gallery's L2-normalised embeddings, searched by inner product
(cosine similarity).

``flat``: exact search. ``ivf``: an inverted file of ``nlist`` clusters (fewer when there are
fewer than 39 vectors per cluster) trained on the vectors it is built from, ``nprobe`` of them
searched. ``ivf-pq``: the same inverted file holding 4-bit product-quantised codes (one
sub-quantizer per 8 dimensions, scanned with SIMD lookup tables: FAISS's fast-scan PQ, Andre et
al. 2015), whose ``k_factor`` x k best candidates are re-ranked by their exact inner products;
the index for galleries of a million faces. ``hnsw``: a graph of ``m`` links per vector,
``ef_search`` candidates per query; it needs no training, so it grows from an empty gallery as
the service's galleries do, which makes it the default. The search parameters were chosen with
``kerasface-benchmark-search`` (docs/benchmarks.md). Vectors are appended without rebuilding. The
index keeps a gallery row per vector; a removed vector is masked out of searches until the
gallery rebuilds the index (``Gallery.save`` once a quarter of it is masked). FAISS comes with
the ``serve`` extra (``pip install kerasface[serve]``) and is imported only when an index is made.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kerasface.errors import BadInputError

KINDS = ("flat", "ivf", "ivf-pq", "hnsw")
IVF_KINDS = ("ivf", "ivf-pq")
DEFAULT_KIND = "hnsw"
DEFAULT_PARAMS = {"flat": {}, "ivf": {"nlist": 1024, "nprobe": 128},
                  "ivf-pq": {"nlist": 1024, "nprobe": 384, "k_factor": 16},
                  "hnsw": {"m": 32, "ef_construction": 80, "ef_search": 256}}
TRAINING_POINTS_PER_LIST = 39
PQ_DIMS_PER_CODE = 8
PQ_BITS = 4
PQ_TRAINING_POINTS = TRAINING_POINTS_PER_LIST * 2 ** PQ_BITS
PQ_MAX_TRAINING_PER_LIST = 64
COMPACT_FRACTION = 0.25


def import_faiss():
    try:
        import faiss
    except ImportError:
        raise BadInputError("vector indexes need FAISS: pip install 'kerasface[serve]' (or faiss-cpu)") from None
    return faiss


def index_params(kind: str, **given) -> dict:
    """The parameters of an index ``kind``: its defaults, overridden by ``given`` (None: default)."""
    if kind not in KINDS:
        raise BadInputError(f"unknown index type {kind!r}; choose one of {', '.join(KINDS)}")
    params = dict(DEFAULT_PARAMS[kind])
    for key, value in given.items():
        if value is None:
            continue
        if key not in params:
            raise BadInputError(f"index type {kind} has no parameter {key!r} (it has: {', '.join(params) or 'none'})")
        if int(value) < 1:
            raise BadInputError(f"index parameter {key} must be >= 1, got {value}")
        params[key] = int(value)
    return params


@dataclasses.dataclass
class VectorIndex:
    """``rows[i]``: the gallery row of FAISS vector ``i``, -1 once removed."""

    kind: str
    params: dict
    faiss_index: object
    rows: np.ndarray
    _mask: tuple | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def build(cls, vectors: np.ndarray, kind: str = DEFAULT_KIND, **params) -> VectorIndex:
        """An index of ``vectors`` (N, D) float32, row ``i`` for vector ``i``."""
        faiss = import_faiss()
        params = index_params(kind, **params)
        vectors = _float32(vectors)
        dim = vectors.shape[1]
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, params["m"], faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = params["ef_construction"]
        else:
            if not len(vectors):
                raise BadInputError(f"an {kind} index is trained on the gallery's embeddings, and this gallery has "
                                    "none yet: use hnsw or flat for a new gallery")
            nlist = max(1, min(params["nlist"], len(vectors) // TRAINING_POINTS_PER_LIST))
            if kind == "ivf":
                index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
                index.train(vectors)
            else:
                index = _ivf_pq(faiss, vectors, nlist)
        built = cls(kind, params, index, np.empty(0, np.int64))
        built.configure()
        built.add(vectors, np.arange(len(vectors)))
        return built

    def configure(self) -> None:
        """Apply the search parameters (``nprobe``, ``ef_search``) to the FAISS index."""
        if self.kind == "hnsw":
            self.faiss_index.hnsw.efSearch = self.params["ef_search"]
        elif self.kind in IVF_KINDS:
            lists = import_faiss().extract_index_ivf(self.faiss_index)
            lists.nprobe = min(self.params["nprobe"], lists.nlist)
            if self.kind == "ivf-pq":
                self.faiss_index.k_factor = self.params["k_factor"]

    @property
    def nlist(self) -> int | None:
        """The number of inverted lists of an ``ivf`` or ``ivf-pq`` index (None for the others)."""
        if self.kind not in IVF_KINDS:
            return None
        return int(import_faiss().extract_index_ivf(self.faiss_index).nlist)

    @property
    def dim(self) -> int:
        return int(self.faiss_index.d)

    def _removal_mask(self) -> tuple:
        """(the FAISS ids of removed rows, a FAISS selector of every other id or None), kept until
        the rows change: the selector hashes every removed id, too much work for each query."""
        if self._mask is None:
            dead = np.flatnonzero(self.rows < 0)
            selector = None
            if len(dead):
                faiss = import_faiss()
                batch = faiss.IDSelectorBatch(dead.astype(np.int64))
                selector = (faiss.IDSelectorNot(batch), batch)  # the batch must outlive the selector
            self._mask = (dead, selector)
        return self._mask

    @property
    def removed(self) -> int:
        return len(self._removal_mask()[0])

    def add(self, vectors: np.ndarray, rows) -> None:
        """Append ``vectors`` as gallery ``rows`` (no rebuild)."""
        vectors = _float32(vectors)
        if vectors.shape[1] != self.dim:
            raise BadInputError(f"vectors of dimension {vectors.shape[1]}; the index holds {self.dim}")
        if len(vectors):
            self.faiss_index.add(vectors)
        self.rows = np.concatenate([self.rows, np.asarray(rows, np.int64)])
        self._mask = None

    def remove_row(self, row: int) -> None:
        """Forget gallery ``row``; later rows move up by one, as the gallery's own arrays do."""
        self.rows[self.rows == row] = -1
        self.rows[self.rows > row] -= 1
        self._mask = None

    def needs_compacting(self) -> bool:
        return self.removed > COMPACT_FRACTION * max(len(self.rows), 1)

    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Gallery rows (Q, k) of the ``k`` most similar vectors of each query (-1 where there are
        fewer) and their similarities."""
        faiss = import_faiss()
        queries = _float32(queries)
        if queries.shape[1] != self.dim:
            raise BadInputError(f"queries of dimension {queries.shape[1]}; the index holds {self.dim}")
        selector = self._removal_mask()[1]
        params = self._masking(faiss, selector[0]) if selector is not None else None
        scores, ids = self.faiss_index.search(queries, k, params=params)
        rows = np.where(ids >= 0, self.rows[np.clip(ids, 0, None)], -1)
        return rows, scores

    def _masking(self, faiss, selector):
        """Search parameters that search only the ids ``selector`` admits, with the index's own
        search settings."""
        if self.kind == "flat":
            return faiss.SearchParameters(sel=selector)
        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=self.faiss_index.hnsw.efSearch)
        lists = faiss.SearchParametersIVF(sel=selector, nprobe=faiss.extract_index_ivf(self.faiss_index).nprobe)
        if self.kind == "ivf":
            return lists
        return faiss.IndexRefineSearchParameters(sel=selector, k_factor=self.faiss_index.k_factor,
                                                 base_index_params=lists)

    def to_bytes(self) -> np.ndarray:
        return import_faiss().serialize_index(self.faiss_index)

    @classmethod
    def from_bytes(cls, data: np.ndarray, kind: str, params: dict, rows: np.ndarray, where: str = "index"):
        faiss = import_faiss()
        try:
            index = faiss.deserialize_index(np.asarray(data, np.uint8))
        except RuntimeError as error:
            raise BadInputError(f"{where}: the stored {kind} index does not load ({str(error).splitlines()[0]})") \
                from None
        if index.ntotal != len(rows):
            raise BadInputError(f"{where}: the stored index holds {index.ntotal} vectors for {len(rows)} rows")
        loaded = cls(kind, dict(params), index, np.asarray(rows, np.int64))
        loaded.configure()
        return loaded


def pq_codes_per_vector(dim: int) -> int:
    """Sub-quantizers of an ``ivf-pq`` code: one per 8 dimensions (64 for 512-d), or, where 8
    does not divide ``dim``, the largest divisor of ``dim`` under ``dim / 8``."""
    return next(m for m in range(max(1, dim // PQ_DIMS_PER_CODE), 0, -1) if dim % m == 0)


def _ivf_pq(faiss, vectors: np.ndarray, nlist: int):
    """IVF lists of fast-scan PQ codes behind an exact re-ranking of the candidates, trained on at
    most 64 vectors per list (a seeded sample). A gallery smaller than the 624 vectors that the
    16 centroids of each sub-quantizer want is repeated up to that many: with fewer vectors than
    centroids k-means has nothing to fit, and such a gallery's candidates are re-ranked exactly."""
    dim = vectors.shape[1]
    lists = faiss.IndexIVFPQFastScan(faiss.IndexFlatIP(dim), dim, nlist, pq_codes_per_vector(dim), PQ_BITS,
                                     faiss.METRIC_INNER_PRODUCT)
    sample = min(len(vectors), PQ_MAX_TRAINING_PER_LIST * nlist)
    training = vectors[np.sort(np.random.default_rng(0).choice(len(vectors), sample, replace=False))]
    if len(training) < PQ_TRAINING_POINTS:
        training = np.tile(training, (-(-PQ_TRAINING_POINTS // len(training)), 1))
    lists.train(training)
    return faiss.IndexRefineFlat(lists)


def _float32(vectors) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, np.float32)
    if vectors.ndim != 2:
        raise BadInputError(f"vectors must be a (N, D) array, got shape {vectors.shape}")
    return vectors
