"""The training application (OpenCLIP's ``open_clip_train`` counterpart). The library never imports it."""

from .loop import train

__all__ = ["train"]
