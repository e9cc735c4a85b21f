"""sparseclip: train and analyse Sparse CLIP models (CLIP with wide non-negative heads).

The importable library: models, losses, data, evaluation and analysis. It never imports the CLI.

``import sparseclip`` is cheap (no torch): the names below, ``__version__`` too, are imported from their modules on
first use (PEP 562), so ``from sparseclip import create_model`` loads the model code and the command line starts at
once.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from ._version import __version__ as __version__
    from .config import Config, ConfigError, load_config
    from .loss import ChunkedClipLoss, ClipLoss
    from .model import SparseCLIP, create_model, get_tokenizer
    from .weights import (
        create_model_and_transforms,
        get_pretrained_tokenizer,
        list_pretrained,
        list_pretrained_tags_by_model,
    )

#: each public name and the submodule that defines it
_EXPORTS: dict[str, str] = {
    "__version__": "_version",
    "Config": "config", "ConfigError": "config", "load_config": "config",
    "ChunkedClipLoss": "loss", "ClipLoss": "loss",
    "SparseCLIP": "model", "create_model": "model", "get_tokenizer": "model",
    # models shipped with the package, by name and tag (OpenCLIP's names); listing them imports no torch
    "list_pretrained": "weights", "list_pretrained_tags_by_model": "weights",
    "create_model_and_transforms": "weights", "get_pretrained_tokenizer": "weights",
}

__all__ = ["ChunkedClipLoss", "ClipLoss", "Config", "ConfigError", "SparseCLIP", "create_model",
           "create_model_and_transforms", "get_pretrained_tokenizer", "get_tokenizer", "list_pretrained",
           "list_pretrained_tags_by_model", "load_config"]


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use (then cached here); a submodule
    (``sparseclip.model``) imported on first attribute access, as when the package imported it eagerly."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names (imported or not), the module's own attributes and the submodules imported so far."""
    own = (n for n, v in globals().items()
           if n.startswith("__") or isinstance(v, ModuleType) and v.__name__.startswith(f"{__name__}."))
    return sorted({*_EXPORTS, *own})
