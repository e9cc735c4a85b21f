"""The CLIP contrastive loss (symmetric InfoNCE) with OpenCLIP's distributed semantics."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def gather_features(image_features: torch.Tensor, text_features: torch.Tensor, local_loss: bool = False,
                    gather_with_grad: bool = False, rank: int = 0, world_size: int = 1):
    """All-gather features across ranks (OpenCLIP semantics).

    With ``gather_with_grad`` the gather is differentiable (``torch.distributed.nn.all_gather``);
    otherwise features from other ranks are constants and, unless ``local_loss``, this rank's own
    slice is put back with its gradient.
    """
    if gather_with_grad:
        import torch.distributed.nn as dist_nn

        all_image = torch.cat(dist_nn.all_gather(image_features), dim=0)
        all_text = torch.cat(dist_nn.all_gather(text_features), dim=0)
        return all_image, all_text
    gathered_image = [torch.zeros_like(image_features) for _ in range(world_size)]
    gathered_text = [torch.zeros_like(text_features) for _ in range(world_size)]
    dist.all_gather(gathered_image, image_features)
    dist.all_gather(gathered_text, text_features)
    if not local_loss:
        gathered_image[rank] = image_features
        gathered_text[rank] = text_features
    return torch.cat(gathered_image, dim=0), torch.cat(gathered_text, dim=0)


class ClipLoss(nn.Module):
    """Symmetric cross-entropy over image-text similarity logits (equal to ``open_clip.ClipLoss``)."""

    def __init__(self, local_loss: bool = False, gather_with_grad: bool = False, rank: int = 0,
                 world_size: int = 1):
        super().__init__()
        self.local_loss = local_loss
        self.gather_with_grad = gather_with_grad
        self.rank = rank
        self.world_size = world_size

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor,
               logit_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.world_size > 1:
            all_image, all_text = gather_features(image_features, text_features, self.local_loss,
                                                  self.gather_with_grad, self.rank, self.world_size)
            if self.local_loss:
                return logit_scale * image_features @ all_text.T, logit_scale * text_features @ all_image.T
            logits_per_image = logit_scale * all_image @ all_text.T
            return logits_per_image, logits_per_image.T
        logits_per_image = logit_scale * image_features @ text_features.T
        return logits_per_image, logits_per_image.T

    def labels(self, n: int, device: torch.device) -> torch.Tensor:
        labels = torch.arange(n, device=device, dtype=torch.long)
        if self.world_size > 1 and self.local_loss:
            labels = labels + n * self.rank
        return labels

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor) -> torch.Tensor:
        logits_per_image, logits_per_text = self.logits(image_features, text_features, logit_scale)
        labels = self.labels(logits_per_image.shape[0], image_features.device)
        return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


def l1_penalty(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """Mean L1 norm of the (L2-normalised) codes of both modalities: the paper's rejected alternative."""
    return (image_features.abs().sum(-1).mean() + text_features.abs().sum(-1).mean()) / 2
