"""Which baseline each interpretability metric must beat, and the verdicts: the analysed model against each one,
with a bootstrap interval, and every row's bar fractions against chance.

A metric means something only next to a baseline that gets what the metric could reward for free:

- a **random dictionary** (rate-matched: random directions in the towers' output space thresholded to the model's
  per-feature firing rates, :mod:`.baselines`) gets narrow caps in that space, the firing rates and the modality
  balance without learning anything;
- the **random init** row (the same architecture untrained, pretrained frozen towers kept) gets what the towers
  already carry;
- the **shuffled labels** row (the model's own codes against labels shuffled across images) gets whatever a
  metric finds in any labelling: label-based metrics must fall to chance on it;
- the **dense** head and the **SAEs** (at the model's L0) are the alternatives a user would pick instead. An SAE
  row is *matched on L0* when its image L0 is within :data:`MATCHED_L0_FACTOR` of the model's, and *matched on
  live features* too when its number of live features (firing on some analysed input, ``live_features``) is within
  :data:`MATCHED_LIVE_FACTOR` of the model's: a healthy dictionary is not compared with a dying one as if alike.

:data:`CONTROLS` names, per metric, the baselines it must beat; :func:`verdicts` draws the lines. The *bar
fractions* (features passing a held-out, binomially tested bar, :func:`~.purity.detector_passes`) also have a
chance level: each feature of a dictionary unrelated to the labels passes with probability below
:data:`~.purity.ALPHA`, so :func:`above_chance` tests a row's pass count against it. The chance-corrected means
(``*_adj``) are 0 for a random set of the same size, but random features of pretrained towers do carry the
world's concepts weakly, so their means are read against the random dictionary, not against 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._arrays import nanmean
from .baselines import RANDOM_DICTIONARY, bootstrap_diff, verdict
from .purity import ALPHA

SHUFFLED = "baseline: shuffled concept labels"
RANDOM_INIT = "baseline: random init"


@dataclass(frozen=True)
class Control:
    """One metric: its row column, what it says, whether its units are features or concepts, the kinds of row
    it must beat (:func:`row_kind`) and whether it is a bar fraction (tested against chance)."""

    column: str
    says: str
    must_beat: tuple[str, ...]
    per: str = "feature"
    bar: bool = False
    #: kinds of row it is not compared with at all, because they equal or lose to the model by construction
    exempt: tuple[str, ...] = ()
    #: it needs a feature id shared by images and captions (an SAE per modality cannot have one)
    shared_ids: bool = False


ALL = ("random dictionary", "random init", "shuffled labels", "dense", "SAE")
#: the kinds of row that control for what a metric rewards without learning (the dense head and the SAEs are the
#: alternatives a user would pick instead: they get verdicts of their own)
CONTROL_KINDS = ("random dictionary", "random init", "shuffled labels")
#: a label-free metric is not compared with the shuffled-label row: that row is the model's own codes
LABEL_FREE = ("shuffled labels",)
#: an SAE row counts as at the model's L0 when its image L0 is within this factor of the model's
MATCHED_L0_FACTOR = 1.5
#: an SAE row counts as matched on live features when its live-feature count is within this factor of the model's
#: (the live-matched SAEs are trained to within 10%, ``sae.suite.LIVE_TOL``; a full-width SAE with twice the
#: model's live features is not matched)
MATCHED_LIVE_FACTOR = 1.25
#: the row kinds that get verdicts of their own (besides the controls): not head kinds, the kinds of summary row
DENSE_ROW, SAE_ROW = "dense", "SAE"

#: units key (``ModelAnalysis.units``) -> :class:`Control`
CONTROLS: dict[str, Control] = {
    "f1_frac": Control("f1_frac", "live features whose firing set matches one lattice concept (held-out "
                       "chance-corrected F1 >= 0.5, binomial p < 0.01)", ALL, bar=True),
    "precision_frac": Control("precision_frac", "live features whose firing set is >= 80% one concept beyond "
                              "its base rate (held out, binomial p < 0.01)", ALL, bar=True),
    "concept_covered_frac": Control("concept_covered_frac", "lattice concepts (singles and conjunctions) that "
                                    "some feature detects (held-out corrected F1 >= 0.5)", ALL, per="concept",
                                    bar=True),
    "monosemantic_strict_frac": Control("monosemantic_strict_frac", "live features strictly monosemantic for a "
                                        "lattice concept (AUROC, R-precision, ratio; held out; conjunctions "
                                        "count)", ALL, bar=True),
    "name_true_frac": Control("name_true_frac", "named features whose text-side name is true of the images they "
                              "fire on (precision bar for the named concept)", ALL, bar=True, shared_ids=True),
    "f1_adj": Control("purity_f1_adj", "mean held-out chance-corrected F1 of a feature's firing set with its "
                      "concept", ALL),
    "precision_adj": Control("purity_precision_adj", "mean held-out chance-corrected precision of the firing set",
                             ALL),
    "topn_adj": Control("purity_topn_adj", "mean chance-corrected purity of a feature's top-20 images (credits "
                        "random directions: read against the random dictionary)", ("random dictionary",)),
    "label_clarity": Control("label_clarity", "clarity with the ground-truth labels as the reference space",
                             ("random dictionary", "random init", "shuffled labels")),
    "clarity": Control("clarity", "clarity in the reference encoder's space (the towers' own: a narrow cap "
                       "there scores by construction)", ("random dictionary", "random init"), exempt=LABEL_FREE),
    "pixel_clarity": Control("pixel_clarity", "clarity in pixel statistics (background first): reported apart, "
                             "it rewards pixel-level features", ("random dictionary",), exempt=LABEL_FREE),
    "clarity_lite1": Control("clarity_lite1", "clarity under a second image network (EfficientNet-Lite1), not "
                             "the heads' own towers", ("random dictionary", "random init"), exempt=LABEL_FREE),
    "ms_lite1": Control("ms_lite1", "monosemanticity score (Pach et al.): activation-weighted pairwise similarity "
                        "of a feature's images under EfficientNet-Lite1", ("random dictionary", "random init"),
                        exempt=LABEL_FREE),
    "ksparse_auroc_1": Control("ksparse_auroc_1", "k-sparse probing, k = 1 (SAEBench): held-out AUROC of a probe "
                               "on the one feature that best separates a lattice concept", ALL, per="concept"),
    "ksparse_auroc_5": Control("ksparse_auroc_5", "k-sparse probing, k = 5 (SAEBench): held-out AUROC of a probe "
                               "on the five features that best separate a lattice concept", ALL, per="concept"),
    "crossmodal_adj": Control("crossmodal_adj", "mean chance-corrected agreement of a feature on an image and "
                              "on its own caption", ("random dictionary", "random init", "dense", "SAE"),
                              exempt=LABEL_FREE, shared_ids=True),
    "crossmodal_frac": Control("crossmodal_frac", "live features that fire on an image's own caption beyond "
                               "chance (corrected F1 >= 0.5, binomial p < 0.01)",
                               ("random dictionary", "random init", "dense", "SAE"), bar=True, exempt=LABEL_FREE,
                               shared_ids=True),
    "multimodal_selective_frac": Control("multimodal_selective_frac", "share of all features live, selective "
                                         "(< 20% of inputs) and multimodal. Only the SAEs can show it: most "
                                         "dense and random-init features fire on most inputs (near 0 by "
                                         "construction), the random dictionary copies the per-modality firing "
                                         "rates, labels do not enter it", ("SAE",),
                                         exempt=("dense", "random init", "random dictionary", "shuffled labels"),
                                         shared_ids=True),
    "name_score": Control("name_score", "how well a feature's name alone finds its top images (AUROC in the row's "
                          "own space; label-free, so the shuffled-label row equals the model by construction; a "
                          "name comes from the text side, so a row whose image and text latents differ has none)",
                          ("random dictionary", "random init"), exempt=LABEL_FREE, shared_ids=True),
}


def row_kind(name: str) -> str:
    """The kind of a summary row from its model name (``model`` for the analysed one)."""
    if name == RANDOM_DICTIONARY:
        return "random dictionary"
    if name == RANDOM_INIT:
        return "random init"
    if name == SHUFFLED:
        return "shuffled labels"
    if name.startswith("dense ("):
        return "dense"
    if name.lower().startswith("sae"):
        return "SAE"
    return "model"


def above_chance(units) -> dict:
    """A bar fraction's per-unit passes (0/1, NaN ignored) against the chance pass rate :data:`ALPHA`: the
    one-sided binomial p-value of the count; ``above`` when it is below ``ALPHA``."""
    from scipy.stats import binom

    u = np.asarray(units, dtype=np.float64)
    u = u[~np.isnan(u)]
    k, n = int(u.sum()), int(u.size)
    p = float(binom.sf(k - 1, n, ALPHA)) if n else float("nan")
    return {"passes": k, "units": n, "p_value": p, "above": bool(n and p < ALPHA)}


def shares_ids(name: str) -> bool:
    """Whether a row's features are shared by images and captions (an SAE trained per modality's are not)."""
    return "one per modality" not in name


def _ratio(a, b) -> float | None:
    """``max(a / b, b / a)`` of two positive finite numbers; None when either is unknown, not positive or not finite."""
    try:
        x, y = float(a), float(b)
    except (TypeError, ValueError):
        return None
    if not (np.isfinite(x) and np.isfinite(y)) or x <= 0 or y <= 0:
        return None
    return max(x / y, y / x)


def matched_l0(model_l0, other_l0, factor: float = MATCHED_L0_FACTOR) -> bool:
    """Whether ``other_l0`` is within ``factor`` of ``model_l0`` (True when either is unknown: such a row counts)."""
    r = _ratio(model_l0, other_l0)
    return r is None or r <= factor


def matched_live(model_live, other_live, factor: float = MATCHED_LIVE_FACTOR) -> bool:
    """Whether ``other_live`` live features are within ``factor`` of the model's ``model_live`` (False when either is
    unknown: a match on live features is claimed only where both were counted)."""
    r = _ratio(model_live, other_live)
    return r is not None and r <= factor


def sae_match(cmp: dict) -> str:
    """How an SAE comparison of :func:`verdicts` is matched: ``"L0 and live"``, ``"L0 only"`` or ``"none"``."""
    if not cmp.get("matched_l0", True):
        return "none"
    return "L0 and live" if cmp.get("matched_live") else "L0 only"


def verdicts(model, others: list, n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """Per metric of :data:`CONTROLS` the analysed ``model`` (a :class:`~.summary.ModelAnalysis`) has: its mean and

    - ``rows``: the comparison with EVERY other row that has the metric (``diff`` = model - row, a 95% bootstrap
      interval, ``above`` / ``below`` / ``level``), except the kinds it equals or loses to by construction
      (``Control.exempt``; for a metric on shared ids, an SAE per modality); each SAE row says whether it is at the
      model's L0 (``matched_l0``, :data:`MATCHED_L0_FACTOR`) and, where the model's row counts its live features,
      whether its own count is matched too (``live_features``, ``matched_live``, :data:`MATCHED_LIVE_FACTOR`);
    - ``beats``: separate verdicts, each ``True`` / ``False`` / ``None`` (no such row): ``SAE`` (above every
      SAE row at the model's L0, whatever its live features), ``dense`` (above the dense head) and ``controls``
      (above every random control it must beat, :data:`CONTROL_KINDS` within ``must_beat``, and above chance for a
      bar fraction); where the model's and the SAE rows' live features were counted, also ``SAE_live`` (above
      every SAE row matched on both);
    - ``against`` (the rows of ``must_beat``), ``chance`` for a bar fraction, ``holds`` (above every baseline of
      ``must_beat`` and above chance) and a one-line ``text``.

    Concept units are paired (the same lattice concepts); feature units are not."""
    mine_l0 = getattr(model, "row", {}).get("L0_image")
    mine_live = getattr(model, "row", {}).get("live_features")
    # the verdict at matched live features exists where the model's and some SAE row's live features were counted
    live = mine_live is not None and any(row_kind(o.codes.name) == SAE_ROW and getattr(o, "row", {}).get(
        "live_features") is not None for o in others)
    out = []
    for key, ctl in CONTROLS.items():
        if key not in model.units:
            continue
        mine = model.units[key]
        entry: dict = {"metric": ctl.column, "says": ctl.says, "per": ctl.per, "value": nanmean(mine),
                       "against": [], "rows": []}
        for other in others:
            name = other.codes.name
            kind = row_kind(name)
            if key not in other.units or kind in ctl.exempt or (ctl.shared_ids and not shares_ids(name)):
                continue
            theirs = other.units[key]
            paired = ctl.per == "concept" and np.shape(theirs) == np.shape(mine)
            d = bootstrap_diff(mine, theirs, n_boot=n_boot, seed=seed, paired=paired)
            cmp = {"baseline": name, "kind": kind, "baseline_value": nanmean(theirs), "diff": d["diff"],
                   "lo": d["lo"], "hi": d["hi"], "verdict": verdict(d)}
            if kind == SAE_ROW:
                their = getattr(other, "row", {})
                cmp |= {"L0_image": their.get("L0_image"), "matched_l0": matched_l0(mine_l0, their.get("L0_image"))}
                if live:
                    cmp |= {"live_features": their.get("live_features"),
                            "matched_live": matched_live(mine_live, their.get("live_features"))}
            entry["rows"].append(cmp)
            if kind in ctl.must_beat:
                entry["against"].append({k: v for k, v in cmp.items() if k not in _MATCH_KEYS})
        if ctl.bar:
            entry["chance"] = above_chance(mine)
        entry["holds"] = (bool(entry["against"]) and all(a["verdict"] == "above" for a in entry["against"])
                          and entry.get("chance", {}).get("above", True))
        entry["beats"] = beats(entry, ctl, live=live)
        entry["text"] = verdict_line(entry)
        out.append(entry)
    return out


def _all_above(cmps: list[dict]) -> bool | None:
    return None if not cmps else all(c["verdict"] == "above" for c in cmps)


#: the keys of an SAE comparison that say how it is matched (not part of ``against``)
_MATCH_KEYS = ("L0_image", "matched_l0", "live_features", "matched_live")


def beats(entry: dict, ctl: Control | None = None, live: bool = False) -> dict[str, bool | None]:
    """The separate verdicts of a verdict entry (see :func:`verdicts`) from its ``rows``; ``live``: add ``SAE_live``
    (above every SAE row matched on L0 and live features)."""
    ctl = ctl or next((c for c in CONTROLS.values() if c.column == entry["metric"]), None)
    rows = entry.get("rows", [])
    must = ctl.must_beat if ctl is not None else CONTROL_KINDS
    controls = _all_above([c for c in rows if c["kind"] in CONTROL_KINDS and c["kind"] in must])
    if controls is not None and "chance" in entry:
        controls = controls and bool(entry["chance"]["above"])
    out = {"SAE": _all_above([c for c in rows if c["kind"] == SAE_ROW and c.get("matched_l0", True)]),
           "dense": _all_above([c for c in rows if c["kind"] == DENSE_ROW]),
           "controls": controls}
    if live:
        out["SAE_live"] = _all_above([c for c in rows if c["kind"] == SAE_ROW and sae_match(c) == "L0 and live"])
    return out


def verdict_line(entry: dict) -> str:
    """``metric 0.31 (above chance); vs ROW 0.06: +0.25 [+0.21, +0.29] above; ... SAEs at matched L0: yes; dense
    head: no; random controls: yes``."""
    parts = [f"{entry['metric']} {_f(entry['value'])}"]
    if "chance" in entry:
        parts[0] += " (above chance)" if entry["chance"]["above"] else " (NOT above chance)"
    for a in entry.get("rows", entry["against"]):
        parts.append(f"vs {a['baseline']}{_match_note(a)} {_f(a['baseline_value'])}: {_f(a['diff'], True)} "
                     f"[{_f(a['lo'], True)}, {_f(a['hi'], True)}] {a['verdict']}")
    b = entry.get("beats") or beats(entry)
    words = {True: "yes", False: "no", None: "none in this run"}
    tail = f"beats every SAE at matched L0: {words[b['SAE']]}"
    if "SAE_live" in b:
        tail += f"; at matched L0 and live features: {words[b['SAE_live']]}"
    tail += f"; the dense head: {words[b['dense']]}; the random controls: {words[b['controls']]}"
    return "; ".join(parts) + f". {tail}"


def _match_note(a: dict) -> str:
    """How an SAE comparison is matched, for its verdict line (nothing for a row of another kind)."""
    if not a.get("matched_l0", True):
        return f" (image L0 {_num(a.get('L0_image')):.1f}: not matched)"
    if "matched_live" not in a:
        return ""
    if a["matched_live"]:
        return " (matched L0 and live features)"
    live = a.get("live_features")
    return " (matched L0 only: " + ("live features not counted" if live is None else f"{live} live features") + ")"


def row_chance(analysis) -> dict[str, bool]:
    """Per bar fraction of one row: is it above chance (:func:`above_chance`)?"""
    return {CONTROLS[k].column: above_chance(analysis.units[k])["above"]
            for k in CONTROLS if CONTROLS[k].bar and k in analysis.units}



def _f(v: float, signed: bool = False) -> str:
    if v is None or not np.isfinite(v):
        return "n/a"
    return f"{v:+.3f}" if signed else f"{v:.3f}"


#: the columns of the verdict table, by row kind
KIND_COLUMNS = ("random dictionary", "random init", "shuffled labels", "dense", "SAE")
#: the verdicts, as the table heads them (the last only where a summary counted live features)
VERDICT_COLUMNS = (("SAE", "beats every SAE at matched L0"), ("dense", "beats the dense head"),
                   ("controls", "beats the random controls"),
                   ("SAE_live", "beats every SAE at matched L0 and live features"))


def _mark(ok: bool | None) -> str:
    return "" if ok is None else "yes" if ok else "**no**"


def render_verdicts(summary: dict) -> str:
    """Markdown of a ``summary.json``'s verdicts: one table (the model's value; per kind of row the best such row,
    marked where the model is not above it; the three verdicts) and one line per metric with every interval, then
    the rows' bar fractions against chance."""
    model = summary["rows"][0]["model"]
    live = any("SAE_live" in v.get("beats", {}) for v in summary["verdicts"])
    columns = VERDICT_COLUMNS if live else VERDICT_COLUMNS[:3]
    head = (f"| metric | {model} | " + " | ".join(KIND_COLUMNS) + " | "
            + " | ".join(h for _, h in columns) + " |")
    lines = [head, "|---" * (len(KIND_COLUMNS) + len(columns) + 2) + "|"]
    for v in summary["verdicts"]:
        rows = v.get("rows", v["against"])
        cells = []
        for kind in KIND_COLUMNS:
            mine = [a for a in rows if a["kind"] == kind and a.get("matched_l0", True)]
            if not mine:
                cells.append("")
                continue
            best = max(mine, key=lambda a: a["baseline_value"] if a["baseline_value"] is not None else -np.inf)
            mark = "" if all(a["verdict"] == "above" for a in mine) else (
                " (below)" if any(a["verdict"] == "below" for a in mine) else " (level)")
            cells.append(_f(_num(best["baseline_value"])) + mark)
        chance = "" if "chance" not in v else ("" if v["chance"]["above"] else " (chance)")
        verdict_cells = " | ".join(_mark(v.get("beats", {}).get(k)) for k, _ in columns)
        lines.append(f"| {v['metric']} | {_f(_num(v['value']))}{chance} | " + " | ".join(cells)
                     + f" | {verdict_cells} |")
    out = "\n".join(lines) + "\n\nVerdicts (model - row, 95% bootstrap interval over features or concepts; an SAE " \
        "row not at the model's L0 is marked and does not count"
    out += ("; each SAE row at it says whether it is matched on L0 only or on live features too):\n\n" if live
            else "):\n\n")
    out += "\n".join(f"- {v['text']}" for v in summary["verdicts"])
    chance = summary.get("above_chance") or {}
    if chance:
        out += "\n\nBar fractions above chance (binomial test of the passes against the 1% a feature unrelated " \
               "to the labels can reach):\n\n"
        for name, flags in chance.items():
            above = [k for k, f in flags.items() if f]
            out += f"- {name}: {', '.join(above) if above else 'none'}\n"
        out = out.rstrip("\n")
    return out


def _num(v) -> float:
    return float("nan") if v is None else float(v)
