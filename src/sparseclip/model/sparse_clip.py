"""The SparseCLIP module: OpenCLIP towers + one head kind on both towers + a capped logit scale."""

from __future__ import annotations

import math

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .heads import Head, build_head
from .towers import build_towers, strip_projections, tower_tokenizer


class SparseCLIP(nn.Module):
    """CLIP whose towers end in a (wide, non-negative) head.

    Keeps the OpenCLIP model contract: ``encode_image(x, normalize=False)`` and
    ``encode_text(t, normalize=False)`` return the un-normalised code (non-negative for ``relu`` and
    ``topk`` heads), ``forward(image, text)`` returns a dict with ``image_features``,
    ``text_features`` (L2-normalised) and ``logit_scale`` (exponentiated); ``logit_scale`` is stored
    in log space and clamped by :meth:`clamp_logit_scale` after every optimiser step.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.towers = build_towers(cfg)
        image_dim, text_dim = strip_projections(self.towers, remove=cfg.head.placement == "replace")
        self.image_head: Head = build_head(cfg.head, image_dim, cfg.embed_dim)
        self.text_head: Head = build_head(cfg.head, text_dim, cfg.embed_dim)
        # convolutional (timm) image towers run faster in channels-last layout on CPU and GPU alike
        self._channels_last = hasattr(self.towers.visual, "trunk")
        if self._channels_last:
            self.towers.visual.to(memory_format=torch.channels_last)
        init = math.log(cfg.logit_scale_max) if cfg.init_at_cap else float(cfg.init_logit_scale)
        self.logit_scale = nn.Parameter(torch.tensor(init))
        self.clamp_logit_scale()

    # -- OpenCLIP contract ------------------------------------------------------------------------
    @property
    def visual(self) -> nn.Module:
        return self.towers.visual

    @property
    def code_dim(self) -> int:
        """Width of the code both towers output."""
        return self.image_head.out_dim

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        code = self.image_head(self.tower_image(image))
        return F.normalize(code, dim=-1) if normalize else code

    def tower_image(self, image: torch.Tensor) -> torch.Tensor:
        """The image tower's output (before the head)."""
        if self._channels_last and image.ndim == 4:
            image = image.contiguous(memory_format=torch.channels_last)
        return self.towers.encode_image(image, normalize=False)

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        code = self.text_head(self.towers.encode_text(text, normalize=False))
        return F.normalize(code, dim=-1) if normalize else code

    def forward(self, image: torch.Tensor | None = None, text: torch.Tensor | None = None) -> dict:
        out: dict = {"logit_scale": self.logit_scale.exp()}
        if image is not None:
            code = self.encode_image(image)
            out["image_code"] = code
            out["image_features"] = F.normalize(code, dim=-1)
        if text is not None:
            code = self.encode_text(text)
            out["text_code"] = code
            out["text_features"] = F.normalize(code, dim=-1)
        return with_pre_activations(self, out)

    @torch.no_grad()
    def clamp_logit_scale(self, logit_scale_max: float | None = None) -> None:
        """Clamp ``logit_scale`` (log space) to [0, ln(logit_scale_max)], as OpenCLIP does after each step;
        ``logit_scale_max`` (not in log space) defaults to ``cfg.logit_scale_max`` (a schedule passes the
        step's value)."""
        top = self.cfg.logit_scale_max if logit_scale_max is None else logit_scale_max
        self.logit_scale.clamp_(0, math.log(top))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.towers.set_grad_checkpointing(enable)


def with_pre_activations(model: SparseCLIP, out: dict) -> dict:
    """Add the heads' pre-activations of this forward (``image_pre`` / ``text_pre``) to ``out`` when the trainer
    asked the heads to keep them (:attr:`Head.keep_pre`)."""
    for side, head in (("image", model.image_head), ("text", model.text_head)):
        if head.keep_pre and head.last_pre is not None and f"{side}_code" in out:
            out[f"{side}_pre"], head.last_pre = head.last_pre, None
    return out


def create_model(cfg: ModelConfig) -> SparseCLIP:
    """Build a :class:`SparseCLIP` from a model config (weights randomly initialised)."""
    return SparseCLIP(cfg)


def get_tokenizer(cfg: ModelConfig, context_length: int | None = None):
    """The tokenizer that matches the text tower (OpenCLIP's, or a local Hugging Face one)."""
    return tower_tokenizer(cfg, context_length)


def image_transform(image_size: int, train: bool = False, cfg: ModelConfig | None = None):
    """OpenCLIP's image transform (resize, centre crop, to tensor, normalisation): CLIP's mean/std, or
    ``cfg.image_mean`` / ``cfg.image_std`` when the model config sets them (e.g. a pretrained timm tower)."""
    if cfg is not None:
        from .pretrained import resolve_towers

        cfg, _ = resolve_towers(cfg)
    mean = tuple(cfg.image_mean) if cfg is not None and cfg.image_mean else None
    std = tuple(cfg.image_std) if cfg is not None and cfg.image_std else None
    return open_clip.image_transform(image_size, is_train=train, mean=mean, std=std)
