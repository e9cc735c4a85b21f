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
- the **dense** head and the **SAEs** (at the model's L0) are the alternatives a user would pick instead.

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


ALL = ("random dictionary", "random init", "shuffled labels", "dense", "SAE")

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
                              "fire on (precision bar for the named concept)", ALL, bar=True),
    "f1_adj": Control("purity_f1_adj", "mean held-out chance-corrected F1 of a feature's firing set with its "
                      "concept", ALL),
    "precision_adj": Control("purity_precision_adj", "mean held-out chance-corrected precision of the firing set",
                             ALL),
    "topn_adj": Control("purity_topn_adj", "mean chance-corrected purity of a feature's top-20 images (credits "
                        "random directions: read against the random dictionary)", ("random dictionary",)),
    "label_clarity": Control("label_clarity", "clarity with the ground-truth labels as the reference space",
                             ("random dictionary", "random init", "shuffled labels")),
    "clarity": Control("clarity", "clarity in the reference encoder's space (the towers' own: a narrow cap "
                       "there scores by construction)", ("random dictionary", "random init")),
    "pixel_clarity": Control("pixel_clarity", "clarity in pixel statistics (background first): reported apart, "
                             "it rewards pixel-level features", ("random dictionary",)),
    "crossmodal_adj": Control("crossmodal_adj", "mean chance-corrected agreement of a feature on an image and "
                              "on its own caption", ("random dictionary", "random init", "dense", "SAE")),
    "crossmodal_frac": Control("crossmodal_frac", "live features that fire on an image's own caption beyond "
                               "chance (corrected F1 >= 0.5, binomial p < 0.01)",
                               ("random dictionary", "random init", "dense", "SAE"), bar=True),
    "multimodal_selective_frac": Control("multimodal_selective_frac", "share of all features live, selective "
                                         "(< 20% of inputs) and multimodal. Only the SAEs can show it: most "
                                         "dense and random-init features fire on most inputs (near 0 by "
                                         "construction), the random dictionary copies the per-modality firing "
                                         "rates, labels do not enter it", ("SAE",)),
    "name_score": Control("name_score", "how well a feature's name alone finds its top images (AUROC in the row's "
                          "own space; label-free, so the shuffled-label row equals the model by construction)",
                          ("random dictionary", "random init")),
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


def verdicts(model, others: list, n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """Per metric of :data:`CONTROLS` the analysed ``model`` (a :class:`~.summary.ModelAnalysis`) has: its mean,
    each required baseline present in ``others`` with ``diff`` (model - baseline), a 95% bootstrap interval and
    ``above`` / ``below`` / ``level``, ``holds`` (above every required baseline present, and above chance for a bar
    fraction) and a one-line
    ``text``. Concept units are paired (the same lattice concepts); feature units are not."""
    out = []
    for key, ctl in CONTROLS.items():
        if key not in model.units:
            continue
        mine = model.units[key]
        entry: dict = {"metric": ctl.column, "says": ctl.says, "per": ctl.per, "value": nanmean(mine),
                       "against": []}
        for other in others:
            kind = row_kind(other.codes.name)
            if kind not in ctl.must_beat or key not in other.units:
                continue
            theirs = other.units[key]
            paired = ctl.per == "concept" and np.shape(theirs) == np.shape(mine)
            d = bootstrap_diff(mine, theirs, n_boot=n_boot, seed=seed, paired=paired)
            entry["against"].append({"baseline": other.codes.name, "kind": kind, "baseline_value": nanmean(theirs),
                                     "diff": d["diff"], "lo": d["lo"], "hi": d["hi"], "verdict": verdict(d)})
        if ctl.bar:
            entry["chance"] = above_chance(mine)
        entry["holds"] = (bool(entry["against"]) and all(a["verdict"] == "above" for a in entry["against"])
                          and entry.get("chance", {}).get("above", True))
        entry["text"] = verdict_line(entry)
        out.append(entry)
    return out


def verdict_line(entry: dict) -> str:
    """``metric: 0.31 (above chance); vs random dictionary +0.25 [+0.21, +0.29] above, ...: holds|fails``."""
    parts = [f"{entry['metric']} {_f(entry['value'])}"]
    if "chance" in entry:
        parts[0] += " (above chance)" if entry["chance"]["above"] else " (NOT above chance)"
    for a in entry["against"]:
        parts.append(f"vs {a['baseline']} {_f(a['baseline_value'])}: {_f(a['diff'], True)} "
                     f"[{_f(a['lo'], True)}, {_f(a['hi'], True)}] {a['verdict']}")
    beaten = entry["against"] and all(a["verdict"] == "above" for a in entry["against"])
    tail = ("beats every baseline it must" if entry["holds"]
            else "no baseline to beat in this run" if not entry["against"]
            else "beats every baseline but is NOT above chance" if beaten else "does NOT beat every baseline")
    return "; ".join(parts) + f". {tail}"


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


def render_verdicts(summary: dict) -> str:
    """Markdown of a ``summary.json``'s verdicts: one table (the model's value, each baseline kind's: the best
    SAE where there are several, a mark where the model is not above it) and one line per metric with every
    interval, then the rows' bar fractions against chance."""
    model = summary["rows"][0]["model"]
    head = f"| metric | {model} | " + " | ".join(KIND_COLUMNS) + " | beats every baseline it must |"
    lines = [head, "|---" * (len(KIND_COLUMNS) + 3) + "|"]
    for v in summary["verdicts"]:
        cells = []
        for kind in KIND_COLUMNS:
            mine = [a for a in v["against"] if a["kind"] == kind]
            if not mine:
                cells.append("")
                continue
            best = max(mine, key=lambda a: a["baseline_value"] if a["baseline_value"] is not None else -np.inf)
            mark = "" if all(a["verdict"] == "above" for a in mine) else (
                " (below)" if any(a["verdict"] == "below" for a in mine) else " (level)")
            cells.append(_f(_num(best["baseline_value"])) + mark)
        chance = "" if "chance" not in v else ("" if v["chance"]["above"] else " (chance)")
        lines.append(f"| {v['metric']} | {_f(_num(v['value']))}{chance} | " + " | ".join(cells)
                     + f" | {'yes' if v['holds'] else '**no**'} |")
    out = "\n".join(lines) + "\n\nVerdicts (model - baseline, 95% bootstrap interval over features or concepts):\n\n"
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
