"""sparseclip: train and analyse Sparse CLIP models (CLIP with wide non-negative heads).

The importable library: models, losses, data, evaluation and analysis. It never imports the CLI.
"""

from .config import Config, ConfigError, load_config
from .loss import ChunkedClipLoss, ClipLoss
from .model import SparseCLIP, create_model, get_tokenizer

__version__ = "0.1.0"
__all__ = ["ChunkedClipLoss", "ClipLoss", "Config", "ConfigError", "SparseCLIP", "create_model", "get_tokenizer",
           "load_config"]
