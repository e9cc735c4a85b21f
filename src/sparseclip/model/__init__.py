"""Models: heads, towers and the SparseCLIP wrapper."""

from .heads import Head, build_head, rep_relu, topk_mask
from .sparse_clip import SparseCLIP, create_model, get_tokenizer, image_transform

__all__ = ["Head", "SparseCLIP", "build_head", "create_model", "get_tokenizer", "image_transform",
           "rep_relu", "topk_mask"]
