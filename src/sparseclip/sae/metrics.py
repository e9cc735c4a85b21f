"""How good is an SAE: sparsity, reconstruction, dead latents, and zero-shot accuracy after substitution."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..eval.sparsity import N_MIN, TAU, dead_mask, sparsity_stats
from ..eval.zeroshot import zero_shot_eval
from .model import SAE, SAEError, as_tensor


def fvu(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Fraction of variance unexplained: ``sum |x - x_hat|^2 / sum |x - mean(x)|^2``."""
    total = (x - x.mean(0)).pow(2).sum()
    return float((x - x_hat).pow(2).sum() / total.clamp_min(1e-12))


@torch.no_grad()
def sae_metrics(sae: SAE, x, tau: float = TAU, n_min: int = N_MIN) -> dict:
    """Metrics of ``sae`` on embeddings ``x`` (N, d).

    Returns ``L0`` (mean non-zero latents per input), ``fvu`` (in the SAE's prepared space),
    ``dead_frac`` (latents that never fire on ``x``), ``active_pct`` (% of latents firing > ``tau`` on
    >= ``n_min`` inputs, the paper's definition), ``width`` and ``n``.
    """
    xp = sae.prepare(x)
    codes = sae.encode(xp)  # preparing twice is harmless: normalising is idempotent
    stats = sparsity_stats(codes, tau=tau, n_min=n_min)
    return {"L0": stats["L0"], "fvu": fvu(xp, sae.decode(codes)),
            "dead_frac": float(dead_mask(codes, tau).mean()),
            "active_pct": stats["active_pct"], "width": sae.width, "n": len(xp)}


def _class_weights(sae: SAE | None, class_emb) -> torch.Tensor:
    """(d, C) zero-shot weights from class embeddings (C, d), or per-class prompt embeddings (C, P, d) /
    a list of (P_c, d) arrays (each prompt reconstructed, then averaged as CLIP_benchmark does)."""
    if isinstance(class_emb, (list, tuple)):
        groups = [as_tensor(c) for c in class_emb]
    else:
        t = torch.as_tensor(np.asarray(class_emb) if not isinstance(class_emb, torch.Tensor) else class_emb)
        groups = [g for g in t.float()] if t.ndim == 3 else [r[None] for r in as_tensor(t)]
    cols = []
    for g in groups:
        rec = F.normalize(sae.reconstruct(g) if sae is not None else g, dim=-1)
        cols.append(F.normalize(rec.mean(0), dim=0))
    return torch.stack(cols, dim=1)


@torch.no_grad()
def substitute(sae: SAE | None, image_emb, class_emb, targets, which: str = "both") -> float:
    """Zero-shot top-1 accuracy with SAE reconstructions substituted for the dense embeddings.

    ``which`` = ``"both"`` (images and class texts), ``"image"`` or ``"text"``; ``sae=None`` gives the
    dense model's own accuracy on the same inputs (the reference).
    """
    if which not in ("both", "image", "text"):
        raise SAEError(f"which must be 'both', 'image' or 'text', got {which!r}")
    img = as_tensor(image_emb)
    if sae is not None and which in ("both", "image"):
        img = sae.reconstruct(img)
    weights = _class_weights(sae if which in ("both", "text") else None, class_emb)
    targets = list(np.asarray(targets).tolist())
    if len(targets) != len(img):
        raise SAEError(f"{len(img)} image embeddings but {len(targets)} targets")
    return float(zero_shot_eval(img, weights, targets)["acc1"])
