"""Region attribution: where in an image a feature fires, by occlusion.

Each patch of the image is replaced by ``fill`` (0 in the model's normalised input space = the dataset
mean colour) in turn; the heatmap is the drop in the feature's activation. Model-agnostic: it only needs
``encode(images) -> codes`` (a Sparse CLIP image tower, or a dense tower followed by an SAE encoder).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..files.atomic import save_image


@torch.no_grad()
def occlusion_drops(encode: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, patch: int = 4,
                    stride: int | None = None, fill: float = 0.0, batch_size: int = 256) -> np.ndarray:
    """(rows, cols, dims): ``codes(image) - codes(image with patch occluded)`` for every code dimension at once,
    so the heatmaps of several features of one image cost one set of forward passes.

    ``image`` is a preprocessed (3, H, W) tensor. Positive values: the patch supports the feature.
    """
    if image.ndim != 3:
        raise ValueError(f"image: expected a (3, H, W) tensor, got shape {tuple(image.shape)}")
    stride = stride or patch
    _, h, w = image.shape
    if patch <= 0 or patch > min(h, w):
        raise ValueError(f"patch: must be in 1..{min(h, w)}, got {patch}")
    ys = list(range(0, h - patch + 1, stride))
    xs = list(range(0, w - patch + 1, stride))
    base = encode(image[None])[0].float().cpu()
    variants = []
    for y in ys:
        for x in xs:
            v = image.clone()
            v[:, y:y + patch, x:x + patch] = fill
            variants.append(v)
    acts = []
    for i in range(0, len(variants), batch_size):
        acts.append(encode(torch.stack(variants[i:i + batch_size])).float().cpu())
    drop = base[None] - torch.cat(acts)
    return drop.numpy().reshape(len(ys), len(xs), -1)


def occlusion_heatmap(encode: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, feature: int,
                      patch: int = 4, stride: int | None = None, fill: float = 0.0,
                      batch_size: int = 256) -> np.ndarray:
    """(rows, cols) map of ``act(image) - act(image with patch occluded)`` for one feature
    (:func:`occlusion_drops`, one column)."""
    return occlusion_drops(encode, image, patch, stride, fill, batch_size)[:, :, feature]


def heatmap_overlay(image: Image.Image, heat: np.ndarray, scale: int = 4, alpha: float = 0.6) -> Image.Image:
    """The image enlarged ``scale`` times, next to the same image with the heatmap (its positive part,
    scaled to its maximum) blended on top in a colour map: left plain, right attributed."""
    from matplotlib import colormaps

    size = (image.width * scale, image.height * scale)
    base = image.convert("RGB").resize(size, Image.NEAREST)
    h = np.clip(np.asarray(heat, dtype=np.float64), 0, None)
    h = h / h.max() if h.max() > 0 else h
    rgb = (colormaps["jet"](h)[..., :3] * 255).astype(np.uint8)
    over = Image.blend(base, Image.fromarray(rgb).resize(size, Image.BILINEAR), alpha)
    out = Image.new("RGB", (2 * size[0] + scale, size[1]), (255, 255, 255))
    out.paste(base, (0, 0))
    out.paste(over, (size[0] + scale, 0))
    return out


def save_heatmap(image: Image.Image, heat: np.ndarray, path: str | Path, scale: int = 4) -> Path:
    """Write :func:`heatmap_overlay` as a PNG and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(heatmap_overlay(image, heat, scale), path)
    return path
