"""Zero-shot classification with CLIP_benchmark's semantics.

Classifier weights: for each class, the L2-normalised text codes of all its prompts are averaged and the mean
is renormalised. Images are L2-normalised; the predicted class is the highest cosine similarity.
Reported: acc@1, acc@5 (only when there are more than 5 classes) and mean per-class recall.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..model.embed import encode_texts


def classifier_weights(model, tokenizer, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """(code_dim, n_classes) zero-shot classifier from prompt templates."""
    weights = []
    for c in classnames:
        texts = [t.format(c) for t in templates]
        emb = F.normalize(encode_texts(model, tokenizer, texts), dim=-1)
        weights.append(F.normalize(emb.mean(0), dim=0))
    return torch.stack(weights, dim=1)


def classification_metrics(logits: torch.Tensor, targets: torch.Tensor) -> dict:
    """acc1, acc5 (if > 5 classes) and mean per-class recall from logits (N, C) and targets (N,).

    Ties are broken deterministically: among equal logits the lower class index ranks first (so a constant
    model predicts class 0 for every input)."""
    n_classes = logits.shape[1]
    order = torch.sort(logits, dim=1, descending=True, stable=True).indices
    pred = order[:, 0]
    out = {"acc1": float((pred == targets).float().mean())}
    if n_classes > 5:
        top5 = order[:, :5]
        out["acc5"] = float((top5 == targets[:, None]).any(1).float().mean())
    recalls = [float((pred[targets == c] == c).float().mean())
               for c in range(n_classes) if (targets == c).any()]
    out["mean_per_class_recall"] = float(np.mean(recalls))
    return out


def zero_shot_eval(image_codes: torch.Tensor, weights: torch.Tensor, targets: Sequence[int]) -> dict:
    """Metrics of a zero-shot classifier on precomputed image codes."""
    logits = F.normalize(image_codes.float(), dim=-1) @ weights
    return classification_metrics(logits, torch.as_tensor(list(targets)))
