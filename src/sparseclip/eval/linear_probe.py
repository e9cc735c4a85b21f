"""Linear probe: scikit-learn logistic regression on (L2-normalised) codes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression


def linear_probe(train_codes: torch.Tensor, train_targets: Sequence[int], test_codes: torch.Tensor,
                 test_targets: Sequence[int], c: float = 1.0, seed: int = 0) -> dict:
    """Fit on the train codes, report test accuracy and mean per-class recall."""
    xtr = F.normalize(train_codes.float(), dim=-1).numpy()
    xte = F.normalize(test_codes.float(), dim=-1).numpy()
    ytr, yte = np.asarray(train_targets), np.asarray(test_targets)
    clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    clf.fit(xtr, ytr)
    pred = clf.predict(xte)
    recalls = [float((pred[yte == k] == k).mean()) for k in np.unique(yte)]
    return {"acc1": float((pred == yte).mean()), "mean_per_class_recall": float(np.mean(recalls))}
