"""Sparse search: an exact inverted index over Sparse CLIP codes that says why each item matched.

>>> from sparseclip.index import SparseIndex
>>> index = SparseIndex.build(codes, ids=paths)          # codes: (items, features), non-negative
>>> hits = index.search(query_code, k=10, explain=5)     # each hit lists its top shared features

Who ranks is a search backend (:data:`BACKENDS`: local, milvus, pruned, seismic, or one a user registers).
"""

from . import approx, milvus  # noqa: F401  (importing them registers their search backends)
from ._topk import ENGINES, default_engine
from .backends import BACKENDS, SearchBackend
from .codes import SparseIndexError, as_csr
from .sparse_index import CODES_FILE, META_FILE, Contribution, Hit, SparseIndex

__all__ = ["BACKENDS", "CODES_FILE", "ENGINES", "META_FILE", "Contribution", "Hit", "SparseIndex", "SparseIndexError",
           "SearchBackend", "approx", "as_csr", "default_engine"]
