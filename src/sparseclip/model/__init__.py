"""Models: heads, towers and the SparseCLIP wrapper."""

from .heads import HEADS, Head, build_head, create_head, rep_relu, topk_mask
from .sparse_clip import SparseCLIP, create_model, get_tokenizer, image_transform

__all__ = ["HEADS", "Head", "SparseCLIP", "build_head", "create_head", "create_model", "get_tokenizer",
           "image_transform", "rep_relu", "topk_mask"]
