"""Optional approximate search through Seismic (the ``pyseismic-lsr`` package), a learned-sparse-retrieval
engine built for SPLADE-like vectors, the same shape as Sparse CLIP codes.

Install with ``pip install pyseismic-lsr``. The Seismic index is built in memory from the stored codes (it
is a derived structure: nothing Seismic-specific is saved with the index).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .codes import SparseIndexError

try:
    import seismic
except ImportError:  # pragma: no cover - exercised where the package is absent
    seismic = None

#: defaults measured on synthetic 16k-feature codes with ~200 active per item (recall@10 ~0.98 at 20k items,
#: see docs/search.md); any Seismic build/query keyword overrides them
DEFAULT_BUILD = {"n_postings": 1000, "centroid_fraction": 0.05, "summary_energy": 0.4}
DEFAULT_QUERY = {"query_cut": 20, "heap_factor": 0.8}


def available() -> bool:
    """Whether the Seismic engine is installed."""
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
    postings); the exact kernel runs over these pruned lists to pick ``candidates`` items per query, which are
    then scored exactly on their full codes, so every returned score is exact and only recall is traded.
    ``codes`` are the index's (CSC, items x features); ``full`` (optional) is the same codes in CSR, to share
    one copy between several engines.
    """

    def __init__(self, codes: sp.csc_matrix, keep: float = 0.1, min_keep: int = 256,
                 full: sp.csr_matrix | None = None):
        if not 0 < keep <= 1:
            raise SparseIndexError(f"keep must be in (0, 1], got {keep}")
        codes = sp.csc_matrix(codes, dtype=np.float32)
        lengths = np.diff(codes.indptr)
        caps = np.minimum(lengths, np.maximum(min_keep, np.ceil(keep * lengths))).astype(np.int64)
        indptr = np.concatenate([[0], np.cumsum(caps)]).astype(np.int64)
        indices = np.empty(indptr[-1], codes.indices.dtype)
        data = np.empty(indptr[-1], np.float32)
        for j in np.flatnonzero(caps):
            s, e = codes.indptr[j], codes.indptr[j + 1]
            rows, vals = codes.indices[s:e], codes.data[s:e]
            if caps[j] < e - s:
                top = np.sort(np.argpartition(-vals, caps[j] - 1)[:caps[j]])  # the largest values, rows ascending
                rows, vals = rows[top], vals[top]
            indices[indptr[j]:indptr[j + 1]] = rows
            data[indptr[j]:indptr[j + 1]] = vals
        self.pruned = sp.csc_matrix((data, indices, indptr), shape=codes.shape)
        if full is not None and full.shape != codes.shape:
            raise SparseIndexError(f"full codes are {full.shape}, the codes {codes.shape}")
        self.full = codes.tocsr() if full is None else full
        self.keep = keep

    @property
    def nbytes(self) -> int:
        """Bytes of the pruned posting lists (the full codes are the index's own, shared in spirit)."""
        p = self.pruned
        return int(p.data.nbytes + p.indices.nbytes + p.indptr.nbytes)

    def search(self, queries: sp.csr_matrix, k: int, candidates: int = 100) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-``k`` ``(rows, scores)`` per query row (scores exact), shaped like exact search's."""
        from . import _topk

        cand, _ = _topk.topk(queries, self.pruned, max(k, candidates))
        nq = queries.shape[0]
        out_idx = np.full((nq, k), -1, np.int64)
        out_val = np.full((nq, k), -np.inf, np.float32)
        for i in range(nq):
            rows = cand[i][cand[i] >= 0]
            if rows.size == 0:
                continue
            scores = np.asarray((self.full[rows] @ queries[i].T).todense(), dtype=np.float32).ravel()
            order = np.lexsort((rows, -scores.astype(np.float64)))[:k]
            order = order[scores[order] > 0]
            out_idx[i, :order.size] = rows[order]
            out_val[i, :order.size] = scores[order]
        return out_idx, out_val
