"""Image-text retrieval recall@k with CLIP_benchmark's semantics.

Each caption belongs to one image; an image may have several captions. text->image R@k: the share of
captions whose image is among the k most similar images. image->text R@k: the share of images with at least
one of their captions among the k most similar captions.

Ties are broken deterministically: among equal scores, the candidate with the lower index ranks first (a stable
sort). So a degenerate model whose codes are all equal does not score by luck: its R@k is the share of queries
whose positive is among the first k candidates.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def retrieval_metrics(image_codes: torch.Tensor, text_codes: torch.Tensor, caption_image: Sequence[int],
                      ks: Sequence[int] = (1, 5, 10)) -> dict:
    """Recall@k in both directions from codes; ``caption_image[j]`` is the image index of caption j."""
    img = F.normalize(image_codes.float(), dim=-1)
    txt = F.normalize(text_codes.float(), dim=-1)
    scores = txt @ img.T  # (n_texts, n_images)
    owner = torch.as_tensor(list(caption_image))
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[torch.arange(len(owner)), owner] = True
    order_img = torch.sort(scores, dim=1, descending=True, stable=True).indices  # ties: lower index first
    order_txt = torch.sort(scores.T, dim=1, descending=True, stable=True).indices
    out = {}
    for k in ks:
        top_img = order_img[:, :min(k, scores.shape[1])]
        out[f"text_to_image_R@{k}"] = float(positive.gather(1, top_img).any(1).float().mean())
        top_txt = order_txt[:, :min(k, scores.shape[0])]
        out[f"image_to_text_R@{k}"] = float(positive.T.gather(1, top_txt).any(1).float().mean())
    return out
