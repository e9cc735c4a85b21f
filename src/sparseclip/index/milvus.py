"""Optional Milvus backend: the index's top-k search done by Milvus (``pip install 'sparseclip[milvus]'``).

The codes go into a Milvus collection with an ``INT64`` primary key (the item's row in the index) and a
``SPARSE_FLOAT_VECTOR`` field indexed by ``SPARSE_INVERTED_INDEX`` with the inner-product metric, so Milvus
scores exactly what the local engine scores. By default the collection lives in an embedded Milvus Lite
database inside the index directory (``INDEX_DIR/milvus.db``, no server, no network); a server URI
(``http://host:19530``) points it at a Milvus cluster instead. Milvus Lite 3.x implements the sparse inverted
index in Python: exact, but slow beyond tens of thousands of items (see docs/search.md); a server's index is
native.

The index directory keeps its ``codes.npz`` and ``index.json`` as always: ids, captions, feature names,
filters and explanations come from there, only the ranking comes from Milvus. :class:`MilvusBackend` is the
``milvus`` entry of :data:`sparseclip.index.backends.BACKENDS` (``index.use_backend("milvus", uri=None,
collection=None)``, ``sparseclip index build --backend milvus [--milvus-uri URI] [--milvus-collection NAME]``);
its ``index.json`` entry is ``{"kind": "milvus", "uri": ..., "collection": ...}``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from .backends import BACKENDS, BackendOption, SearchBackend
from .codes import SparseIndexError

if TYPE_CHECKING:
    from .sparse_index import SparseIndex


#: the embedded database's folder inside an index directory (the default URI)
LITE_DB = "milvus.db"
PRIMARY = "row"
VECTOR = "code"
INSERT_BATCH = 5000
#: the most hits Milvus returns for one query (its topk limit)
MAX_LIMIT = 16384


def _pymilvus():
    """The ``pymilvus`` module, or None when it is not installed (imported when first needed: it takes a while)."""
    try:
        import pymilvus
    except ImportError:  # pragma: no cover - exercised where the package is absent
        return None
    return pymilvus


def available() -> bool:
    """Whether ``pymilvus`` is installed (with ``milvus-lite`` for the embedded default)."""
    return _pymilvus() is not None


def is_server_uri(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "tcp://", "grpc://"))


def resolve_uri(uri: str | None, index_dir: str | Path) -> str:
    """A server URI as given; else a Milvus Lite database path (default ``INDEX_DIR/milvus.db``; a relative
    path is relative to the index directory)."""
    if uri and is_server_uri(uri):
        return uri
    path = Path(uri or LITE_DB)
    return str(path if path.is_absolute() else Path(index_dir).resolve() / path)


class MilvusStore:
    """One collection of item codes in Milvus; rows are the index's row numbers."""

    def __init__(self, uri: str, collection: str):
        pymilvus = _pymilvus()
        if pymilvus is None:
            raise SparseIndexError("the milvus backend needs pymilvus and milvus-lite "
                                   "(pip install 'sparseclip[milvus]')")
        self.uri = uri
        self.collection = collection
        try:
            self.client = pymilvus.MilvusClient(uri)
        except Exception as e:  # unreachable server, unusable database path
            raise SparseIndexError(f"cannot open Milvus at {uri}: {_one_line(e)}") from None

    def close(self) -> None:
        self.client.close()

    def exists(self) -> bool:
        return bool(self.client.has_collection(self.collection))

    def create(self, replace: bool = False) -> None:
        """Create the collection (dropping an existing one with ``replace``)."""
        if self.exists():
            if not replace:
                raise SparseIndexError(f"Milvus at {self.uri} already has a collection {self.collection!r}")
            self.client.drop_collection(self.collection)
        pymilvus = _pymilvus()
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(PRIMARY, pymilvus.DataType.INT64, is_primary=True)
        schema.add_field(VECTOR, pymilvus.DataType.SPARSE_FLOAT_VECTOR)
        params = self.client.prepare_index_params()
        params.add_index(field_name=VECTOR, index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        self.client.create_collection(self.collection, schema=schema, index_params=params)

    def insert(self, codes: sp.csr_matrix, first_row: int = 0) -> None:
        """Insert ``codes`` (CSR, one item per row) as rows ``first_row, first_row + 1, ...``."""
        codes = sp.csr_matrix(codes, dtype=np.float32)
        for s in range(0, codes.shape[0], INSERT_BATCH):
            rows = []
            for i in range(s, min(s + INSERT_BATCH, codes.shape[0])):
                a, b = codes.indptr[i], codes.indptr[i + 1]
                vec = dict(zip(codes.indices[a:b].tolist(), codes.data[a:b].tolist(), strict=True))
                rows.append({PRIMARY: first_row + i, VECTOR: vec})
            self.client.insert(self.collection, rows)
        self.client.flush(self.collection)

    def count(self) -> int:
        stats = self.client.get_collection_stats(self.collection)
        return int(stats.get("row_count", 0))

    def load(self) -> None:
        self.client.load_collection(self.collection)

    def search(self, queries: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(rows, scores)`` per query row, shaped and ordered like exact search's: best first, ties
        by row, only scores > 0, empty slots -1 / -inf. Milvus is asked for ``k`` plus a margin so that ties at
        the cut are resolved by row here, not by Milvus's internal order."""
        if k > MAX_LIMIT // 2:
            raise SparseIndexError(f"k={k} is more than the milvus backend returns ({MAX_LIMIT // 2}); "
                                   "search locally (engine='numba') for larger k")
        nq = queries.shape[0]
        out_idx = np.full((nq, k), -1, np.int64)
        out_val = np.full((nq, k), -np.inf, np.float32)
        data, which = [], []
        for i in range(nq):
            a, b = queries.indptr[i], queries.indptr[i + 1]
            if a == b:
                continue
            data.append(dict(zip(queries.indices[a:b].tolist(), queries.data[a:b].tolist(), strict=True)))
            which.append(i)
        if not data:
            return out_idx, out_val
        try:
            results = self.client.search(self.collection, data=data, anns_field=VECTOR, limit=k + max(k, 10),
                                         search_params={"metric_type": "IP"}, output_fields=[PRIMARY])
        except Exception as e:
            raise SparseIndexError(f"Milvus search failed ({self.uri}, {self.collection!r}): {_one_line(e)}") from None
        for i, hits in zip(which, results, strict=True):
            got = [(float(h["distance"]), int(h[PRIMARY])) for h in hits if float(h["distance"]) > 0]
            got.sort(key=lambda t: (-t[0], t[1]))
            for r, (score, row) in enumerate(got[:k]):
                out_idx[i, r] = row
                out_val[i, r] = score
        return out_idx, out_val


@BACKENDS.register("milvus")
class MilvusBackend(SearchBackend):
    """Exact ranking by Milvus: a collection of the codes (embedded Milvus Lite in ``INDEX_DIR/milvus.db`` by
    default, or a server), sent when the index is saved; filtered searches run locally (same result)."""

    summary = "Milvus, exact (sparseclip[milvus]): Milvus Lite in INDEX_DIR/milvus.db, or a server (--milvus-uri)"
    exact = True
    filters = False
    options = (BackendOption("uri", help="Milvus server (http://host:19530) or Milvus Lite database path (default: "
                             "INDEX_DIR/milvus.db, embedded, no server)", metavar="URI"),
               BackendOption("collection", help="collection name (default sparseclip_<INDEX_DIR name>)",
                             metavar="NAME"))
    own_files = (LITE_DB,)  # the embedded database stays with the index

    def __init__(self, index: SparseIndex, uri: str | None = None, collection: str | None = None):
        super().__init__(index, uri=uri, collection=collection)
        self.store: MilvusStore | None = None

    @classmethod
    def check(cls, uri: str | None = None, collection: str | None = None) -> dict[str, Any]:
        if not available():
            raise SparseIndexError("the milvus backend needs pymilvus and milvus-lite "
                                   "(pip install 'sparseclip[milvus]')")
        if collection is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,254}", collection):
            raise SparseIndexError(f"Milvus collection name {collection!r}: use letters, digits and underscores")
        return {"uri": uri, "collection": collection}

    def collection_name(self) -> str:
        """The collection's name: as given, else ``sparseclip_<index directory name>``."""
        if self.params.get("collection"):
            return self.params["collection"]
        stem = re.sub(r"\W", "_", self.index.directory.name if self.index.directory else "index")
        return f"sparseclip_{stem}"[:255]

    def _open(self) -> MilvusStore:
        return MilvusStore(resolve_uri(self.params.get("uri"), self.index.directory), self.collection_name())

    def prepare(self) -> None:
        """Open the collection of the saved index, checked to hold every item."""
        if self.index.directory is None:
            raise SparseIndexError("save the index before searching it through Milvus")
        store = self._open()
        have = store.count() if store.exists() else 0
        if have != len(self.index):
            store.close()
            raise SparseIndexError(f"the Milvus collection {store.collection!r} at {store.uri} holds {have} items, "
                                   f"the index {len(self.index)}: build the index again")
        store.load()
        self.store = store

    def search(self, queries: sp.csr_matrix, k: int, allowed: np.ndarray | None = None,
               **query: Any) -> tuple[np.ndarray, np.ndarray]:
        if allowed is not None:
            raise SparseIndexError("the milvus backend does not filter; filtered searches run locally")
        return self.store.search(queries, min(k, len(self.index)))

    def describe(self) -> str:
        return f"ranked by Milvus ({self.params.get('uri') or LITE_DB}, collection {self.collection_name()})"

    def saved(self) -> None:
        """Send the rows Milvus does not have yet (all of them for a new collection)."""
        store = self._open()
        try:
            have = store.count() if store.exists() else None
            if have is None or have > len(self.index):  # new, or a stale collection from another index: start over
                store.create(replace=have is not None)
                have = 0
            if have < len(self.index):
                store.insert(self.index.codes[have:].tocsr(), first_row=have)
        finally:
            store.close()

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"
