"""The report's first screen: how sparse and how accurate the sparse model is against the dense one, and what the
interpretability verdicts say, in plain sentences built from the run's JSON (``results.json`` or ``eval.json``, and
the analysis' ``summary.json`` verdicts, the same JSON the docs render).

Each number says which sample it counts: L0 on the held-out evaluation images and captions; the active share on the
training inputs (the dictionary's health, ``eval.json``'s ``dictionary``) where it was counted, else on the held-out
ones. Several seeds of a model (rows named ``NAME-s1``, ``NAME-s2``, ... or carrying a ``seed``) give a mean and a
95% t-interval; one seed gives the number alone and says so.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from .columns import column
from .data import RunData, number

#: a code is called sparse when its mean non-zeros per input are under this share of its dims
SPARSE_BELOW_PCT = 10.0
#: with one seed, a gap in points this small is read as level
LEVEL_POINTS = 2.0
#: demo pairs (sparse run, dense run), the first present is the one the page leads with
PAIRS = (("lite_sparse", "lite_dense"), ("sparse", "dense"))
_SEED = re.compile(r"^(?P<base>.+?)[-_]s(?:eed)?(?P<seed>\d+)$")


def sparsity_tag(l0_pct: float | None) -> str:
    """``sparse`` (mean non-zeros under :data:`SPARSE_BELOW_PCT` % of the dims), ``dense`` (90% or more) or
    ``not sparse``; empty when the L0 is unknown."""
    if l0_pct is None:
        return ""
    return "sparse" if l0_pct < SPARSE_BELOW_PCT else "dense" if l0_pct >= 90.0 else "not sparse"


def row_l0_pct(row: dict) -> float | None:
    """A row's image L0 as a % of its dims: ``image_L0_pct`` (evaluation rows) or ``L0_image / code_dim``
    (analysis rows)."""
    pct = number(row.get("image_L0_pct"))
    if pct is not None:
        return pct
    l0, dim = number(row.get("L0_image")), number(row.get("code_dim"))
    return 100.0 * l0 / dim if l0 is not None and dim else None


@dataclass
class Stat:
    """One quantity of one model: the mean over its seeds and, with two or more, a 95% t-interval."""

    mean: float
    n: int = 1
    lo: float | None = None
    hi: float | None = None

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        n = len(values)
        mean = sum(values) / n
        if n < 2:
            return cls(mean)
        from scipy.stats import t

        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        half = float(t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        return cls(mean, n, mean - half, mean + half)

    def pct(self, digits: int = 1, scale: float = 100.0) -> str:
        """``82.4%`` or ``82.4% [81.0, 83.8] over 3 seeds``."""
        s = f"{scale * self.mean:.{digits}f}%"
        if self.lo is not None and self.hi is not None:
            s += f" [{scale * self.lo:.{digits}f}, {scale * self.hi:.{digits}f}] over {self.n} seeds"
        return s


@dataclass
class Model:
    """A model of the results table: its rows (one per seed), in the order given."""

    name: str
    rows: list[dict] = field(default_factory=list)

    def stat(self, key: str) -> Stat | None:
        vals = [v for v in (number(r.get(key)) for r in self.rows) if v is not None]
        return Stat.of(vals) if vals else None

    def first(self, key: str):
        return next((r[key] for r in self.rows if r.get(key) is not None), None)


def group_seeds(rows: list[dict]) -> list[Model]:
    """Rows grouped by model, a seed suffix (``-s1``, ``_seed2``) or a ``seed`` key making rows of one model."""
    models: dict[str, Model] = {}
    for r in rows:
        name = str(r.get("model", ""))
        m = _SEED.match(name)
        base = m["base"] if m else name
        models.setdefault(base, Model(base)).rows.append(r)
    return list(models.values())


def eval_row(res: dict) -> dict:
    """An ``eval.json`` as a results row (the keys of the demo's ``results.json``)."""
    ret, sp = res.get("retrieval") or {}, res.get("sparsity") or {}
    row: dict = {"model": str(res.get("model") or "this run"), "head": res.get("head"),
                 "zs_mean": res.get("zeroshot_mean_acc1"), "t2i_R@1": ret.get("text_to_image_R@1"),
                 "i2t_R@1": ret.get("image_to_text_R@1")}
    for side in ("image", "text"):
        s = sp.get(side) or {}
        row |= {f"{side}_L0": s.get("L0"), f"{side}_L0_pct": s.get("L0_pct"), f"{side}_active_pct": s.get("active_pct")}
        h = (res.get("dictionary") or {}).get(side) or {}
        row |= {f"{side}_active_train_pct": h.get("active_pct"), f"{side}_dead_train_pct": h.get("dead_pct")}
        row.setdefault("code_dim", s.get("dim"))
    return {k: v for k, v in row.items() if v is not None}


def _analysed(data: RunData) -> tuple[str | None, str | None]:
    """The run names of the analysed sparse model and its dense partner, from the analysis rows
    (``sparse (NAME)``, ``dense (NAME)``)."""
    def inner(prefix: str) -> str | None:
        for r in data.summary_rows:
            m = re.fullmatch(rf"{prefix} \((.+)\)", str(r.get("model", "")))
            if m:
                return m[1]
        return None

    return inner("sparse"), inner("dense")


def main_pair(data: RunData) -> tuple[Model | None, Model | None, list[Model]]:
    """(sparse model, dense model, every model) the first screen compares: the analysed pair when the results
    have it, else the demo's pairs, else the first non-dense and the first dense head; with no results table,
    RUN_DIR's own ``eval.json`` as the sparse model."""
    rows = data.demo_rows or ([eval_row(data.evals[""])] if "" in data.evals else [])
    models = group_seeds(rows)
    by = {m.name: m for m in models}
    for sparse, dense in (_analysed(data), *PAIRS):
        if sparse in by:
            return by[sparse], by.get(dense or ""), models
    sparse_m = next((m for m in models if m.first("head") not in ("dense", "linear_wide")), None)
    dense_m = next((m for m in models if m.first("head") == "dense"), None)
    return sparse_m, dense_m, models


def sample_words(res: dict | None) -> str:
    """Which inputs ``eval.json``'s dictionary health counted, in words (``a sample of 10,000 of 15,000 inputs of
    the training stream``); empty when unknown."""
    s = ((res or {}).get("dictionary") or {}).get("sample") or {}
    n, of, what = s.get("n"), s.get("of"), s.get("source", "training inputs")
    if not isinstance(n, int):
        return ""
    return (f"all {n:,} {what}" if of == n else f"a sample of {n:,} of {of:,} {what}" if isinstance(of, int)
            else f"the first {n:,} {what}")


@dataclass
class Answer:
    """The first screen's sentences (plain text) and the notes on what each number counts."""

    sparsity: str = ""
    accuracy: str = ""
    interpretability: str = ""
    verdicts: list[tuple[bool | None, str]] = field(default_factory=list)  # (holds, sentence) per measure
    counts: list[str] = field(default_factory=list)


def _pts(sparse: Stat, dense: Stat) -> str:
    return f"{100 * (sparse.mean - dense.mean):+.1f} points"


def _gap_interval(sparse: Model, dense: Model, key: str) -> tuple[float, float] | None:
    """95% t-interval of the paired gap (sparse - dense) when both have the same seeds, in points."""
    def seeds(m: Model) -> dict[str, float]:
        out = {}
        for i, r in enumerate(m.rows):
            mm = _SEED.match(str(r.get("model", "")))
            seed = str(r.get("seed", mm["seed"] if mm else i))
            if number(r.get(key)) is not None:
                out[seed] = number(r.get(key))
        return out

    a, b = seeds(sparse), seeds(dense)
    if len(a) < 2 or set(a) != set(b):
        return None
    st = Stat.of([a[s] - b[s] for s in a])
    return 100 * st.lo, 100 * st.hi  # type: ignore[operator]


def sparsity_sentence(sparse: Model, dense: Model | None, evals: dict[str, dict]) -> tuple[str, list[str]]:
    """The sparsity verdict and the notes saying which sample each number counts."""
    l0, pct, tpct, dim = (sparse.stat("image_L0"), sparse.stat("image_L0_pct"), sparse.stat("text_L0_pct"),
                          sparse.first("code_dim"))
    if pct is None:
        return f"{sparse.name}: no L0 in its evaluation.", []
    tag = sparsity_tag(pct.mean)
    head = {"sparse": f"{sparse.name} is sparse", "dense": f"{sparse.name} is dense",
            "not sparse": f"{sparse.name} is not sparse"}[tag]
    dims = f" of its {int(dim):,} dims" if dim else ""
    text = (f"{head}: {l0.mean:.1f}{dims} are non-zero per image on average ({pct.pct(2, 1)})" if l0 else
            f"{head}: {pct.pct(2, 1)} of its dims are non-zero per image")
    if tpct is not None:
        text += f", {tpct.pct(2, 1)} per text"
    if dense is not None and dense.stat("image_L0_pct") is not None:
        text += f"; the dense model {dense.name} uses {dense.stat('image_L0_pct').pct(0, 1)} of its dims"
    counts = ["L0 (non-zeros per input): the mean over the held-out evaluation images and captions."]
    act_i, act_t = sparse.stat("image_active_train_pct"), sparse.stat("text_active_train_pct")
    if act_i is not None:
        both = sparse.stat("active_both_train_pct")
        text += (f". On the training inputs {act_i.pct(1, 1)} of its dims are active on images"
                 + (f", {act_t.pct(1, 1)} on texts" if act_t else "")
                 + (f", {both.pct(1, 1)} on both" if both else ""))
        where = sample_words(evals.get(sparse.name) or evals.get(""))
        counts.append("Active share: dims that fire (> 0.001) on at least 2 of the training inputs"
                      + (f" ({where})" if where else "") + ", as the paper counts it.")
    elif sparse.stat("image_active_pct") is not None:
        text += f". {sparse.stat('image_active_pct').pct(1, 1)} of its dims fire on at least 2 held-out images"
        counts.append("Active share: dims that fire (> 0.001) on at least 2 held-out images (the training inputs "
                      "were not counted).")
    return text + ".", counts


def accuracy_sentence(sparse: Model, dense: Model | None) -> str:
    """The accuracy verdict: zero-shot and R@1 of the sparse model against the dense one, with the gaps."""
    zs = sparse.stat("zs_mean")
    if zs is None:
        return f"{sparse.name}: no zero-shot accuracy in its evaluation."
    parts = []
    for key, label in (("t2i_R@1", "text-to-image R@1"), ("i2t_R@1", "image-to-text R@1")):
        s = sparse.stat(key)
        d = dense.stat(key) if dense else None
        if s is not None:
            parts.append(f"{label} {s.pct()}" + (f" against {d.pct()} ({_pts(s, d)})" if d else ""))
    dz = dense.stat("zs_mean") if dense else None
    if dz is None:
        head = f"Zero-shot accuracy of {sparse.name}: {zs.pct()} (no dense model in this folder to compare with)"
        return head + ("; " + "; ".join(parts) if parts else "") + "."
    gap = 100 * (zs.mean - dz.mean)
    interval = _gap_interval(sparse, dense, "zs_mean") if dense else None
    if interval is not None:
        lo, hi = interval
        word = "less accurate than" if hi < 0 else "more accurate than" if lo > 0 else "as accurate as"
        why = f"gap {gap:+.1f} points, 95% interval [{lo:+.1f}, {hi:+.1f}] over paired seeds"
    else:
        word = ("as accurate as" if abs(gap) <= LEVEL_POINTS else
                "less accurate than" if gap < 0 else "more accurate than")
        why = f"gap {gap:+.1f} points; one seed, no interval: a gap within {LEVEL_POINTS:g} points reads as level"
    return (f"{sparse.name} is {word} the dense model {dense.name} on zero-shot classification: {zs.pct()} against "  # type: ignore[union-attr]
            f"{dz.pct()} ({why})" + ("; " + "; ".join(parts) if parts else "") + ".")


def _label(metric: str) -> str:
    col = column(metric)
    return col.header if col else metric


def _f(v) -> str:
    f = number(v)
    return "n/a" if f is None else f"{f:.3f}"


def verdict_sentence(v: dict) -> tuple[bool | None, str]:
    """One analysis verdict as a sentence: the measure, its value, and the baselines it beats or does not (the
    closest one with its 95% interval)."""
    label, value = _label(v["metric"]), _f(v.get("value"))
    against = [a for a in v.get("against") or [] if isinstance(a, dict)]
    chance = v.get("chance") or {}
    if not against:
        return None, f"{label} {value}: no baseline to compare with in this run."

    def detail(a: dict) -> str:
        return (f"{a.get('baseline')} {_f(a.get('baseline_value'))}, difference {number(a.get('diff')) or 0:+.3f} "
                f"[{number(a.get('lo')) or 0:+.3f}, {number(a.get('hi')) or 0:+.3f}]")

    if v.get("holds"):
        closest = min(against, key=lambda a: number(a.get("diff")) if number(a.get("diff")) is not None else 0.0)
        return True, f"{label} {value}: above every baseline it must beat (closest: {detail(closest)})."
    failing = [a for a in against if a.get("verdict") != "above"]
    if not failing and chance and not chance.get("above", True):
        return False, f"{label} {value}: above its baselines but not above chance."
    kinds = ", ".join(dict.fromkeys(str(a.get("kind") or a.get("baseline")) for a in failing))
    tail = " and not above chance" if chance and not chance.get("above", True) else ""
    return False, f"{label} {value}: not above the {kinds}{tail} ({detail(failing[0])}, {failing[0].get('verdict')})."


def interpretability_sentence(verdicts: list[dict]) -> tuple[str, list[tuple[bool | None, str]]]:
    """How many measures beat every baseline they must, which, and one sentence per measure."""
    sentences = [verdict_sentence(v) for v in verdicts]
    held = [_label(v["metric"]) for v in verdicts if v.get("holds")]
    tested = sum(1 for ok, _ in sentences if ok is not None)
    if not verdicts:
        return "", []
    head = (f"{len(held)} of {tested} interpretability measures beat every baseline they must (random dictionary, "
            "random init, shuffled labels, dense model, SAEs, as each requires)")
    return head + (f": {', '.join(held)}." if held else "."), sentences


def analysis_models(data: RunData) -> tuple[Model | None, Model | None]:
    """The analysed sparse model and its dense partner as results rows made from the analysis' own rows (their
    L0 on the analysis inputs), for a folder without an evaluation."""
    out = []
    for prefix in ("sparse", "dense"):
        r = next((r for r in data.summary_rows if str(r.get("model", "")).startswith(f"{prefix} (")), None)
        if r is None:
            out.append(None)
            continue
        row = {"model": str(r["model"]), "image_L0": r.get("L0_image"), "code_dim": r.get("code_dim"),
               "image_L0_pct": row_l0_pct(r)}
        if number(r.get("L0_text")) is not None and number(r.get("code_dim")):
            row["text_L0_pct"] = 100.0 * number(r.get("L0_text")) / number(r.get("code_dim"))  # type: ignore[operator]
        out.append(Model(str(r["model"]), [{k: v for k, v in row.items() if v is not None}]))
    return out[0], out[1]


def answer(data: RunData) -> tuple[Answer, Model | None, Model | None, list[Model]]:
    """The first screen's sentences and the models they compare."""
    sparse, dense, models = main_pair(data)
    a = Answer()
    if sparse is not None:
        a.sparsity, a.counts = sparsity_sentence(sparse, dense, data.evals)
        a.accuracy = accuracy_sentence(sparse, dense)
    else:
        sparse, dense = analysis_models(data)
        if sparse is not None:
            a.sparsity, _ = sparsity_sentence(sparse, dense, {})
            a.counts = ["L0 (non-zeros per input): the mean over the analysis' own inputs (this folder has no "
                        "evaluation: no results.json or eval.json)."]
            a.accuracy = (f"No evaluation in this folder (results.json or eval.json), so no accuracy for "
                          f"{sparse.name}: run sparseclip eval on the run, or sparseclip demo.")
    a.interpretability, a.verdicts = interpretability_sentence(data.verdicts)
    return a, sparse, dense, models
