"""Gallery search benchmark: each index type of ``kerasface.faces.index`` against exact search on
random unit vectors.

A gallery of ``size`` random unit vectors; each query is a gallery vector plus Gaussian noise of
norm ``noise`` (so cosine ~ 1 / sqrt(1 + noise^2) to its source), normalised. For each index:
build time, the size of the index (its serialised bytes), the latency of one
query at a time (p50, p99) and recall@1: how often its best match is exact search's.
"""

from __future__ import annotations

import time

import numpy as np

from kerasface.faces.index import VectorIndex, index_params

SEARCH_PARAM = {"flat": None, "ivf": "nprobe", "ivf-pq": "nprobe", "hnsw": "ef_search"}


def unit_vectors(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((count, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def perturbed(rng: np.random.Generator, gallery: np.ndarray, count: int, noise: float) -> np.ndarray:
    picks = rng.integers(0, len(gallery), count)
    queries = gallery[picks] + unit_vectors(rng, count, gallery.shape[1]) * np.float32(noise)
    return queries / np.linalg.norm(queries, axis=1, keepdims=True)


def _latencies_ms(index: VectorIndex, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    found, times = np.empty(len(queries), np.int64), np.empty(len(queries))
    for k in range(len(queries)):
        tick = time.perf_counter()
        rows, _ = index.search(queries[k:k + 1], 1)
        times[k] = (time.perf_counter() - tick) * 1000.0
        found[k] = rows[0, 0]
    return found, times


def benchmark_search(size: int, dim: int = 512, queries: int = 1000, noise: float = 1.0,
                     kinds=("flat", "ivf", "ivf-pq", "hnsw"), sweep: dict | None = None, seed: int = 0, log=None) -> list[dict]:
    """One row per (index, search setting): gallery size, index, params, build_s, memory_mb,
    p50_ms, p99_ms, recall_at_1. ``sweep``: {kind: [values of its search parameter]}."""
    rng = np.random.default_rng(seed)
    gallery = unit_vectors(rng, size, dim)
    probes = perturbed(rng, gallery, queries, noise)
    exact = VectorIndex.build(gallery, "flat").search(probes, 1)[0][:, 0]
    rows = []
    for kind in kinds:
        tick = time.perf_counter()
        index = VectorIndex.build(gallery, kind)
        build_s, memory = time.perf_counter() - tick, index.to_bytes().nbytes / 2 ** 20
        name = SEARCH_PARAM[kind]
        for value in (sweep or {}).get(kind) or [None]:
            if name is not None and value is not None:
                index.params = index_params(kind, **{**index.params, name: value})
                index.configure()
            found, times = _latencies_ms(index, probes)
            params = {**index.params, **({"nlist": index.nlist} if index.nlist is not None else {})}
            row = {"gallery": size, "index": kind, "params": params, "build_s": round(build_s, 2),
                   "memory_mb": round(memory, 1), "p50_ms": round(float(np.percentile(times, 50)), 3),
                   "p99_ms": round(float(np.percentile(times, 99)), 3),
                   "recall_at_1": round(float(np.mean(found == exact)), 4)}
            rows.append(row)
            if log is not None:
                log(row)
        del index
    return rows
