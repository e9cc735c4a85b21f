"""Batch encoding of images and texts to codes (un-normalised), with no gradient."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from .model import SparseCLIP, image_transform


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def encode_images(model: SparseCLIP, images: Sequence[Image.Image], image_size: int,
                  batch_size: int = 256) -> torch.Tensor:
    """Codes (N, code_dim) of PIL images, using OpenCLIP's eval transform."""
    tf = image_transform(image_size, train=False, cfg=getattr(model, "cfg", None))
    dev = _device(model)
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.stack([tf(im.convert("RGB")) for im in images[i:i + batch_size]]).to(dev)
        out.append(model.encode_image(x).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, model.code_dim)


@torch.no_grad()
def encode_texts(model: SparseCLIP, tokenizer, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """Codes (N, code_dim) of texts."""
    dev = _device(model)
    out = []
    for i in range(0, len(texts), batch_size):
        out.append(model.encode_text(tokenizer(list(texts[i:i + batch_size])).to(dev)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, model.code_dim)
