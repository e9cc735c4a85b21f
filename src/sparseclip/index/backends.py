"""Search backends: who ranks an index's items for a query. One registry, :data:`BACKENDS`, in the project's one
registration style (:class:`sparseclip.registry.Registry`, timm's ``register_model`` / ``create_model``).

An entry is a :class:`SearchBackend` subclass registered under its name. Shipped entries:

- ``local`` (here, the default): the exact inverted-index kernels of :mod:`sparseclip.index._topk`;
- ``milvus`` (:mod:`sparseclip.index.milvus`): exact, the codes copied into a Milvus collection;
- ``pruned`` and ``seismic`` (:mod:`sparseclip.index.approx`): approximate engines built in memory from the codes.

Exact and approximate engines are entries of the same registry because they answer the same call
(:meth:`SearchBackend.search`: prepared queries, ``k``, an optional mask -> rows and scores); what differs is
declared by the entry, never found out by its name: :attr:`~SearchBackend.exact` (the hits of the local exact
search, or an approximation of them) and :attr:`~SearchBackend.filters` (whether it takes an ``allowed`` mask).

How :class:`~sparseclip.index.SparseIndex` uses them: the index's backend (``index.json``'s ``backend``:
``{"kind": NAME, **params}``, or null for ``local``; set by ``index.use_backend(NAME, **params)`` or
``sparseclip index build --backend NAME``) ranks plain searches; ``approximate=True`` uses the index's backend
when it is approximate, else the one :meth:`SparseIndex.build_approximate` built (default ``pruned``); a filtered
search that an exact backend cannot filter runs locally (same result); an approximate one refuses it. An entry
is opened on an index with ``cls(index, **params)`` (cheap), :meth:`~SearchBackend.prepare`-d before its first
search (where it builds or connects), and closed when the index's items change or its folder is replaced.

A new backend, in the library or in a user's module (or a test), is one decorated class::

    @BACKENDS.register("numpy-brute")
    class NumpyBrute(SearchBackend):
        def prepare(self): self.dense = self.index.codes.toarray()
        def search(self, queries, k, allowed=None): ...   # (rows, scores), (n_queries, k), best first

after which ``sparseclip index build RUN --out IDX --backend numpy-brute`` builds, saves, loads and searches
with it; ``options`` adds ``--numpy-brute-<option>`` flags to ``index build``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import scipy.sparse as sp

from ..registry import Registry, RegistryError
from . import _topk
from .codes import SparseIndexError

if TYPE_CHECKING:
    from .sparse_index import SparseIndex

#: the backend of an index that names none (``"backend": null`` in its index.json)
DEFAULT_BACKEND = "local"
#: the engine ``approximate=True`` builds when the index's own backend is exact
DEFAULT_APPROXIMATE = "pruned"


@dataclass(frozen=True)
class BackendOption:
    """A build parameter of a backend that ``sparseclip index build`` offers as ``--<backend>-<name>``."""

    name: str
    type: Callable[[str], Any] = str
    help: str = ""
    metavar: str | None = None


class SearchBackend:
    """The contract of a search backend (see the module docstring). Subclasses override :meth:`search`, and
    where they need it :meth:`prepare`, :meth:`close`, :meth:`check`, :meth:`describe`, :meth:`record` and the
    save hooks :attr:`own_files` / :meth:`saved`."""

    #: one line for ``sparseclip index build --help``
    summary: ClassVar[str] = ""
    #: True: returns the local exact search's hits; False: approximate (recall traded for speed)
    exact: ClassVar[bool] = True
    #: True: :meth:`search` takes an ``allowed`` mask (feature filters)
    filters: ClassVar[bool] = True
    #: build parameters offered on the command line (stored in index.json with the kind)
    options: ClassVar[tuple[BackendOption, ...]] = ()
    #: files or folders of the index directory that belong to the backend: kept when the index is saved again
    own_files: ClassVar[tuple[str, ...]] = ()

    def __init__(self, index: SparseIndex, **params: Any):
        self.index = index
        self.params = params
        self.name = ""  # set by open_backend: the name it was registered and opened under
        self._prepared = False

    @classmethod
    def check(cls, **params: Any) -> dict[str, Any]:
        """Validate build parameters before they are stored (one :class:`SparseIndexError` line); returns them."""
        return dict(params)

    def prepare(self) -> None:
        """Build or connect what searching needs (called once, before the first search)."""

    def ready(self) -> SearchBackend:
        """This backend, prepared."""
        if not self._prepared:
            self.prepare()
            self._prepared = True
        return self

    def search(self, queries: sp.csr_matrix, k: int, allowed: np.ndarray | None = None,
               **query: Any) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(rows, scores)`` of prepared queries (CSR, as :meth:`SparseIndex.prepare_queries` makes
        them), each ``(n_queries, min(k, items))``, best first, ties by row; row -1 / score -inf where fewer items
        score above 0. ``allowed`` (bool per item) only where :attr:`filters` is True."""
        raise NotImplementedError

    def describe(self) -> str:
        """How searches of an index with this backend are ranked, for ``index build`` / ``index info``."""
        return f"ranked by {self.name}" + ("" if self.exact else " (approximate)")

    def record(self) -> dict[str, Any] | None:
        """What the index's ``index.json`` stores as its ``backend``."""
        return {"kind": self.name, **self.params}

    def saved(self) -> None:
        """Called after the index was saved to ``self.index.directory`` (a stored copy catches up here)."""

    def close(self) -> None:
        """Release connections or memory; the backend is not used again."""


def backend_class(name: str) -> type[SearchBackend]:
    """The entry registered as ``name``; an unknown name is one :class:`SparseIndexError` line."""
    try:
        return BACKENDS.get(name)
    except RegistryError as e:
        raise SparseIndexError(str(e)) from None


def open_backend(index: SparseIndex, name: str, params: dict[str, Any] | None = None) -> SearchBackend:
    """The backend ``name`` opened (not yet prepared) on ``index`` with its stored ``params``."""
    backend = backend_class(name)(index, **(params or {}))
    backend.name = name
    return backend


def approximate_names() -> list[str]:
    """The registered approximate backends."""
    return [name for name, cls in BACKENDS.items() if not cls.exact]


BACKENDS: Registry[type[SearchBackend]] = Registry("search backend", "--backend")


@BACKENDS.register(DEFAULT_BACKEND)
class LocalBackend(SearchBackend):
    """The index's own inverted index, searched exactly by the compiled kernels (``engine``: numba or scipy)."""

    summary = "the local inverted index, exact (default)"

    def search(self, queries: sp.csr_matrix, k: int, allowed: np.ndarray | None = None,
               engine: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        return _topk.topk(queries, self.index.codes, k, allowed=allowed, engine=engine)

    def describe(self) -> str:
        return ""

    def record(self) -> dict[str, Any] | None:
        return None  # the default: written as null, as before backends were a registry
