"""The standard set of SAE baselines (ReLU+L1, TopK at several k, BatchTopK, Matryoshka), trained alike;
:func:`train_at_l0`: one SAE at a given L0 (the ReLU kind's L1 coefficient found for it); :func:`train_at_live`:
one at a given L0 whose number of live latents is also given (its width found for it)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ..eval.sparsity import l0 as mean_l0
from .kinds import SAE_KINDS
from .model import SAE
from .train import StopRule, fit_sae, train_sae

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


def train_at_l0(kind: str, x, width: int, l0: float, steps: int = 1000, lr: float = 3e-3, batch_size: int = 256,
                seed: int = 0, threads: int | None = None, probe_steps: int | None = None, probes: int = 5,
                log_every: int | None = None, held_out=None, stop: StopRule | None = None) -> SAE:
    """An SAE of ``kind`` at (about) the mean L0 ``l0``, trained for ``steps`` (history logged every
    ``log_every``, default a fiftieth of the steps), or, given ``held_out`` (arrays like ``x``), until their FVU
    is flat with ``steps`` as the cap (:class:`~sparseclip.sae.train.StopRule`).

    The top-k kinds take ``k = round(l0)``. ``relu`` finds its L1 coefficient on the same SAE, warm: ``probes``
    rounds of ``probe_steps`` steps (default ``steps // 5``), each followed by a damped step of the coefficient
    towards the target L0 (measured on up to 4096 training rows, :func:`_next_l1`), then the final training at the
    last value; the L0 reached is reported, not forced. The target, the probes and the L0 reached are in
    ``sae.train_info["matched"]``.
    """
    from .model import SAEConfig, as_tensor

    sources = list(x) if isinstance(x, (tuple, list)) else [x]
    if held_out is not None and not isinstance(held_out, (tuple, list)):
        held_out = [held_out]
    if l0 <= 0:
        raise ValueError(f"l0 must be positive, got {l0}")
    d = int(as_tensor(sources[0]).shape[-1])
    log_every = log_every or max(1, steps // 50)
    probe_steps = probe_steps or max(1, steps // 5)
    final = {"steps": steps, "batch_size": batch_size, "lr": lr, "log_every": log_every, "threads": threads,
             "held_out": held_out, "stop": stop}
    if SAE_KINDS.get(kind).param == "k":  # the kind's sparsity is k itself
        k = max(1, min(width, round(l0)))
        sae = fit_sae(SAE(SAEConfig(kind=kind, d=d, width=width, k=k), seed=seed), sources, seed=seed, **final)
        sae.train_info["matched"] = {"target_l0": float(l0), "k": k}
        return sae
    sample = torch.cat([as_tensor(s)[:4096 // len(sources)] for s in sources])
    sae = SAE(SAEConfig(kind=kind, d=d, width=width, l1=DEFAULT_L1), seed=seed)  # an L1 kind: search l1
    tried: list[tuple[float, float]] = []
    for i in range(probes):
        fit_sae(sae, sources, steps=probe_steps, batch_size=batch_size, lr=lr, seed=seed + i, threads=threads)
        reached = mean_l0(sae.encode(sample))
        tried.append((float(sae.cfg.l1), reached))
        sae.cfg.l1 = _next_l1(tried, l0)
    fit_sae(sae, sources, seed=seed + probes, **final)
    reached = mean_l0(sae.encode(sample))
    sae.train_info["matched"] = {"target_l0": float(l0), "l1": float(sae.cfg.l1), "l0_reached": reached,
                                 "probes": [{"l1": a, "l0": b} for a, b in tried], "probe_steps": probes * probe_steps}
    return sae


#: a live-matched SAE is retrained at a corrected width until its live latents are within this share of the target
LIVE_TOL = 0.1
#: at most this many widths are tried for a live-matched SAE
LIVE_ROUNDS = 3


def train_at_live(kind: str, x, live: int, l0: float, count_live: Callable[[SAE], int], rounds: int = LIVE_ROUNDS,
                  tol: float = LIVE_TOL, max_width: int | None = None, **kwargs) -> SAE:
    """An SAE of ``kind`` at the mean L0 ``l0`` (:func:`train_at_l0`) whose number of live latents is ``live``.

    The first width is ``live`` itself (a dictionary with no dead latent would match exactly); ``count_live(sae)``
    counts the latents that fire on the inputs the target was counted on (the caller's, with
    :mod:`sparseclip.eval.sparsity`'s one definition). While the count is more than ``tol`` (relative) off the
    target, the SAE is retrained from scratch at a corrected width (:func:`_next_width`), for at most ``rounds``
    widths (capped at ``max_width``). The closest one is returned; its
    ``train_info["live_match"]`` holds the target, every width tried with its live count, and ``within`` (the
    count within ``tol`` of the target). Widths below ``ceil(l0)`` are raised to it (k latents must exist)."""
    if live < 1:
        raise ValueError(f"a live-matched SAE needs a target of at least one live feature, got {live}")
    width = max(int(live), math.ceil(l0))
    tries: list[dict] = []
    best: SAE | None = None
    for _ in range(max(1, rounds)):
        sae = train_at_l0(kind, x, width, l0, **kwargs)
        n = int(count_live(sae))
        tries.append({"width": width, "live": n})
        if best is None or abs(n - live) < abs(best.train_info["live_match"]["live"] - live):
            best = sae
            sae.train_info["live_match"] = {"target": int(live), "live": n, "width": width}
        if abs(n - live) <= tol * live:
            break
        nxt = max(math.ceil(l0), _next_width(tries, live))
        if max_width is not None:
            nxt = min(nxt, max_width)
        if nxt == width:
            break
        width = nxt
    assert best is not None
    got = best.train_info["live_match"]["live"]
    best.train_info["live_match"] |= {"tol": tol, "within": abs(got - live) <= tol * live, "tries": tries}
    return best


def _next_width(tries: list[dict], target: int, max_step: float = 8.0) -> int:
    """The next width of a live-matched SAE: after one try, the width scaled by ``target / live`` (the dead share
    taken as that try's); after two of different widths and counts, a secant through the last two in log-log (the
    live count grows more slowly than the width where the data offers few directions), its slope kept in [0.1, 1];
    at most ``max_step`` times the last width either way."""
    w, n = tries[-1]["width"], max(tries[-1]["live"], 1)
    slope = 1.0
    if len(tries) >= 2:
        w0, n0 = tries[-2]["width"], max(tries[-2]["live"], 1)
        if w0 != w and n0 != n:
            slope = min(1.0, max(0.1, math.log(n / n0) / math.log(w / w0)))
    factor = (target / n) ** (1 / slope)
    return round(w * min(max_step, max(1 / max_step, factor)))


def _next_l1(tried: list[tuple[float, float]], target: float, gain: float = 0.7) -> float:
    """The next L1 coefficient: the last one scaled by ``(L0 reached / target) ** gain`` (L0 falls as the
    coefficient grows), at most 5x either way. A damped controller rather than a secant: the probes train the
    same SAE on, so L0 also falls with training itself and consecutive probes do not share one curve."""
    l1, reached = tried[-1]
    return float(l1 * min(5.0, max(0.2, (max(reached, 1e-3) / target) ** gain)))
