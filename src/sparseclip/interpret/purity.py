"""Ground-truth purity of features over the concept lattice (:mod:`.lattice`), held out.

For each live feature: its *firing set* (inputs where it is ``> tau``) and its *top-n* inputs (highest
activations). Its concept is chosen on half of the inputs (the even rows) as the semantic lattice concept of
highest F1 with the firing set, then scored on the other half (the odd rows), so choosing the best of hundreds of
concepts does not flatter it:

- ``precision``: share of the firing set that shows the concept; chance = the concept's base rate ``p``;
- ``topn``: share of the top-n (n = min(``top_n``, firing count)) that shows it; chance = ``p``;
- ``f1``: F1 of the firing set against the concept; chance = ``2 p r / (p + r)`` for a random set of the same
  firing rate ``r``.

Each also comes *chance-corrected*, ``(x - chance) / (1 - chance)``: 1 = perfect, 0 = a random set of the same
size, so a feature firing on everything (F1 0.8 against a concept on 70% of the inputs) scores 0. A feature
*passes* a bar (:data:`BARS`: on the corrected F1 and precision of its firing set) only when the evidence is
more than luck (:func:`detector_passes`): it fires on at least :data:`MIN_FIRE` held-out inputs and its hits
beat the base rate in a one-sided binomial test at :data:`ALPHA`. The top-n has no bar: the top activations of a
random projection of pixels are mostly large shapes (its top-20 reach 95% "large" against a base rate of 71%
on the world), so top-n purity credits random directions (the classic pitfall of reading features from their
top examples); its mean is reported, read against the random dictionary. Random features of a random tower do
carry the world's concepts weakly, so the means can sit a little above 0 for a random model; the fractions above
the bars do not.

Pixel-level concepts (the background) are not chosen; a feature whose best concept on the even rows is a pixel
concept is *flagged* (``pixel``) and its held-out F1 for it reported apart. Per concept,
:attr:`Purity.concept_f1` is the held-out F1 of the feature chosen for it on the even rows, and
:attr:`Purity.concept_covered` whether that feature passes the F1 bar (how well the dictionary covers the
lattice).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..eval.sparsity import N_MIN, TAU, active_mask, as_numpy
from ._arrays import nanmean
from .alignment import name_mentions
from .lattice import Lattice, concept_parts

#: top-activating inputs scored per feature
TOP_N = 20
#: a feature needs this many firing inputs in the held-out half to pass a bar
MIN_FIRE = 5
#: the fixed bars on chance-corrected held-out values
BARS = {"f1": 0.5, "precision": 0.8}
#: and the one-sided binomial p-value under which a held-out count counts as above chance (a feature firing on 5
#: inputs that all show a concept of base rate 0.7 reaches the bar by luck 17% of the time)
ALPHA = 0.01


def adjusted(value, chance):
    """Chance-corrected score ``(value - chance) / (1 - chance)`` (NaN where chance is 1 or undefined)."""
    value, chance = np.asarray(value, dtype=np.float64), np.asarray(chance, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(chance < 1, (value - chance) / (1 - chance), np.nan)


@dataclass
class Purity:
    """Held-out purity of the live features of one code (all arrays (F,) over ``features``, except the
    per-concept ones)."""

    features: np.ndarray  # live feature ids
    concept: np.ndarray  # chosen semantic concept (index into ``names``; -1: none)
    n_fire: np.ndarray  # firing count on the held-out half
    rate: np.ndarray  # firing rate on the held-out half
    precision: np.ndarray  # NaN where the feature does not fire on the held-out half
    f1: np.ndarray
    topn: np.ndarray  # NaN where it does not fire on the held-out half
    base_rate: np.ndarray  # the chosen concept's share of the held-out half (chance of precision and topn)
    f1_chance: np.ndarray
    pixel: np.ndarray  # bool: best concept on the even rows is pixel-level
    pixel_f1: np.ndarray  # held-out F1 for the best pixel concept (NaN without pixel concepts)
    names: list[str]  # the lattice's concept names
    conjunction: np.ndarray  # bool: the chosen concept is a conjunction
    concept_ids: np.ndarray  # semantic concepts scored per concept
    concept_f1: np.ndarray  # held-out F1 of each one's best feature (chosen on the even rows)
    concept_chance: np.ndarray  # its chance F1 (a random set of that feature's held-out firing rate)
    concept_covered: np.ndarray  # bool: that feature passes the F1 bar for it (held out)

    def values(self, metric: str, corrected: bool = True) -> np.ndarray:
        """Per-feature ``f1`` / ``precision`` / ``topn`` (chance-corrected by default)."""
        raw = getattr(self, metric)
        if not corrected:
            return raw
        return adjusted(raw, self.f1_chance if metric == "f1" else self.base_rate)

    def passes(self, metric: str, bar: float | None = None) -> np.ndarray:
        """(F,) bool: the held-out corrected ``f1`` or ``precision`` of the firing set reaches ``bar`` (default
        :data:`BARS`) with more than luck behind it (:func:`detector_passes`)."""
        return detector_passes(self.values(metric), BARS[metric] if bar is None else bar, self.precision,
                               self.n_fire, self.base_rate)

    def summary(self) -> dict:
        """Means (raw, chance and corrected), fractions of live features above the bars, the pixel share and
        the concept coverage."""
        n = self.features.size
        out: dict = {"live": int(n)}
        for m in ("f1", "precision", "topn"):
            raw, chance = getattr(self, m), (self.f1_chance if m == "f1" else self.base_rate)
            out[f"purity_{m}"] = nanmean(raw)
            out[f"purity_{m}_chance"] = nanmean(np.where(np.isnan(raw), np.nan, chance))
            out[f"purity_{m}_adj"] = nanmean(self.values(m))
            if m in BARS:
                out[f"{m}_frac"] = float(self.passes(m).mean()) if n else float("nan")
        out["conjunction_frac"] = float((self.conjunction & self.passes("f1")).mean()) if n else float("nan")
        out["pixel_frac"] = float(self.pixel.mean()) if n else float("nan")
        out["pixel_f1"] = nanmean(self.pixel_f1[self.pixel]) if self.pixel.any() else float("nan")
        out["concept_f1"] = nanmean(self.concept_f1)
        out["concept_f1_adj"] = nanmean(adjusted(self.concept_f1, self.concept_chance))
        out["concept_covered_frac"] = float(self.concept_covered.mean()) if self.concept_covered.size else float("nan")
        return out


def detector_passes(value_adj, bar: float, share, n, base_rate) -> np.ndarray:
    """Elementwise: a chance-corrected ``value_adj`` at or above ``bar``, from a unit firing on at least
    :data:`MIN_FIRE` inputs (``n``: the inputs its ``share`` of hits is counted over) whose hits are more than
    luck: one-sided binomial p-value of ``share * n`` hits against ``base_rate`` below :data:`ALPHA`."""
    from scipy.stats import binom

    n = np.asarray(n, dtype=np.float64)
    hits = np.rint(np.nan_to_num(np.asarray(share, dtype=np.float64), nan=0.0) * n)
    p_value = binom.sf(hits - 1, n, np.clip(np.nan_to_num(np.asarray(base_rate, dtype=np.float64), nan=1.0), 0, 1))
    return (np.nan_to_num(np.asarray(value_adj, dtype=np.float64), nan=-np.inf) >= bar) & (n >= MIN_FIRE) \
        & (p_value < ALPHA)



def _f1(tp: np.ndarray, n_pos: np.ndarray, n_fire: np.ndarray) -> np.ndarray:
    """F1 of firing sets against concepts from counts: tp (C, F), n_pos (C,), n_fire (F,)."""
    denom = n_pos[:, None] + n_fire[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / denom, 0.0)


def feature_purity(codes, lattice: Lattice, live=None, tau: float = TAU, n_min: int = N_MIN, top_n: int = TOP_N,
                   min_support: int = MIN_FIRE) -> Purity:
    """Held-out purity of the ``live`` features (default: active on these inputs) of ``codes`` (N, D) against
    ``lattice`` (rows aligned with ``codes``). Concepts with fewer than ``min_support`` inputs in either half
    are not chosen."""
    x = as_numpy(codes, 2, "codes")
    y = np.asarray(lattice.matrix, dtype=bool)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"lattice has {y.shape[0]} rows but codes have {x.shape[0]}")
    feats = np.flatnonzero(active_mask(x, tau, n_min) if live is None else np.asarray(live, dtype=bool))
    a, b = np.arange(0, x.shape[0], 2), np.arange(1, x.shape[0], 2)
    fa, fb = x[a][:, feats] > tau, x[b][:, feats] > tau
    ya, yb = y[a], y[b]
    pos_a, pos_b = ya.sum(axis=0).astype(float), yb.sum(axis=0).astype(float)
    nf_a, nf_b = fa.sum(axis=0).astype(float), fb.sum(axis=0).astype(float)
    tp_a = ya.T.astype(np.float32) @ fa.astype(np.float32)  # (C, F)
    tp_b = yb.T.astype(np.float32) @ fb.astype(np.float32)
    f1_a, f1_b = _f1(tp_a, pos_a, nf_a), _f1(tp_b, pos_b, nf_b)
    usable = (pos_a >= min_support) & (pos_b >= min_support) & (pos_a < len(a)) & (pos_b < len(b))
    sem, pix = usable & lattice.semantic, usable & lattice.pixel
    n_f = feats.size
    cols = np.arange(n_f)
    best_sem = np.where(sem[:, None], f1_a, -np.inf)
    concept = best_sem.argmax(axis=0) if sem.any() and n_f else np.full(n_f, -1)
    ok = concept >= 0
    c = np.where(ok, concept, 0)
    nb = len(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        tp = tp_b[c, cols] if n_f else np.zeros(0)
        precision = np.where(ok & (nf_b > 0), tp / nf_b, np.nan)
        base = np.where(ok, pos_b[c] / max(nb, 1), np.nan)
        rate = nf_b / max(nb, 1)
        f1 = np.where(ok, f1_b[c, cols] if n_f else 0.0, np.nan)
        f1_chance = np.where(ok & (base + rate > 0), 2 * base * rate / (base + rate), np.nan)
    topn = _top_purity(x[b][:, feats], yb[:, c] if n_f else np.zeros((nb, 0), bool), nf_b, top_n, tau)
    topn[~ok] = np.nan
    if pix.any() and n_f:
        best_pix = np.where(pix[:, None], f1_a, -np.inf)
        pc = best_pix.argmax(axis=0)
        flag = best_pix.max(axis=0) > (best_sem.max(axis=0) if sem.any() else -np.inf)
        pixel_f1 = f1_b[pc, cols]
    else:
        flag, pixel_f1 = np.zeros(n_f, dtype=bool), np.full(n_f, np.nan)
    conj = ok & (lattice.order[c] > 1) if n_f else np.zeros(0, dtype=bool)
    sem_ids = np.flatnonzero(sem)
    if n_f and sem_ids.size:
        best_f = f1_a[sem_ids].argmax(axis=1)
        concept_f1 = f1_b[sem_ids, best_f]
        p, r = pos_b[sem_ids] / max(nb, 1), nf_b[best_f] / max(nb, 1)
        concept_chance = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            prec = tp_b[sem_ids, best_f] / nf_b[best_f]
        covered = detector_passes(adjusted(concept_f1, concept_chance), BARS["f1"], prec, nf_b[best_f], p)
    else:
        concept_f1 = concept_chance = np.zeros(sem_ids.size)
        covered = np.zeros(sem_ids.size, dtype=bool)
    return Purity(feats, np.where(ok, concept, -1), nf_b, rate, precision, f1, topn, base, f1_chance, flag, pixel_f1,
                  list(lattice.names), conj, sem_ids, concept_f1, concept_chance, covered)


def _top_purity(x: np.ndarray, pos: np.ndarray, n_fire: np.ndarray, top_n: int, tau: float) -> np.ndarray:
    """Per column: the share of its k = min(top_n, n_fire) highest rows where ``pos`` (same shape) is true."""
    if x.shape[1] == 0:
        return np.zeros(0)
    k = np.minimum(top_n, n_fire)
    order = np.argsort(-x, axis=0, kind="stable")
    ranks = np.empty_like(order)
    cols = np.arange(x.shape[1])
    ranks[order, cols[None, :].repeat(order.shape[0], 0)] = np.arange(order.shape[0])[:, None]
    in_top = ranks < k[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(k > 0, (in_top & pos).sum(axis=0) / k, np.nan)


def named_concept(name: str, lattice: Lattice) -> int:
    """The semantic lattice concept a feature name names (index; -1 if none): the singles the name mentions
    (:func:`~sparseclip.interpret.alignment.name_mentions`), then the lattice concept with the most parts
    among those made only of them ("red circle" -> ``color:red&shape:circle``)."""
    if not name:
        return -1
    singles = {lattice.names[j] for j in np.flatnonzero((lattice.order == 1) & lattice.semantic)
               if name_mentions(name, lattice.names[j])}
    best, best_parts = -1, 0
    for j, c in enumerate(lattice.names):
        parts = concept_parts(c)
        if lattice.semantic[j] and len(parts) > best_parts and set(parts) <= singles:
            best, best_parts = j, len(parts)
    return best


def name_purity(codes, lattice: Lattice, names: dict[int, str], tau: float = TAU,
                top_n: int = TOP_N) -> dict:
    """Are names true of the images? Per named feature whose name names a semantic lattice concept
    (:func:`named_concept`), the share of its top-n images (n = min(``top_n``, firing count)) that show it;
    the name comes from the text side, the images and labels from elsewhere, so a random dictionary scores
    the concepts' base rates. Returns ``name_purity`` (mean), ``name_purity_chance`` (mean base rate),
    ``name_purity_adj`` (chance-corrected mean), ``name_grounded_frac`` (named features whose name names a
    concept), ``name_true_frac`` (named features whose firing set passes the precision bar for the named
    concept, :func:`detector_passes`; an ungrounded name fails) and the per-feature arrays ``values``,
    ``chance`` (grounded features) and ``passed`` (every named feature)."""
    x = as_numpy(codes, 2, "codes")
    y = np.asarray(lattice.matrix, dtype=bool)
    feats = np.array(sorted(f for f, n in names.items() if n), dtype=int)
    which = np.array([named_concept(names[int(f)], lattice) for f in feats], dtype=int)
    grounded = which >= 0
    f, c = feats[grounded], which[grounded]
    n_fire = (x[:, f] > tau).sum(axis=0)
    vals = _top_purity(x[:, f], y[:, c], n_fire, top_n, tau) if f.size else np.zeros(0)
    chance = y[:, c].mean(axis=0) if f.size else np.zeros(0)
    vals = np.where(n_fire > 0, vals, np.nan)
    passed = np.zeros(feats.size, dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = ((x[:, f] > tau) & y[:, c]).sum(axis=0) / n_fire  # the named concept's share of the firing set
    passed[grounded] = detector_passes(adjusted(prec, chance), BARS["precision"], prec, n_fire, chance)
    return {"name_purity": nanmean(vals), "name_purity_chance": nanmean(np.where(np.isnan(vals), np.nan, chance)),
            "name_purity_adj": nanmean(adjusted(vals, chance)),
            "name_grounded_frac": float(grounded.mean()) if feats.size else float("nan"),
            "name_true_frac": float(passed.mean()) if feats.size else float("nan"),
            "values": vals, "chance": chance, "passed": passed}
