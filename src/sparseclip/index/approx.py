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
