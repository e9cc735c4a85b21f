"""Sparse search: an exact inverted index over Sparse CLIP codes that says why each item matched.

>>> from sparseclip.index import SparseIndex
>>> index = SparseIndex.build(codes, ids=paths)          # codes: (items, features), non-negative
>>> hits = index.search(query_code, k=10, explain=5)     # each hit lists its top shared features
"""

from . import approx
from ._topk import ENGINES, default_engine
from .codes import SparseIndexError, as_csr
from .sparse_index import CODES_FILE, META_FILE, Contribution, Hit, SparseIndex

__all__ = ["CODES_FILE", "ENGINES", "META_FILE", "Contribution", "Hit", "SparseIndex", "SparseIndexError",
           "approx", "as_csr", "default_engine"]
