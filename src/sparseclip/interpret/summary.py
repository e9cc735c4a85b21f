"""All metrics of one model's :class:`~sparseclip.interpret.inputs.CodeSet`: a summary row and the
per-feature details that ``features.json`` and the drift table are built from."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..eval.sparsity import N_MIN, TAU, active_mask, dead_mask, firing_frequency, l0
from ._arrays import l2_normalize, nanmean
from .alignment import Alignment, alignment, name_match_rate, strict_alignment
from .clarity import clarity, clarity_all, feature_clarity, random_clarity
from .field_metrics import PROBE_KS, feature_monosemanticity, k_sparse_probing
from .inputs import AnalysisData, CodeSet, pixel_reference
from .modality import DEFAULT_BAND, Modality, crossmodal_agreement, modality, selective_multimodal_masks
from .naming import name_features, name_quality, term_scores
from .purity import BARS, adjusted, detector_passes, feature_purity, name_purity
from .stats import class_consistency, effective_rank


@dataclass
class Options:
    """Thresholds of the analysis (the paper's where it has them)."""

    tau: float = TAU
    n_min: int = N_MIN
    band: tuple[float, float] = DEFAULT_BAND  # image-share band that counts as multimodal
    monosemantic: float = 0.9  # best concept AUROC for a monosemantic feature
    quality_top_k: int = 20  # top-activating images the name must find


@dataclass
class ModelAnalysis:
    """A model's summary row plus the per-feature arrays behind it."""

    codes: CodeSet
    row: dict
    live_image: np.ndarray  # (D,) bool: active on the validation images
    freq: np.ndarray  # (D,) firing frequency on images + texts
    modality: Modality
    align: Alignment
    scores: np.ndarray  # (V, D) normalised term activations
    names: dict[int, str] = field(default_factory=dict)  # live feature -> name
    name_score: dict[int, float] = field(default_factory=dict)
    #: per-unit values behind the row's means (features, or concepts for ``concept_f1``), for bootstrap intervals
    units: dict[str, np.ndarray] = field(default_factory=dict)


def summarize(codes: CodeSet, data: AnalysisData, reference_image: np.ndarray,
              reference_text: np.ndarray | None = None, opts: Options | None = None) -> ModelAnalysis:
    """Every metric of ``codes``. ``reference_*``: the clarity reference embeddings of the validation
    images (and captions), row-aligned with ``data``."""
    opts = opts or Options()
    tau, n_min = opts.tau, opts.n_min
    img, txt = codes.image, codes.text
    both = np.concatenate([img, txt])
    live_img = active_mask(img, tau, n_min)
    mod = modality(img, txt, tau, n_min)
    align = alignment(img, data.concepts, data.concept_names, tau, n_min, live=live_img)
    scores = term_scores(codes.terms)
    feats = np.flatnonzero(live_img)
    names = name_features(scores, data.vocab, feats)
    quality = _name_quality(codes, scores, feats, opts)
    freq = firing_frequency(both, tau)
    sel_mask, mm_mask = selective_multimodal_masks(mod.image_share, mod.live, freq, opts.band)
    live_sel, mm_sel = float(sel_mask.mean()), float(mm_mask.mean())
    strict = strict_alignment(img, data.concepts, live_img)
    row = {
        "model": codes.name,
        "L0_image": l0(img),
        "L0_text": l0(txt),
        "active_pct": 100.0 * float(active_mask(both, tau, n_min).mean()),
        "clarity": clarity(img, reference_image, tau, n_min),
        "multimodal_frac": mod.multimodal_fraction(opts.band),
        "mean_best_auroc": align.mean_best_auroc,
        "monosemantic_frac": align.monosemantic_fraction(opts.monosemantic),
        "monosemantic_strict_frac": strict.fraction,
        "mean_best_auroc_heldout": strict.mean_best_auroc,
        "live_selective_frac": live_sel,
        "multimodal_selective_frac": mm_sel,
        "clarity_all": clarity_all(img, reference_image, tau, n_min),
        "code_dim": codes.dim,
        "active_pct_image": 100.0 * float(live_img.mean()),
        "active_pct_text": 100.0 * float(active_mask(txt, tau, n_min).mean()),
        "dead_pct": 100.0 * float(dead_mask(both, tau).mean()),
        "live_features": int((~dead_mask(both, tau)).sum()),  # fire on some analysed input: the dead_pct complement
        "effective_rank_image": effective_rank(img),
        "clarity_random": random_clarity(reference_image),
        "name_score": float(np.nanmean(list(quality.values()))) if quality else float("nan"),
        "name_match_rate": name_match_rate(names, align.feature_best_concept),
        "name_mention_rate": name_match_rate(names, align.feature_best_concept, contains=True),
        "class_consistency": _class_consistency(codes, data, tau, n_min),
    }
    units: dict[str, np.ndarray] = {"clarity": feature_clarity(img, reference_image, tau, n_min)[live_img],
                                    "multimodal_selective_frac": mm_mask.astype(float),
                                    "name_score": np.array(list(quality.values()), dtype=np.float64)}
    row.update(_ground_truth_columns(codes, data, live_img, names, opts, units))
    row.update(codes.extra)
    if reference_text is not None:
        row["clarity_text"] = clarity(txt, reference_text, tau, n_min)
        row["clarity_text_random"] = random_clarity(reference_text)
    return ModelAnalysis(codes, row, live_img, freq, mod, align, scores, names, quality, units)


def _ground_truth_columns(codes: CodeSet, data: AnalysisData, live_img: np.ndarray, names: dict[int, str],
                          opts: Options, units: dict[str, np.ndarray]) -> dict:
    """The columns measured against something independent of the model: the concept lattice (purity, strict
    monosemanticity with conjunctions, label clarity, name purity), pixel statistics (pixel clarity, reported
    apart) and the pairing of images with their own captions (cross-modal agreement). Fills ``units``."""
    tau, n_min, img = opts.tau, opts.n_min, codes.image
    out: dict = {}
    if img.shape[0] == codes.text.shape[0]:
        ag = crossmodal_agreement(img, codes.text, tau, n_min)
        units["crossmodal_adj"] = adjusted(ag.f1, ag.chance)
        with np.errstate(invalid="ignore", divide="ignore"):  # hits: its images whose caption fires it too
            passed = detector_passes(units["crossmodal_adj"], BARS["f1"], ag.both / ag.n_image, ag.n_image,
                                     ag.n_text / ag.n_pairs)
        units["crossmodal_frac"] = passed.astype(float)
        out |= {"crossmodal_f1": nanmean(ag.f1), "crossmodal_f1_chance": nanmean(ag.chance),
                "crossmodal_adj": nanmean(units["crossmodal_adj"]),
                "crossmodal_frac": float(passed.mean()) if passed.size else float("nan")}
    if data.images:
        if "pixel" not in data.references:
            data.references["pixel"] = pixel_reference(data.images)
        units["pixel_clarity"] = feature_clarity(img, data.references["pixel"], tau, n_min)[live_img]
        out |= {"pixel_clarity": nanmean(units["pixel_clarity"]),
                "pixel_clarity_random": random_clarity(data.references["pixel"])}
    if data.references.get("lite1") is not None:  # a second image network, not the heads' own towers
        ref = data.references["lite1"]
        units["clarity_lite1"] = feature_clarity(img, ref, tau, n_min)[live_img]
        units["ms_lite1"] = feature_monosemanticity(img, ref, tau, n_min)[live_img]
        out |= {"clarity_lite1": nanmean(units["clarity_lite1"]), "ms_lite1": nanmean(units["ms_lite1"]),
                "lite1_random": random_clarity(ref)}
    lat = data.lattice
    if lat is None or not lat.names:
        return out
    pur = feature_purity(img, lat, live_img, tau, n_min)
    out |= {k: v for k, v in pur.summary().items() if k != "live"}
    for m in ("f1", "precision", "topn"):
        units[f"{m}_adj"] = pur.values(m)
    for m in BARS:
        units[f"{m}_frac"] = pur.passes(m).astype(float)
    units["concept_f1"] = pur.concept_f1
    units["concept_covered_frac"] = pur.concept_covered.astype(float)
    units["concept_f1_adj"] = adjusted(pur.concept_f1, pur.concept_chance)
    sem = lat.matrix[:, lat.semantic]
    strict = strict_alignment(img, sem, live_img)
    units["monosemantic_strict_frac"] = strict.monosemantic.astype(float)
    out["monosemantic_strict_frac"] = strict.fraction  # over the lattice: conjunctions count, pixel concepts apart
    if lat.pixel.any():
        out["monosemantic_strict_pixel_frac"] = strict_alignment(img, lat.matrix[:, lat.pixel], live_img).fraction
    for k, probe in k_sparse_probing(img, sem, PROBE_KS).items():
        units[f"ksparse_auroc_{k}"] = probe.auroc
        out |= probe.summary()
    ref = sem.astype(np.float64)
    units["label_clarity"] = feature_clarity(img, ref, tau, n_min)[live_img]
    out |= {"label_clarity": nanmean(units["label_clarity"]), "label_clarity_random": random_clarity(ref)}
    named = name_purity(img, lat, names, tau)
    units["name_purity_adj"] = adjusted(named.pop("values"), named.pop("chance"))
    units["name_true_frac"] = named.pop("passed").astype(float)
    return out | named



def _name_quality(codes: CodeSet, scores: np.ndarray, feats: np.ndarray, opts: Options) -> dict[int, float]:
    """name_quality for every live feature, with each name's text embedding as the ranking."""
    if feats.size == 0:
        return {}
    best_term = scores[:, feats].argmax(axis=0)  # (F,)
    sims = l2_normalize(codes.match_image) @ l2_normalize(codes.match_terms)[best_term].T  # (N, F)
    q = name_quality(codes.image[:, feats], sims, opts.quality_top_k, opts.tau)
    return {int(f): float(v) for f, v in zip(feats, q, strict=True)}


def _class_consistency(codes: CodeSet, data: AnalysisData, tau: float, n_min: int) -> float:
    """NCL class consistency averaged over the zero-shot tasks (single-label images)."""
    vals = [class_consistency(codes.tasks[t], data.task_targets[t], tau, n_min)
            for t in data.task_targets if t in codes.tasks]
    vals = [v for v in vals if not np.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


def select_features(a: ModelAnalysis, k: int, by: str = "auroc") -> list[int]:
    """``k`` live features to show.

    ``auroc``: varied and interpretable: features are grouped by their best ground-truth concept, each
    group sorted by AUROC, and the groups are taken round-robin (the best feature of every concept
    first), so a handful of concepts that many features detect (e.g. the background) cannot fill the
    list. ``frequency``: by firing frequency. ``density``: by activation density.
    """
    feats = [int(f) for f in np.flatnonzero(a.live_image)]
    if by == "auroc":
        auc = a.align.feature_best_auroc
        groups: dict[str, list[int]] = {}
        for f in sorted(feats, key=lambda f: (-auc.get(f, 0.5), -a.modality.density[f], f)):
            groups.setdefault(a.align.feature_best_concept.get(f, ""), []).append(f)
        order = []
        for rank in range(max((len(g) for g in groups.values()), default=0)):
            layer = [g[rank] for g in groups.values() if rank < len(g)]
            order += sorted(layer, key=lambda f: (-auc.get(f, 0.5), f))
        return order[:k]
    if by == "frequency":
        return sorted(feats, key=lambda f: (-a.freq[f], f))[:k]
    if by == "density":
        return sorted(feats, key=lambda f: (-a.modality.density[f], f))[:k]
    raise ValueError(f"select: must be auroc, frequency or density, got {by!r}")

