"""Sparsity of codes: L0 and the paper's active-feature percentage."""

from __future__ import annotations

import torch

#: the paper's firing threshold and minimum number of inputs for a feature to count as active
TAU = 1e-3
N_MIN = 2


def sparsity_stats(codes: torch.Tensor, tau: float = TAU, n_min: int = N_MIN) -> dict:
    """L0 (mean non-zeros per input), L0 as % of dims, and % of features firing (> tau) on >= n_min inputs."""
    codes = codes.float()
    dim = codes.shape[1]
    l0 = float((codes != 0).sum(1).float().mean())
    active = float(((codes > tau).sum(0) >= n_min).float().mean())
    return {"L0": l0, "L0_pct": 100.0 * l0 / dim, "active_pct": 100.0 * active, "dim": dim}
