"""``SparseIndex``: exact inverted-index search over Sparse CLIP codes, with explanations and filters.

On disk an index is a directory with two open files:

- ``codes.npz``: the item codes, a ``scipy.sparse`` CSC matrix (items x features, float32) written by
  ``scipy.sparse.save_npz`` and read back with ``allow_pickle=False``. CSC is the inverted index itself
  (column ``j`` lists the items with feature ``j`` active), so loading needs no conversion.
- ``index.json``: format name and version, ``n_items``, ``n_features``, ``normalize``, the items' ``ids``
  (ids or paths, in row order), optional ``captions`` (a text shown with each item), ``feature_names``
  (``{"id": "name"}``) and ``model`` (where the codes came from: checkpoint path and config), so a query
  can be embedded with the same model; ``backend``: who ranks its searches, ``{"kind": NAME, **params}`` of an
  entry of :data:`sparseclip.index.backends.BACKENDS`, or null for the local inverted index (e.g. ``{"kind":
  "milvus", "uri", "collection"}``, see :mod:`sparseclip.index.milvus`; a backend's own files in the directory,
  such as Milvus Lite's ``milvus.db``, are kept when the index is saved again).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..files.atomic import atomic_dir, commit_dir
from .backends import (
    BACKENDS,
    DEFAULT_APPROXIMATE,
    DEFAULT_BACKEND,
    SearchBackend,
    approximate_names,
    backend_class,
    open_backend,
)
from .codes import SparseIndexError, as_csr, check_nonnegative, l2_normalize_rows, row_scales, scale_columns_of_rows

FORMAT = "sparseclip-index"
VERSION = 1
CODES_FILE = "codes.npz"
META_FILE = "index.json"


@dataclass
class Contribution:
    """One shared feature's part of a hit's score: ``contribution = query_value * item_value``."""

    feature: int
    name: str | None
    query_value: float
    item_value: float
    contribution: float


@dataclass
class Hit:
    """One search result. With explanations, ``sum(c.contribution for c in contributions) + rest == score``
    (``rest`` is the part of the score from the shared features not listed)."""

    rank: int
    row: int
    id: str
    score: float
    caption: str | None = None
    contributions: list[Contribution] = field(default_factory=list)
    rest: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class SparseIndex:
    """An inverted index over non-negative sparse codes (items x features).

    With ``normalize=True`` (the default) item codes are stored L2-normalised and queries are normalised
    too, so scores are cosine similarities, as CLIP retrieval uses; with ``False`` scores are raw dot
    products of the codes as given.
    """

    def __init__(self, codes: sp.csc_matrix, ids: Sequence[str], *, normalize: bool = True,
                 feature_names: Mapping[int, str] | None = None, model: dict | None = None,
                 captions: Sequence[str] | None = None, feature_concepts: Mapping[int, str] | None = None):
        if codes.shape[0] != len(ids):
            raise SparseIndexError(f"{codes.shape[0]} code rows but {len(ids)} ids")
        if captions is not None and len(captions) != len(ids):
            raise SparseIndexError(f"{len(ids)} ids but {len(captions)} captions")
        self.codes = codes if getattr(codes, "format", None) == "csc" and codes.dtype == np.float32 else \
            sp.csc_matrix(codes, dtype=np.float32)
        self.codes.sort_indices()
        self.ids = list(ids)
        self.captions = None if captions is None else [str(c) for c in captions]
        self.normalize = normalize
        self.feature_names: dict[int, str] = {int(k): str(v) for k, v in (feature_names or {}).items()}
        #: feature -> the concept it belongs to by evidence (``interpret.evidence``): explanations group by it
        self.feature_concepts: dict[int, str] = {int(k): str(v) for k, v in (feature_concepts or {}).items()}
        self.model = model
        #: who ranks plain searches: a name in ``backends.BACKENDS``, opened with ``backend_params``
        self.backend: str = DEFAULT_BACKEND
        self.backend_params: dict[str, Any] = {}
        self.directory: Path | None = None  # where it was last loaded from or saved to
        self._opened: dict[str, SearchBackend] = {}  # backends opened on this index, by name
        self._approx: SearchBackend | None = None  # what approximate=True searches with (build_approximate)

    # -- building --------------------------------------------------------------------------------
    @classmethod
    def build(cls, codes: Any, ids: Sequence[str] | None = None, *, normalize: bool = True,
              feature_names: Mapping[int, str] | None = None, model: dict | None = None,
              captions: Sequence[str] | None = None,
              feature_concepts: Mapping[int, str] | None = None) -> SparseIndex:
        """An index over ``codes`` (dense or sparse, items x features); ``ids`` default to row numbers;
        ``captions`` (optional) are shown with the hits."""
        m = cls._prepare_items(codes, None, normalize)
        ids = [str(i) for i in range(m.shape[0])] if ids is None else [str(i) for i in ids]
        return cls(m, ids, normalize=normalize, feature_names=feature_names, model=model, captions=captions,
                   feature_concepts=feature_concepts)

    @staticmethod
    def _prepare_items(codes: Any, n_features: int | None, normalize: bool) -> sp.csc_matrix:
        """Validated codes in CSC, rows L2-normalised on the (new) CSC copy, so only one copy is made."""
        m = as_csr(codes, n_features)
        check_nonnegative(m)
        scale = row_scales(m) if normalize else None
        m = m.tocsc()
        if scale is not None:
            scale_columns_of_rows(m, scale)
        return m

    def append(self, codes: Any, ids: Sequence[str] | None = None, captions: Sequence[str] | None = None) -> None:
        """Add items (rows) at the end; ``ids`` default to their row numbers."""
        m = self._prepare_items(codes, self.n_features, self.normalize)
        start = len(self)
        new_ids = [str(start + i) for i in range(m.shape[0])] if ids is None else [str(i) for i in ids]
        if len(new_ids) != m.shape[0]:
            raise SparseIndexError(f"{m.shape[0]} code rows but {len(new_ids)} ids")
        if captions is not None and len(captions) != len(new_ids):
            raise SparseIndexError(f"{len(new_ids)} ids but {len(captions)} captions")
        self.codes = sp.vstack([self.codes, m], format="csc")
        self.codes.sort_indices()
        if captions is not None or self.captions is not None:
            old = self.captions if self.captions is not None else [""] * start
            self.captions = old + ([str(c) for c in captions] if captions is not None else [""] * len(new_ids))
        self.ids.extend(new_ids)
        self.close()  # opened backends do not know the new items: opened again on the next search

    # -- facts -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.codes.shape[0]

    @property
    def n_features(self) -> int:
        return self.codes.shape[1]

    @property
    def nnz(self) -> int:
        return int(self.codes.nnz)

    @property
    def nbytes(self) -> int:
        """Bytes of the search structures in memory (values, item numbers, posting offsets)."""
        c = self.codes
        return int(c.data.nbytes + c.indices.nbytes + c.indptr.nbytes)

    def caption(self, row: int) -> str | None:
        return self.captions[row] if self.captions is not None else None

    def feature_name(self, feature: int) -> str | None:
        return self.feature_names.get(int(feature))

    # -- backends --------------------------------------------------------------------------------
    def use_backend(self, name: str, **params: Any) -> None:
        """Rank plain searches with the backend ``name`` of ``backends.BACKENDS`` from now on (``params``: its build
        parameters, checked now, stored in ``index.json``); a backend that keeps a copy of the codes receives
        them on the next :meth:`save`."""
        params = backend_class(name).check(**params)
        self.close()
        self.backend, self.backend_params = name, params

    def ranker(self, name: str | None = None) -> SearchBackend:
        """The backend ``name`` (default: the index's own) opened on this index and prepared for searching."""
        return self._open(name).ready()

    def ranked_by(self) -> str:
        """How plain searches are ranked, in words (``"ranked by Milvus (milvus.db, collection c)"``; empty for the
        local default)."""
        return self._open().describe()

    def _open(self, name: str | None = None) -> SearchBackend:
        name = self.backend if name is None else name
        if name not in self._opened:
            self._opened[name] = open_backend(self, name, self.backend_params if name == self.backend else None)
        return self._opened[name]

    def close(self) -> None:
        """Close the opened backends (connections, in-memory engines); they are opened again when needed."""
        for backend in self._opened.values():
            backend.close()
        if self._approx is not None:
            self._approx.close()
        self._opened, self._approx = {}, None

    # -- persistence -----------------------------------------------------------------------------
    def save(self, directory: str | Path, compressed: bool = False) -> Path:
        """Write ``codes.npz`` and ``index.json`` into ``directory`` (replaced atomically); then the backend
        catches up (the milvus backend sends Milvus the items it lacks)."""
        final = Path(directory)
        if final.exists() and not final.is_dir():
            raise SparseIndexError(f"{final} exists and is not a directory")
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = atomic_dir(final)
        sp.save_npz(tmp / CODES_FILE, self.codes, compressed=compressed)
        meta = {
            "format": FORMAT, "version": VERSION, "n_items": len(self), "n_features": self.n_features,
            "nnz": self.nnz, "normalize": self.normalize, "model": self.model,
            "feature_names": {str(k): v for k, v in sorted(self.feature_names.items())}, "ids": self.ids,
            "captions": self.captions, "backend": self._open().record(),
            "feature_concepts": {str(k): v for k, v in sorted(self.feature_concepts.items())},
        }
        (tmp / META_FILE).write_text(json.dumps(meta))
        own_files = self._open().own_files
        for backend in self._opened.values():  # the folder is replaced: nothing may hold files in it
            backend.close()
        self._opened = {}
        for name in own_files:  # the backend's own files (Milvus Lite's database) stay with the index
            if (final / name).exists():
                os.replace(final / name, tmp / name)
        commit_dir(tmp, final)
        self.directory = final
        self._open().saved()
        return final

    @classmethod
    def load(cls, directory: str | Path) -> SparseIndex:
        """Read an index written by :meth:`save`; any problem is one :class:`SparseIndexError` line."""
        d = Path(directory)
        if not d.is_dir():
            raise SparseIndexError(f"no index directory at {d}")
        meta = _read_meta(d)
        try:
            codes = sp.load_npz(d / CODES_FILE)
        except FileNotFoundError:
            raise SparseIndexError(f"{d}: missing {CODES_FILE}") from None
        except Exception as e:  # corrupt zip, pickled/object arrays (allow_pickle=False), wrong keys
            raise SparseIndexError(f"{d / CODES_FILE}: not a readable sparse matrix ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0] if str(e) else ''})") from None
        codes = sp.csc_matrix(codes, dtype=np.float32)
        if codes.shape != (meta["n_items"], meta["n_features"]) or len(meta["ids"]) != codes.shape[0]:
            raise SparseIndexError(f"{d}: {CODES_FILE} is {codes.shape[0]}x{codes.shape[1]} but {META_FILE} "
                                   f"says {meta['n_items']}x{meta['n_features']} with {len(meta['ids'])} ids")
        codes.sort_indices()
        captions = meta.get("captions")
        if captions is not None and (not isinstance(captions, list) or len(captions) != len(meta["ids"])):
            raise SparseIndexError(f"{d / META_FILE}: 'captions' must be a list with one entry per id")
        index = cls(codes, meta["ids"], normalize=bool(meta["normalize"]), model=meta.get("model"), captions=captions,
                    feature_names={int(k): v for k, v in (meta.get("feature_names") or {}).items()},
                    feature_concepts={int(k): v for k, v in (meta.get("feature_concepts") or {}).items()})
        backend = meta.get("backend")
        if backend is not None:
            kind = backend.get("kind") if isinstance(backend, dict) else None
            if not isinstance(kind, str) or kind not in BACKENDS:
                raise SparseIndexError(f"{d / META_FILE}: unknown backend {backend!r} "
                                       f"(registered: {', '.join(BACKENDS)})")
            index.backend, index.backend_params = kind, {k: v for k, v in backend.items() if k != "kind"}
        index.directory = d
        return index

    # -- queries ---------------------------------------------------------------------------------
    def prepare_queries(self, queries: Any, boost: Mapping[int, float] | None = None) -> sp.csr_matrix:
        """Queries as the search scores them: CSR float32, L2-normalised when the index is, plus ``boost``
        (feature -> weight added to every query, in the same units; negative weights penalise)."""
        q = as_csr(queries, self.n_features, what="queries")
        if self.normalize:
            q = l2_normalize_rows(q)
        if boost:
            feats = np.array([int(f) for f in boost], dtype=np.int64)
            self._check_features(feats)
            row = sp.csr_matrix((np.array(list(boost.values()), dtype=np.float32),
                                 (np.zeros(len(feats), np.int64), feats)), shape=(1, self.n_features))
            q = as_csr(q + sp.vstack([row] * q.shape[0]), what="queries")
        return q

    def _check_features(self, feats: np.ndarray) -> None:
        if feats.size and (feats.min() < 0 or feats.max() >= self.n_features):
            raise SparseIndexError(f"feature ids must be in [0, {self.n_features}), got {feats.tolist()}")

    def _items_with(self, feature: int, min_activation: float) -> np.ndarray:
        s, e = self.codes.indptr[feature], self.codes.indptr[feature + 1]
        return self.codes.indices[s:e][self.codes.data[s:e] > min_activation]

    def allowed_mask(self, require: Iterable[int] | None = None, require_any: Iterable[int] | None = None,
                     exclude: Iterable[int] | None = None, min_activation: float = 0.0) -> np.ndarray | None:
        """Items that have every ``require`` feature, at least one ``require_any`` feature and no ``exclude``
        feature active (value > ``min_activation``); None when there is no filter."""
        groups = [np.array(sorted({int(f) for f in g}), dtype=np.int64) if g is not None else None
                  for g in (require, require_any, exclude)]
        if all(g is None or g.size == 0 for g in groups):
            return None
        for g in groups:
            if g is not None:
                self._check_features(g)
        req, req_any, excl = groups
        n = len(self)
        mask = np.ones(n, dtype=bool)
        if req is not None:
            for f in req:
                has = np.zeros(n, dtype=bool)
                has[self._items_with(f, min_activation)] = True
                mask &= has
        if req_any is not None and req_any.size:
            has = np.zeros(n, dtype=bool)
            for f in req_any:
                has[self._items_with(f, min_activation)] = True
            mask &= has
        if excl is not None:
            for f in excl:
                mask[self._items_with(f, min_activation)] = False
        return mask

    def search_rows(self, queries: sp.csr_matrix, k: int = 10, *, allowed: np.ndarray | None = None,
                    engine: str | None = None, approximate: bool = False,
                    **approx_params) -> tuple[np.ndarray, np.ndarray]:
        """Low-level search over prepared queries: ``(rows, scores)`` shaped ``(n_queries, k)``, best first,
        row -1 / score -inf where fewer than ``k`` items score above 0. Ranked by the index's backend, or with
        ``engine`` (an exact kernel: numba, scipy) locally, or with ``approximate`` by the approximate backend
        (``approx_params``: its query keywords). A filtered search that the backend cannot filter runs locally
        when the backend is exact (the same result) and is refused when it is approximate."""
        if k < 1:
            raise SparseIndexError(f"k must be >= 1, got {k}")
        if approximate:
            backend = self._approximate()
        elif engine is None and len(self):
            backend, approx_params = self.ranker(), {}
        else:
            backend, approx_params = self.ranker(DEFAULT_BACKEND), {"engine": engine}
        if allowed is not None and not backend.filters:
            if not backend.exact:
                raise SparseIndexError(f"feature filters are not supported with the {backend.name} search backend")
            backend, approx_params = self.ranker(DEFAULT_BACKEND), {"engine": engine}
        return backend.search(queries, k, allowed=allowed, **approx_params)

    def _approximate(self) -> SearchBackend:
        """What ``approximate=True`` searches with: the one :meth:`build_approximate` built, else the index's
        backend when it is approximate, else the default approximate one (built now)."""
        if self._approx is None and not backend_class(self.backend).exact:
            return self.ranker()
        if self._approx is None:
            self.build_approximate()
        return self._approx

    def build_approximate(self, engine: str = DEFAULT_APPROXIMATE, **build_params) -> None:
        """Build the approximate backend that ``approximate=True`` searches with: ``pruned``
        (:class:`~sparseclip.index.approx.PrunedSearch`, no extra package; ``keep``, ``min_keep``), ``seismic``
        (``pip install pyseismic-lsr``) or another registered one. Built in memory from the codes, never saved;
        appending items drops it."""
        choices = approximate_names()
        if engine not in choices:
            raise SparseIndexError(f"unknown approximate engine {engine!r}; choose one of {', '.join(choices)}")
        if self._approx is not None:
            self._approx.close()
        self._approx = open_backend(self, engine, build_params).ready()

    def search(self, query: Any, k: int = 10, **kwargs) -> list[Hit]:
        """Top-``k`` hits for one query code (1-D, or one row); keywords as :meth:`search_batch`."""
        q = as_csr(query, self.n_features, what="query")
        if q.shape[0] != 1:
            raise SparseIndexError(f"search takes one query, got {q.shape[0]}; use search_batch")
        return self.search_batch(q, k, **kwargs)[0]

    def search_batch(self, queries: Any, k: int = 10, *, require: Iterable[int] | None = None,
                     require_any: Iterable[int] | None = None, exclude: Iterable[int] | None = None,
                     boost: Mapping[int, float] | None = None, min_activation: float = 0.0, explain: int = 0,
                     approximate: bool = False, engine: str | None = None,
                     allowed: np.ndarray | None = None) -> list[list[Hit]]:
        """Top-``k`` hits for each query row.

        ``require``/``require_any``/``exclude`` filter items by their active features (see
        :meth:`allowed_mask`) and ``allowed`` (bool per item) restricts them further; ``boost`` adds
        feature weights to the queries; ``explain`` > 0 attaches that many largest contributions to each
        hit (``explain=-1``: all of them).
        """
        q = self.prepare_queries(queries, boost)
        mask = self.allowed_mask(require, require_any, exclude, min_activation)
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=bool)
            if allowed.shape != (len(self),):
                raise SparseIndexError(f"allowed must hold one bool per item ({len(self)}), got {allowed.shape}")
            mask = allowed if mask is None else mask & allowed
        allowed = mask
        rows, scores = self.search_rows(q, k, allowed=allowed, engine=engine, approximate=approximate)
        out = []
        for qi in range(q.shape[0]):
            keep = rows[qi] >= 0
            hits = [Hit(rank=r + 1, row=int(row), id=self.ids[row], score=float(s), caption=self.caption(row))
                    for r, (row, s) in enumerate(zip(rows[qi][keep], scores[qi][keep], strict=True))]
            if explain and hits:
                self._attach_explanations(q[qi], hits, explain)
            out.append(hits)
        return out

    # -- explanations ----------------------------------------------------------------------------
    def item_values(self, rows: Sequence[int] | np.ndarray, features: Sequence[int] | np.ndarray) -> np.ndarray:
        """Dense ``(len(rows), len(features))`` code values, read from the posting lists by binary search."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros((rows.size, len(features)), dtype=np.float32)
        for c, f in enumerate(features):
            s, e = self.codes.indptr[f], self.codes.indptr[f + 1]
            post = self.codes.indices[s:e]
            pos = np.minimum(np.searchsorted(post, rows), max(post.size - 1, 0))
            if post.size:
                found = post[pos] == rows
                out[found, c] = self.codes.data[s:e][pos[found]]
        return out

    def _attach_explanations(self, q: sp.csr_matrix, hits: list[Hit], top: int) -> None:
        vals = self.item_values([h.row for h in hits], q.indices)
        contrib = vals.astype(np.float64) * q.data.astype(np.float64)
        for h, item_vals, c in zip(hits, vals, contrib, strict=True):
            order = [j for j in np.argsort(-c, kind="stable") if item_vals[j] != 0]
            shown = order if top < 0 else order[:top]
            h.contributions = [Contribution(int(q.indices[j]), self.feature_name(q.indices[j]), float(q.data[j]),
                                            float(item_vals[j]), float(c[j])) for j in shown]
            h.rest = float(c[order[len(shown):]].sum()) if len(order) > len(shown) else 0.0

    def explain(self, query: Any, row: int, top: int = -1, boost: Mapping[int, float] | None = None) -> Hit:
        """Why item ``row`` scores what it does for ``query``: a :class:`Hit` with its contributions."""
        if not 0 <= row < len(self):
            raise SparseIndexError(f"row {row} is out of range for an index of {len(self)} items")
        q = self.prepare_queries(query, boost)
        hit = Hit(rank=0, row=int(row), id=self.ids[row], score=0.0, caption=self.caption(row))
        self._attach_explanations(q[0], [hit], -1)
        hit.score = float(sum(c.contribution for c in hit.contributions))
        if top >= 0:
            hit.rest = float(sum(c.contribution for c in hit.contributions[top:]))
            hit.contributions = hit.contributions[:top]
        return hit


def _read_meta(d: Path) -> dict:
    path = d / META_FILE
    if not path.is_file():
        raise SparseIndexError(f"{d} is not a sparseclip index (no {META_FILE})")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SparseIndexError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SparseIndexError(f"{path}: not a sparseclip index file (format is not {FORMAT!r})")
    if meta.get("version") != VERSION:
        raise SparseIndexError(f"{path}: index version {meta.get('version')} is not supported (need {VERSION})")
    missing = [key for key in ("n_items", "n_features", "normalize", "ids") if key not in meta]
    if missing:
        raise SparseIndexError(f"{path}: missing {', '.join(missing)}")
    if not isinstance(meta["ids"], list):
        raise SparseIndexError(f"{path}: 'ids' must be a list")
    return meta
