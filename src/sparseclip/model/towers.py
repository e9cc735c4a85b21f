"""Build image and text towers with OpenCLIP and detach their final projections when asked."""

from __future__ import annotations

import open_clip
import torch
from torch import nn

from ..config import ModelConfig


def build_towers(cfg: ModelConfig) -> nn.Module:
    """An OpenCLIP ``CLIP`` model (from a named OpenCLIP config or inline vision/text configs)."""
    if cfg.openclip_name:
        model = open_clip.create_model(cfg.openclip_name, pretrained=None)
    else:
        model = open_clip.model.CLIP(cfg.embed_dim, dict(cfg.vision_cfg), dict(cfg.text_cfg))
    # The wrapper owns logit_scale; drop the tower's own so it is not trained or saved twice.
    if hasattr(model, "logit_scale"):
        del model.logit_scale
    return model


def _proj_in_dim(proj: nn.Module | torch.Tensor) -> int:
    if isinstance(proj, nn.Linear):
        return proj.in_features
    return int(proj.shape[0])


def _proj_out_dim(proj: nn.Module | torch.Tensor) -> int:
    if isinstance(proj, nn.Linear):
        return proj.out_features
    return int(proj.shape[1])


def strip_projections(model: nn.Module, remove: bool) -> tuple[int, int]:
    """Return (image_dim, text_dim) of the towers' outputs; with ``remove`` drop their final projections.

    Supports OpenCLIP's native ViT (``visual.proj``) and text transformer (``text_projection``).
    """
    visual = model.visual
    if getattr(visual, "proj", None) is None:
        raise ValueError("this image tower has no 'proj' projection to replace; use head.placement=append")
    text_proj = getattr(model, "text_projection", None)
    if text_proj is None:
        raise ValueError("this text tower has no 'text_projection' to replace; use head.placement=append")
    if not remove:
        return _proj_out_dim(visual.proj), _proj_out_dim(text_proj)
    image_dim, text_dim = _proj_in_dim(visual.proj), _proj_in_dim(text_proj)
    visual.proj = None
    model.text_projection = None
    return image_dim, text_dim
