"""Approximate search: the own engine (:class:`PrunedSearch`, no extra package; the default) and Seismic
(:class:`SeismicSearch`, the ``pyseismic-lsr`` package, a learned-sparse-retrieval engine built for SPLADE-like
vectors, the same shape as Sparse CLIP codes).

Both are built in memory from the stored codes (derived structures: nothing engine-specific is saved with the
index). docs/search.md has their recall-vs-speed figures next to exact search and faiss. Each is an approximate
entry (``exact = False``) of :data:`sparseclip.index.backends.BACKENDS`: ``pruned`` and ``seismic``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from . import _topk as _kernels
from .backends import BACKENDS, DEFAULT_APPROXIMATE, BackendOption, SearchBackend
from .codes import SparseIndexError

try:
    import seismic
except ImportError:  # pragma: no cover - exercised where the package is absent
    seismic = None

#: Seismic defaults measured on synthetic 16k-feature codes with ~200 active per item (recall@10 ~0.98 at 20k
#: items, see docs/search.md); any Seismic build/query keyword overrides them
DEFAULT_BUILD = {"n_postings": 1000, "centroid_fraction": 0.05, "summary_energy": 0.4}
DEFAULT_QUERY = {"query_cut": 20, "heap_factor": 0.8}


def available() -> bool:
    """Whether the Seismic engine is installed (the own engine always is)."""
    return seismic is not None


class SeismicSearch:
    """A Seismic index over item codes (CSR, items x features); rows are returned as item numbers."""

    def __init__(self, codes: sp.csr_matrix, num_threads: int = 0, **build):
        if seismic is None:
            raise SparseIndexError("approximate search needs the pyseismic-lsr package (pip install pyseismic-lsr)")
        codes = sp.csr_matrix(codes, dtype=np.float32)
        codes.sort_indices()
        dataset = seismic.SeismicDataset()
        dataset.add_documents_by_id([str(i) for i in range(codes.shape[0])], codes.indices.astype(np.int64),
                                    codes.data, codes.indptr.astype(np.int64))
        params = {**DEFAULT_BUILD, **build}
        if num_threads:
            params["num_threads"] = num_threads
        self.index = seismic.SeismicIndex.build_from_dataset(dataset, **params)
        self.n_items = codes.shape[0]

    def search(self, queries: sp.csr_matrix, k: int, num_threads: int = 0,
               **query) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-``k`` ``(rows, scores)`` for each query row, shaped like exact search's."""
        params = {**DEFAULT_QUERY, **query}
        string = seismic.get_seismic_string()
        nq = queries.shape[0]
        comps, vals, qids = [], [], []
        for i in range(nq):
            s, e = queries.indptr[i], queries.indptr[i + 1]
            comps.append(np.array([str(j) for j in queries.indices[s:e]], dtype=string))
            vals.append(np.ascontiguousarray(queries.data[s:e], dtype=np.float32))
            qids.append(str(i))
        out_idx = np.full((nq, k), -1, np.int64)
        out_val = np.full((nq, k), -np.inf, np.float32)
        if nq == 1:
            results = [self.index.search(qids[0], comps[0], vals[0], k=k, **params)]
        else:
            results = self.index.batch_search(np.array(qids, dtype=string), comps, vals, k=k,
                                              num_threads=num_threads, **params)
        for res in results:
            for r, (qid, score, doc) in enumerate(res[:k]):
                out_idx[int(qid), r] = int(doc)
                out_val[int(qid), r] = score
        return out_idx, out_val


class PrunedSearch:
    """Own approximate engine, no extra package: static posting pruning, then exact re-ranking.

    Each feature's posting list keeps only its ``keep`` fraction of largest values (at least ``min_keep``
    postings). A query is scored on these pruned lists to pick its ``candidates`` best items, which are then
    scored exactly from a forward copy of the codes (each item's features and values), so every returned
    score is the exact engine's (same float32 sums in the same feature order) and only recall is traded.

    The engine stands alone: its pruned lists and its forward copy (feature numbers as ``uint16`` when there
    are at most 65,536 features) are all it reads, so :attr:`nbytes` is its whole memory. ``codes`` are the
    index's (CSC, items x features).

    The defaults (keep 30%, at least 16 postings, 100 candidates) are tuned on real Sparse CLIP codes (the
    demo's lite model; recall and speed against the exact engine are in docs/search.md, measured by
    benchmarks/bench_search.py); on codes whose frequent features are more telling, far less can be kept
    (docs/search.md has the curves).
    """

    def __init__(self, codes: sp.csc_matrix, keep: float = 0.3, min_keep: int = 16):
        if not 0 < keep <= 1:
            raise SparseIndexError(f"keep must be in (0, 1], got {keep}")
        if min_keep < 1:
            raise SparseIndexError(f"min_keep must be >= 1, got {min_keep}")
        codes = sp.csc_matrix(codes, dtype=np.float32)
        codes.sort_indices()
        self.shape = codes.shape
        lengths = np.diff(codes.indptr)
        caps = np.minimum(lengths, np.maximum(min_keep, np.ceil(keep * lengths))).astype(np.int64)
        p_ptr = np.concatenate([[0], np.cumsum(caps)]).astype(np.int64)
        p_idx = np.empty(p_ptr[-1], np.int32)
        p_val = np.empty(p_ptr[-1], np.float32)
        for j in np.flatnonzero(caps):
            s, e = codes.indptr[j], codes.indptr[j + 1]
            rows, vals = codes.indices[s:e], codes.data[s:e]
            if caps[j] < e - s:
                top = np.sort(np.argpartition(-vals, caps[j] - 1)[:caps[j]])  # the largest values, rows ascending
                rows, vals = rows[top], vals[top]
            p_idx[p_ptr[j]:p_ptr[j + 1]] = rows
            p_val[p_ptr[j]:p_ptr[j + 1]] = vals
        self.pruned = sp.csc_matrix((p_val, p_idx, p_ptr), shape=codes.shape)
        forward = codes.tocsr()
        forward.sort_indices()
        small = codes.shape[1] <= 1 << 16  # feature numbers fit in 2 bytes (scipy would widen them: raw arrays)
        self.forward = (forward.indptr.astype(np.int64), forward.indices.astype(np.uint16 if small else np.int32),
                        forward.data)
        self.keep, self.min_keep = keep, min_keep

    @property
    def nbytes(self) -> int:
        """Bytes the engine holds: its pruned posting lists and its forward copy of the codes."""
        p = self.pruned
        return int(p.data.nbytes + p.indices.nbytes + p.indptr.nbytes + sum(a.nbytes for a in self.forward))

    @property
    def pruned_nnz(self) -> int:
        """Postings kept in the pruned lists."""
        return int(self.pruned.nnz)

    def search(self, queries: sp.csr_matrix, k: int, candidates: int = 100,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-``k`` ``(rows, scores)`` per query row (scores exact), shaped like exact search's;
        ``allowed`` (bool per item) restricts the candidates, as the exact engine's filters do."""
        if k < 1:
            raise SparseIndexError(f"k must be >= 1, got {k}")
        if queries.shape[1] != self.shape[1]:
            raise SparseIndexError(f"queries have {queries.shape[1]} features, the index {self.shape[1]}")
        k = min(k, max(self.shape[0], 1))
        c = max(k, min(int(candidates), max(self.shape[0], 1)))
        q = sp.csr_matrix(queries, dtype=np.float32)
        q.sort_indices()
        cand, _ = _kernels.topk(q, self.pruned, c, allowed=allowed)  # the best c on the pruned lists
        return _kernels.rerank(q, cand, self.forward, self.shape[0], k)


@BACKENDS.register(DEFAULT_APPROXIMATE)
class PrunedBackend(SearchBackend):
    """:class:`PrunedSearch` as a search backend (build parameters ``keep``, ``min_keep``; query ``candidates``)."""

    summary = "approximate: the own engine (pruned posting lists, exact re-ranking; no extra package)"
    exact = False
    filters = True
    options = (BackendOption("keep", float, "fraction of each posting list kept (default 0.3)"),
               BackendOption("min_keep", int, "postings kept at least per feature (default 16)"))

    def prepare(self) -> None:
        self.engine = PrunedSearch(self.index.codes, **self.params)

    def search(self, queries: sp.csr_matrix, k: int, allowed: np.ndarray | None = None,
               **query: Any) -> tuple[np.ndarray, np.ndarray]:
        return self.engine.search(queries, k, allowed=allowed, **query)


@BACKENDS.register("seismic")
class SeismicBackend(SearchBackend):
    """:class:`SeismicSearch` as a search backend (Seismic's build and query keywords); takes no filters."""

    summary = "approximate: Seismic (pip install pyseismic-lsr); no feature filters"
    exact = False
    filters = False

    def prepare(self) -> None:
        self.engine = SeismicSearch(self.index.codes.tocsr(), **self.params)

    def search(self, queries: sp.csr_matrix, k: int, allowed: np.ndarray | None = None,
               **query: Any) -> tuple[np.ndarray, np.ndarray]:
        return self.engine.search(queries, k, **query)
