"""Batch encoding of images and texts to codes (un-normalised), with no gradient.

A tower that is frozen and pretrained (``model.freeze_*`` with ``model.towers`` or ``model.pretrained``) gives
the same output for the same input in every model built on it, so its outputs are kept in a small in-process
memo keyed by the weights' source and the inputs' content: evaluating several heads trained on the same frozen
towers (dense vs sparse, seeds, caps) runs the towers once per input set.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from PIL import Image

from . import SparseCLIP, image_transform

_MEMO: OrderedDict[str, torch.Tensor] = OrderedDict()
MEMO_BYTES = 1 << 30  # at most this much tower output is kept (oldest dropped first)


def _memo_prefix(model: SparseCLIP, side: str, extra: str) -> str | None:
    """The memo key's model part for a frozen pretrained tower, or None (no memo)."""
    cfg = getattr(model, "cfg", None)
    frozen = getattr(cfg, "freeze_image" if side == "image" else "freeze_text", False)
    if not (frozen and getattr(cfg, "has_pretrained_towers", False)):
        return None
    from .pretrained import weights_source_id

    tower = {"side": side, "source": weights_source_id(cfg), "openclip": cfg.openclip_name,
             "cfg": cfg.vision_cfg if side == "image" else cfg.text_cfg, "placement": cfg.head.placement,
             "dtype": str(next(model.parameters()).dtype), "extra": extra}
    return json.dumps(tower, sort_keys=True, default=str)


def _memoised(prefix: str | None, content: Callable[[hashlib.blake2b], None],
              compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    if prefix is None:
        return compute()
    h = hashlib.blake2b(prefix.encode(), digest_size=20)
    content(h)
    key = h.hexdigest()
    if key in _MEMO:
        _MEMO.move_to_end(key)
        return _MEMO[key]
    out = compute()
    _MEMO[key] = out
    while sum(t.numel() * t.element_size() for t in _MEMO.values()) > MEMO_BYTES and len(_MEMO) > 1:
        _MEMO.popitem(last=False)
    return out


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def encode_images(model: SparseCLIP, images: Sequence[Image.Image], image_size: int,
                  batch_size: int = 256) -> torch.Tensor:
    """Codes (N, code_dim) of PIL images, using OpenCLIP's eval transform."""
    if not len(images):
        return torch.zeros(0, model.code_dim)
    tf = image_transform(image_size, train=False, cfg=getattr(model, "cfg", None))
    dev = _device(model)

    # a conv tower (channels-last) runs faster on a CPU in batches of 64 than of 256
    step = min(batch_size, 64) if getattr(model, "_channels_last", False) else batch_size

    def towers() -> torch.Tensor:
        out = []
        for i in range(0, len(images), step):
            x = torch.stack([tf(im.convert("RGB")) for im in images[i:i + step]]).to(dev)
            out.append(model.tower_image(x).float().cpu())
        return torch.cat(out)

    def content(h) -> None:
        for im in images:
            h.update(f"{im.mode}{im.size}".encode())
            h.update(im.tobytes())

    feats = _memoised(_memo_prefix(model, "image", f"{image_size}|{tf!r}"), content, towers)
    head = model.image_head
    return _finite(torch.cat([head(feats[i:i + 4096].to(dev)).float().cpu() for i in range(0, len(feats), 4096)]),
                   "images")


def _finite(codes: torch.Tensor, what: str) -> torch.Tensor:
    """``codes``, or a one-line error when any is NaN / inf (a diverged model must not score at chance)."""
    if not bool(torch.isfinite(codes).all()):
        bad = int((~torch.isfinite(codes)).any(1).sum())
        raise ValueError(f"the model's codes of {bad} of {len(codes)} {what} are not finite (NaN or inf): its weights "
                         "have diverged; use an earlier checkpoint")
    return codes


@torch.no_grad()
def encode_texts(model: SparseCLIP, tokenizer, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """Codes (N, code_dim) of texts."""
    if not len(texts):
        return torch.zeros(0, model.code_dim)
    dev = _device(model)

    def towers() -> torch.Tensor:
        step = min(batch_size, 64)  # small text batches run faster on a CPU (less padding, better cache use)
        return torch.cat([model.towers.encode_text(tokenizer(list(texts[i:i + step])).to(dev)).float().cpu()
                          for i in range(0, len(texts), step)])

    def content(h) -> None:
        for t in texts:
            h.update(t.encode() + b"\0")

    ctx = getattr(tokenizer, "context_length", "")
    feats = _memoised(_memo_prefix(model, "text", f"{type(tokenizer).__name__}:{ctx}"), content, towers)
    head = model.text_head
    return _finite(torch.cat([head(feats[i:i + 4096].to(dev)).float().cpu() for i in range(0, len(feats), 4096)]),
                   "texts")
