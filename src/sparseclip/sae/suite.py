"""The standard set of SAE baselines (ReLU+L1, TopK at several k, BatchTopK, Matryoshka), trained alike."""

from __future__ import annotations

from collections.abc import Sequence

from .model import SAE
from .train import train_sae

#: L1 coefficient of the ReLU baseline (an L0 of ~5-30 on unit-norm CLIP embeddings after 1000 steps)
DEFAULT_L1 = 0.05


def baseline_specs(ks: Sequence[int] = (8, 32, 64), l1: float = DEFAULT_L1,
                   batch_k: int | None = None) -> list[dict]:
    """Specs (keyword arguments of :func:`train_sae`) for: ReLU+L1, TopK at every ``k`` in ``ks``, and
    BatchTopK and Matryoshka at ``batch_k`` (default: the middle of ``ks``). Pass the Sparse CLIP's own
    L0 in ``ks`` / ``batch_k`` to compare at matched sparsity."""
    ks = sorted({int(k) for k in ks})
    if not ks:
        raise ValueError("baseline_specs needs at least one k")
    bk = int(batch_k) if batch_k is not None else ks[len(ks) // 2]
    return ([{"kind": "relu", "l1": l1}] + [{"kind": "topk", "k": k} for k in ks]
            + [{"kind": "batchtopk", "k": bk}, {"kind": "matryoshka", "k": bk}])


def train_baselines(x_image, x_text, width: int = 4096, ks: Sequence[int] = (8, 32, 64),
                    l1: float = DEFAULT_L1, batch_k: int | None = None, steps: int = 2000, seed: int = 0,
                    **kwargs) -> dict[str, SAE]:
    """Train every baseline of :func:`baseline_specs` on ``(x_image, x_text)``; returns ``{name: SAE}``."""
    out: dict[str, SAE] = {}
    for spec in baseline_specs(ks, l1, batch_k):
        sae = train_sae(spec["kind"], (x_image, x_text), width, k=spec.get("k"), l1=spec.get("l1"),
                        steps=steps, seed=seed, **kwargs)
        out[sae.name] = sae
    return out
