"""The dictionary's health on the training inputs: per modality, the share of features active and dead, next to
L0, counted on the inputs the model was trained on (the paper counts them on its 1.2M training images).

L0 alone does not say "sparse like the paper": a head reaches 1% L0 as easily by letting most of its features
die as by making live features fire rarely. The paper keeps 85-89% of its features active. Every L0 this project
reports comes with :func:`dictionary_health` of the same model on its training inputs
(:func:`training_health`: the whole training set, or a seeded sample of ``data.num_health`` inputs of it).

Counting goes through :mod:`sparseclip.eval.sparsity` (the one definition of L0, active and dead).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .sparsity import N_MIN, TAU, active_mask, dead_mask, sparsity_stats

#: the fields of one modality's health, in the order tables show them
FIELDS = ("L0", "L0_pct", "active_pct", "dead_pct", "rare_pct")


def dictionary_health(image_codes: Any, text_codes: Any | None = None, tau: float = TAU,
                      n_min: int = N_MIN) -> dict:
    """Per modality (``image``, ``text``): :func:`~sparseclip.eval.sparsity.sparsity_stats` of the codes plus
    ``rare_pct`` (fire on exactly one input: neither active nor dead) and ``n`` (inputs counted); with both
    modalities also ``active_both_pct`` (active on the images AND on the texts), ``active_either_pct`` and
    ``dead_both_pct`` (never fire on either). Codes are (N, D) with the same D."""
    out: dict = {}
    masks = {}
    for side, codes in (("image", image_codes), ("text", text_codes)):
        if codes is None:
            continue
        stats = sparsity_stats(codes, tau, n_min)
        active, dead = active_mask(codes, tau, n_min), dead_mask(codes, tau)
        stats["rare_pct"] = 100.0 * float((~active & ~dead).mean())
        stats["n"] = int(codes.shape[0])
        out[side] = stats
        masks[side] = (active, dead)
    if len(masks) == 2:
        (ai, di), (at, dt) = masks["image"], masks["text"]
        if ai.shape != at.shape:
            raise ValueError(f"codes: image and text widths differ ({ai.shape[0]} vs {at.shape[0]})")
        out["active_both_pct"] = 100.0 * float((ai & at).mean())
        out["active_either_pct"] = 100.0 * float((ai | at).mean())
        out["dead_both_pct"] = 100.0 * float((di & dt).mean())
    return out


def sample_rows(n_total: int, n: int, seed: int = 0) -> np.ndarray:
    """Row indices counted: all ``n_total`` rows when ``n`` is 0 or covers them, else a seeded sample of ``n``
    distinct rows, in increasing order (the same rows for every model of the same data)."""
    if n <= 0 or n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False))


@torch.no_grad()
def training_codes(model: Any, cfg: Any, n: int, run_dir: Any = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Image and text codes of the model's training inputs and a description of what was counted.

    - both towers frozen on a finite set (the trainer's feature cache): the heads on the cached tower features
      (the run's ``features.safetensors`` when it matches; computed, and saved there, otherwise);
    - another finite set (a CSV, the world with ``data.num_train``): its pairs through the model;
    - a stream (the endless world, webdataset shards): its first ``n`` training inputs, in training order.
    Finite sets are counted whole, or on a seeded sample of ``n`` distinct pairs when larger.
    """
    from ..data.sources import DATA_FORMATS, build_train_source
    from ..model import get_tokenizer, image_transform
    from ..model.feature_cache import cache_train_pairs, head_codes

    d = cfg.data
    fmt = DATA_FORMATS.get(d.kind)
    tokenizer = get_tokenizer(cfg.model, d.context_length)
    transform = image_transform(d.image_size, train=False, cfg=cfg.model)
    model.eval()
    if fmt.finite(d) and cfg.model.freeze_image and cfg.model.freeze_text and cfg.model.has_pretrained_towers:
        from ..model.rundir import RunDir

        cache = cache_train_pairs(cfg, model, tokenizer, transform,
                                  RunDir(run_dir).features if run_dir is not None else None)
        rows = torch.as_tensor(sample_rows(len(cache), n))
        dev = next(model.parameters()).device
        img, txt = head_codes(model, cache.image[rows].to(dev), cache.text[rows].to(dev))
        return img.float().cpu(), txt.float().cpu(), {"source": "training pairs (cached tower features)",
                                                       "n": len(rows), "of": len(cache)}
    if fmt.finite(d):
        images, captions, _ = fmt.train_pairs(d)
        rows = sample_rows(len(captions), n)
        img, txt = _encode_pairs(model, tokenizer, transform, [images[i] for i in rows],
                                 [captions[i] for i in rows])
        return img, txt, {"source": "training pairs", "n": int(img.shape[0]), "of": len(captions)}
    if n <= 0:
        raise ValueError("data.num_health: a stream of training inputs has no end; give a number of inputs (> 0)")
    source = build_train_source(cfg, tokenizer, transform)
    imgs, txts, seen = [], [], 0
    for images, tokens in source.batches(0, min(256, n)):
        imgs.append(model.encode_image(images.to(_device(model))).float().cpu())
        txts.append(model.encode_text(tokens.to(_device(model))).float().cpu())
        seen += images.shape[0]
        if seen >= n:
            break
    img, txt = torch.cat(imgs)[:n], torch.cat(txts)[:n]
    return img, txt, {"source": "inputs of the training stream", "n": int(img.shape[0]), "of": None}


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def _encode_pairs(model: Any, tokenizer: Any, transform: Any, images: list, captions: list[str],
                  batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes of image-caption pairs (images as PIL images or paths); an unreadable image is skipped with its
    caption (the trainer skips it too)."""
    from PIL import Image

    from ..data.base import SkipSample, decode_image

    dev = _device(model)
    img_out, txt_out = [], []
    for i in range(0, len(captions), batch_size):
        xs, caps = [], []
        for im, cap in zip(images[i:i + batch_size], captions[i:i + batch_size], strict=True):
            try:
                xs.append(transform(im.convert("RGB")) if isinstance(im, Image.Image) else decode_image(im, transform))
            except SkipSample:
                continue
            caps.append(cap)
        if not xs:
            continue
        img_out.append(model.encode_image(torch.stack(xs).to(dev)).float().cpu())
        txt_out.append(model.encode_text(tokenizer(caps).to(dev)).float().cpu())
    if not img_out:
        raise ValueError("data.train_data: no readable training pairs to count the dictionary's health on")
    return torch.cat(img_out), torch.cat(txt_out)


def training_health(model: Any, cfg: Any, run_dir: Any = None, n: int | None = None) -> dict:
    """:func:`dictionary_health` of the model on its training inputs (see :func:`training_codes`), with
    ``sample`` saying what was counted. ``n`` defaults to ``data.num_health``."""
    n = cfg.data.num_health if n is None else n
    img, txt, sample = training_codes(model, cfg, n, run_dir)
    return {"sample": sample, **dictionary_health(img, txt)}


def health_line(health: dict) -> str:
    """One line for people: L0, active and dead per modality, active on both, and what was counted."""
    parts = [f"{side} L0 {h['L0_pct']:.2f}%, active {h['active_pct']:.1f}%, dead {h['dead_pct']:.1f}%"
             for side in ("image", "text") if (h := health.get(side))]
    s = health.get("sample", {})
    n, of, what = s.get("n", 0), s.get("of"), s.get("source", "inputs")
    where = (f"all {n:,} {what}" if of == n else f"a sample of {n:,} of {of:,} {what}" if of
             else f"the first {n:,} {what}")
    both = f"; active on both {health['active_both_pct']:.1f}%" if "active_both_pct" in health else ""
    return f"dictionary on {where}: " + "; ".join(parts) + both
