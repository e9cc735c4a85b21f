"""The package version, read from the installed package's metadata (pyproject.toml is its one home), without
importing the library: ``sparseclip --version`` and ``import sparseclip`` stay cheap."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__: str = version("sparseclip")
except PackageNotFoundError:  # pragma: no cover - a source tree on sys.path that was never installed
    __version__ = "0+unknown"
