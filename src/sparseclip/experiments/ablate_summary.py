"""The results of ``sparseclip ablate``: aggregation over seeds, tables, one verdict per paper claim, plots.

:func:`write_summary` turns the sweep's per-run rows into ``summary.md``, ``summary.json`` and ``plots/*.png``;
the sweep itself (grids, planning, training, resuming) is :mod:`sparseclip.experiments.ablate`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..config import config_from_dict  # noqa: E402
from ..data.tasks import TASK_SPECS  # noqa: E402
from ..files.atomic import save_figure, write_text_atomic
from .grids import Grid  # noqa: E402

#: the mean zero-shot accuracy of guessing (balanced classes); accuracies within NEAR_CHANCE of it decide nothing
CHANCE = float(np.mean([1 / len(classes) for classes, _ in TASK_SPECS.values()]))
NEAR_CHANCE = 0.03
AT_CHANCE = f"inconclusive at this scale (zero-shot accuracy within {100 * NEAR_CHANCE:.0f} points of chance)"

#: (key in a result row, table header, scale): accuracies shown in %, the rest as measured
METRICS: list[tuple[str, str, float]] = [
    ("zs_mean", "zero-shot %", 100), ("probe_mean", "probe %", 100), ("t2i_R@1", "t2i R@1 %", 100),
    ("i2t_R@1", "i2t R@1 %", 100), ("image_L0", "image L0", 1), ("image_L0_pct", "image L0 %", 1),
    ("image_dead_pct", "image dead %", 1), ("text_L0_pct", "text L0 %", 1),
    ("train_l0_start_pct", "train L0 % (first log)", 1), ("train_l0_end_pct", "train L0 % (last log)", 1),
    ("logit_scale", "logit scale", 1), ("train_seconds", "train s", 1),
]



def aggregate(rows: list[dict], grid: Grid) -> list[dict]:
    """Per cell of ``grid``: mean, std (ddof 1), min, max and n over seeds of every metric, plus the mean
    training L0 curve."""
    out = []
    for cell in grid.cells:
        mine = [r for r in rows if r["grid"] == grid.name and r["cell"] == cell.label]
        if not mine:
            continue
        entry: dict = {"cell": cell.label, "settings": dict(cell.settings), "n": len(mine),
                       "seeds": [r["seed"] for r in mine], "code_dim": mine[0]["code_dim"]}
        for key, _, _ in METRICS:
            v = np.array([r[key] for r in mine], dtype=float)
            entry[key] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                          "min": float(v.min()), "max": float(v.max()),
                          "by_seed": {str(r["seed"]): float(r[key]) for r in mine}}
        steps = [s for s, _ in mine[0]["l0_curve"]]
        curves = np.array([[v for _, v in r["l0_curve"]] for r in mine if len(r["l0_curve"]) == len(steps)])
        entry["l0_curve"] = {"step": steps, "image_l0_pct": curves.mean(0).tolist()}
        out.append(entry)
    return out


def grid_markdown(grid: Grid, agg: list[dict]) -> str:
    """One grid's table: a row per cell, each metric as mean ± std over seeds."""
    lines = [f"## {grid.name}: {grid.title}", "", grid.question, "",
             "| cell | code dim | seeds | " + " | ".join(h for _, h, _ in METRICS) + " |",
             "|---|---|---|" + "---|" * len(METRICS)]
    for e in agg:
        vals = [f"{e[k]['mean'] * s:.{0 if abs(e[k]['mean'] * s) >= 1000 else 1}f} ± {e[k]['std'] * s:.1f}"
                for k, _, s in METRICS]
        lines.append(f"| {e['cell']} | {e['code_dim']} | {e['n']} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def _find(agg: list[dict], **want: object) -> dict | None:
    """The cell whose settings include every ``key=value`` (keys with ``__`` for dots)."""
    for e in agg:
        if all(e["settings"].get(k.replace("__", ".")) == v for k, v in want.items()):
            return e
    return None


def compare(a: dict, b: dict, key: str, scale: float = 1.0) -> tuple[float, str]:
    """(mean(a) - mean(b), word): 'higher'/'lower' when the 95% t-interval of the difference excludes 0,
    'within noise' otherwise. Paired by seed when both cells have per-seed values for >= 2 common seeds (runs of
    one seed share initialisation and data order); else Welch's unpaired interval; never with < 2 seeds."""
    d, (lo, hi) = (a[key]["mean"] - b[key]["mean"]) * scale, difference_interval(a, b, key, scale)
    if math.isnan(lo):
        return d, "within noise"
    return d, ("higher" if lo > 0 else "lower" if hi < 0 else "within noise")


def difference_interval(a: dict, b: dict, key: str, scale: float = 1.0, level: float = 0.95) -> tuple[float, float]:
    """The ``level`` t-interval of mean(a) - mean(b) (NaN, NaN without enough seeds)."""
    from scipy.stats import t

    sa, sb = a[key].get("by_seed", {}), b[key].get("by_seed", {})
    common = sorted(set(sa) & set(sb))
    if len(common) >= 2:  # paired over seeds
        diff = np.array([sa[k] - sb[k] for k in common]) * scale
        n = len(diff)
        half = t.ppf(0.5 + level / 2, n - 1) * diff.std(ddof=1) / math.sqrt(n)
        return float(diff.mean() - half), float(diff.mean() + half)
    if min(a["n"], b["n"]) < 2:
        return float("nan"), float("nan")
    va, vb = a[key]["std"] ** 2 / a["n"], b[key]["std"] ** 2 / b["n"]
    se = math.sqrt(va + vb)
    if se == 0:
        d = a[key]["mean"] - b[key]["mean"]
        return d * scale, d * scale
    dof = (va + vb) ** 2 / (va ** 2 / (a["n"] - 1) + vb ** 2 / (b["n"] - 1))  # Welch-Satterthwaite
    d = a[key]["mean"] - b[key]["mean"]
    half = t.ppf(0.5 + level / 2, dof) * se
    return float((d - half) * scale), float((d + half) * scale)


def _chance(*entries: dict) -> bool:
    return all(e["zs_mean"]["mean"] < CHANCE + NEAR_CHANCE for e in entries)


def _acc(e: dict) -> str:
    return f"{100 * e['zs_mean']['mean']:.1f} ± {100 * e['zs_mean']['std']:.1f}%"


def _l0(e: dict) -> str:
    return f"{e['image_L0_pct']['mean']:.1f}%"


def verdicts(aggs: dict[str, list[dict]]) -> list[str]:
    """One sentence per paper claim that the grids present can judge: reproduced / not / inconclusive."""
    out = []
    g = aggs.get("expansion", [])
    dense, relus = _find(g, model__head__kind="dense"), sorted(
        [e for e in g if e["settings"].get("model.head.kind") == "relu"], key=lambda e: e["code_dim"])
    lins = sorted([e for e in g if e["settings"].get("model.head.kind") == "linear_wide"], key=lambda e: e["code_dim"])
    if dense and relus:
        d, w = compare(relus[0], dense, "zs_mean", 100)
        verdict = {"lower": "reproduced", "higher": "not reproduced"}.get(w, "inconclusive at this scale")
        verdict = AT_CHANCE if _chance(relus[0], dense) else verdict
        out.append(f"**ReLU without expansion lowers accuracy**: {verdict}. ReLU at {relus[0]['code_dim']} dims "
                   f"{_acc(relus[0])} vs dense {_acc(dense)} zero-shot ({d:+.1f} points, {w}).")
    if len(relus) > 1 and lins and (len(lins) > 1 or dense):
        # without a linear_wide k=1 cell, the dense head is the same thing (a D -> D projection, no ReLU)
        (r0, r1), (l0, l1) = (relus[0], relus[-1]), (lins[0] if len(lins) > 1 else dense, lins[-1])
        dr, wr = compare(r1, r0, "zs_mean", 100)
        dl, wl = compare(l1, l0, "zs_mean", 100)
        dz, wz = compare(r1, r0, "image_L0_pct")
        acc_ok, sparse_ok = wr == "higher", wz == "lower" and l1["image_L0_pct"]["mean"] > 90
        only = wl != "higher" or dl < dr
        verdict = ("reproduced" if acc_ok and sparse_ok and only else
                   "not reproduced" if wr == "lower" or wz == "higher" else "inconclusive at this scale")
        verdict = AT_CHANCE if _chance(r0, r1, l0, l1) else verdict
        out.append(f"**Expansion raises accuracy and sparsity, only with the ReLU**: {verdict}. From "
                   f"{r0['code_dim']} to {r1['code_dim']} dims ReLU goes {_acc(r0)} -> {_acc(r1)} ({dr:+.1f}, {wr}) "
                   f"and image L0 {_l0(r0)} -> {_l0(r1)} of dims ({wz}); the linear_wide control goes {_acc(l0)} -> "
                   f"{_acc(l1)} ({dl:+.1f}, {wl}) with L0 {_l0(l1)}.")
        out.extend(_control_verdict(relus, lins))
    g = aggs.get("sparsifier", [])
    relu = _find(g, model__head__kind="relu", loss__l1_coef=None)
    others = [e for e in g if e is not relu]
    if relu and others:
        out.append(_sparsifier_verdict(relu, others))
        start = relu["train_l0_start_pct"]["mean"]
        end = relu["train_l0_end_pct"]["mean"]
        starts = ", ".join(f"{e['cell']} {e['train_l0_start_pct']['mean']:.1f}%" for e in others)
        gradual = start - end > 0.25 * start and all(e["train_l0_start_pct"]["mean"] < start for e in others)
        out.append(f"**ReLU sparsifies gradually while L1/TopK start sparse**: "
                   f"{'reproduced' if gradual else 'not reproduced at this scale'}. ReLU's training-batch L0 "
                   f"goes {start:.1f}% -> {end:.1f}% of dims from the first to the last log; the others start at "
                   f"{starts}.")
    g = sorted(aggs.get("cap", []), key=lambda e: e["settings"].get("model.logit_scale_max", 0))
    if len(g) > 1:
        lo, hi = g[0], g[-1]
        dz, wz = compare(lo, hi, "image_L0_pct")
        da, wa = compare(lo, hi, "zs_mean", 100)
        mono = all(a["image_L0_pct"]["mean"] <= b["image_L0_pct"]["mean"] for a, b in zip(g, g[1:], strict=False))
        verdict = ("reproduced" if wz == "lower" and mono else "partly reproduced" if wz == "lower"
                   else "not reproduced" if wz == "higher" else "inconclusive at this scale")
        series = ", ".join(f"cap {e['settings']['model.logit_scale_max']}: L0 {_l0(e)}, {_acc(e)}" for e in g)
        out.append(f"**The logit-scale cap controls sparsity**: {verdict}. {series} (lowest vs highest cap: L0 "
                   f"{dz:+.1f} points, {wz}; accuracy {da:+.1f} points, {wa}; L0 monotone in the cap: {mono}).")
        out.extend(_sweet_spot_verdict(g))
    g = aggs.get("placement", [])
    rep, reprelu = (_find(g, model__head__placement="replace", model__head__rep_relu=v) for v in (False, True))
    app = _find(g, model__head__placement="append", model__head__rep_relu=False)
    if rep and app and reprelu:
        da, wa = compare(app, rep, "zs_mean", 100)
        dd, wd = compare(reprelu, rep, "image_dead_pct")
        dr, wr = compare(reprelu, rep, "zs_mean", 100)
        out.append(f"**Placement and RepReLU** (the paper leaves placement open; NCL's RepReLU is meant to avoid dead "
                   f"units): append vs replace {_acc(app)} vs {_acc(rep)} ({da:+.1f}, {wa}), L0 {_l0(app)} vs "
                   f"{_l0(rep)}; RepReLU vs ReLU {_acc(reprelu)} vs {_acc(rep)} ({dr:+.1f}, {wr}), dead image "
                   f"features {reprelu['image_dead_pct']['mean']:.1f}% vs {rep['image_dead_pct']['mean']:.1f}% "
                   f"({dd:+.1f}, {wd}).")
    return out


def _count(n: int, noun: str) -> str:
    return f"the 1 {noun}" if n == 1 else f"all {n} {noun}s"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _sparsifier_verdict(relu: dict, others: list[dict]) -> str:
    """'ReLU beats L1 and TopK', judged only against the sparsifiers that learn: a win over one at chance level
    (collapsed) shows that it failed, not that ReLU is better, so it is reported but does not count."""
    cmp = [(e, *compare(relu, e, "zs_mean", 100)) for e in others]
    live = [(e, d, w) for e, d, w in cmp if not _chance(e)]
    collapsed = [e["cell"] for e, _, _ in cmp if _chance(e)]
    wins, losses = sum(w == "higher" for _, _, w in live), sum(w == "lower" for _, _, w in live)
    if _chance(relu):
        verdict = AT_CHANCE
    elif not live:
        verdict = "inconclusive at this scale: every alternative collapsed to chance"
    elif losses:
        verdict = f"not reproduced: ReLU is lower than {losses} of the {len(live)} sparsifiers that learn"
    elif wins == len(live):
        verdict = f"reproduced against {_count(len(live), 'sparsifier')} that learn"
    elif wins:
        verdict = f"partly reproduced: ReLU is higher than {wins} of the {len(live)} sparsifiers that learn"
    else:
        verdict = f"not shown at this scale: ReLU is within noise of {_count(len(live), 'sparsifier')} that learn"
    if collapsed and not _chance(relu):
        verdict += f"; {', '.join(collapsed)} collapsed to chance (not counted)"
    detail = "; ".join(f"{e['cell']} {_acc(e)} ({d:+.1f} for ReLU, {w})" for e, d, w in cmp)
    return f"**ReLU beats L1 and TopK**: {verdict}. ReLU {_acc(relu)} zero-shot vs {detail}."


def _control_verdict(relus: list[dict], lins: list[dict]) -> list[str]:
    """The paper's open question: ReLU vs the parameter-matched ``linear_wide`` head, judged over every shared
    width (not only the widest): sparsity adds accuracy where the ReLU is higher beyond noise."""
    pairs = [(r, lw) for r in relus for lw in lins if lw["code_dim"] == r["code_dim"]]
    if not pairs:
        return []
    every = [(r["code_dim"], *compare(r, lw, "zs_mean", 100)) for r, lw in pairs]
    cmp = [c for c, (r, lw) in zip(every, pairs, strict=True) if not _chance(r, lw)]
    higher = [str(dim) for dim, _, w in cmp if w == "higher"]
    lower = [str(dim) for dim, _, w in cmp if w == "lower"]
    if not cmp:
        verdict = AT_CHANCE
    elif higher and lower:
        verdict = (f"mixed: the ReLU is higher at {', '.join(higher)} dims and lower at {', '.join(lower)} dims "
                   f"of {_plural(len(cmp), 'width')}")
    elif higher:
        verdict = (f"the ReLU (sparsity) adds accuracy beyond the parameters at {', '.join(higher)} dims of "
                   f"{_plural(len(cmp), 'width')} (never lower)")
    elif lower:
        verdict = (f"not from sparsity: the ReLU is never higher than the parameter-matched control and lower at "
                   f"{', '.join(lower)} dims of {_plural(len(cmp), 'width')}")
    else:
        verdict = f"inconclusive at this scale: within noise at {_count(len(cmp), 'width')}"
    per = ", ".join(f"{dim}: {dd:+.1f} ({ww})" for dim, dd, ww in every)
    return [f"**Gains from sparsity or from extra parameters** (the control the paper lacked): {verdict}. ReLU "
            f"minus linear_wide zero-shot points per code dim: {per}."]


def _sweet_spot_verdict(caps: list[dict]) -> list[str]:
    """'A sweet spot': the most accurate cap lies strictly inside the range and beats both ends."""
    if len(caps) < 3:
        return []
    best = max(range(len(caps)), key=lambda i: caps[i]["zs_mean"]["mean"])
    e = caps[best]
    name = f"cap {e['settings'].get('model.logit_scale_max')}"
    if 0 < best < len(caps) - 1:
        words = [compare(e, end, "zs_mean", 100)[1] for end in (caps[0], caps[-1])]
        verdict = "reproduced" if words == ["higher", "higher"] else "inconclusive at this scale"
        detail = f"the most accurate is {name} ({_acc(e)}), vs the ends: {words[0]} / {words[1]}"
    else:
        other = caps[-1] if best == 0 else caps[0]
        w = compare(e, other, "zs_mean", 100)[1]
        verdict = "not reproduced" if w == "higher" else "inconclusive at this scale"
        detail = f"the most accurate is an end of the range, {name} ({_acc(e)}; vs the other end: {w})"
    verdict = AT_CHANCE if _chance(*caps) else verdict
    return [f"**The cap has a sweet spot**: {verdict}; {detail}."]


# ---------------------------------------------------------------------------------------------- plots


def plot_grid(grid: Grid, agg: list[dict], out: Path) -> list[Path]:
    """Bars (accuracy, L0, dead features) per cell, metric-vs-x lines when the grid has ``x``, and the mean
    training-batch L0 over steps per cell. Error bars are the std over seeds."""
    paths = []
    panels = [("zs_mean", "zero-shot acc %", 100), ("image_L0_pct", "image L0 % of dims", 1),
              ("image_dead_pct", "dead image features %", 1)]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    xs = range(len(agg))
    for ax, (key, title, s) in zip(axes, panels, strict=True):
        ax.bar(xs, [e[key]["mean"] * s for e in agg], yerr=[e[key]["std"] * s for e in agg], capsize=3, color="C0")
        ax.set_xticks(list(xs))
        ax.set_xticklabels([e["cell"] for e in agg], rotation=40, ha="right", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0].axhline(100 * CHANCE, ls=":", color="grey")  # guessing
    fig.suptitle(grid.title, fontsize=10)
    paths.append(_save(fig, out / f"{grid.name}_bars.png"))
    if grid.x:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        groups: dict[str, list[dict]] = {}
        for e in agg:
            groups.setdefault(str(e["settings"].get(grid.series or "", "")), []).append(e)
        for ax, (key, title, s) in zip(axes, panels[:2], strict=True):
            for i, (name, es) in enumerate(groups.items()):
                pts = sorted(((e["settings"][grid.x], e) for e in es if grid.x in e["settings"]), key=lambda p: p[0])
                if len(pts) > 1:
                    ax.errorbar([p for p, _ in pts], [e[key]["mean"] * s for _, e in pts],
                                yerr=[e[key]["std"] * s for _, e in pts], marker="o", capsize=3, label=name or None,
                                color=f"C{i}")
                else:  # a single reference cell (e.g. the dense head): a horizontal line
                    ax.axhline(es[0][key]["mean"] * s, ls="--", color=f"C{i}", label=es[0]["cell"])
            if grid.x == "model.head.expansion":
                ax.set_xscale("log", base=2)
            if key == "zs_mean":
                ax.axhline(100 * CHANCE, ls=":", color="grey", label="chance")
            _style(ax, grid.x_label, title)
        paths.append(_save(fig, out / f"{grid.name}_vs_x.png"))
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for e in agg:
        ax.plot(e["l0_curve"]["step"], e["l0_curve"]["image_l0_pct"], label=e["cell"])
    ax.set_yscale("log")
    _style(ax, "step", "train-batch image L0 % (mean over seeds)")
    paths.append(_save(fig, out / f"{grid.name}_l0_training.png"))
    return paths


def _style(ax, xlabel: str, title: str) -> None:
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return path


# ---------------------------------------------------------------------------------------------- the summary


def write_summary(out: Path, grids: list[Grid], rows: list[dict], base: dict, seeds: int, command: str = "",
                  seconds: float = 0.0) -> str:
    """Aggregate ``rows`` (one per grid x cell x seed) and write ``summary.md``, ``summary.json`` and
    ``plots/``; returns the markdown."""
    aggs = {g.name: aggregate(rows, g) for g in grids}
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    made = [p for g in grids for p in plot_grid(g, aggs[g.name], plots)]
    distinct = {r["run"]: r["train_seconds"] for r in rows}
    says = verdicts(aggs)
    b = config_from_dict(base)
    header = [
        "# sparseclip ablate: results", "",
        *([f"Command: `{command}`", ""] if command else []),
        f"Base config `{b.name}` (embed_dim {b.model.embed_dim}, vision width {b.model.vision_cfg.get('width')}, "
        f"data {b.data.kind}), {b.train.steps} steps x batch {b.train.batch_size}, lr {b.train.lr:g}, "
        f"seeds {', '.join(map(str, range(seeds)))} (train.seed: initialisation; the data stream is the same "
        f"for every run); evaluation on {b.data.num_val} held-out images per task. Each value is mean ± std "
        f"over seeds. L0 = mean non-zero code dims per input; dead = % of dims that fire (> 0.001) on fewer "
        f"than 2 evaluation inputs; train L0 = % of positive code entries on the training batch, from log.jsonl "
        f"(for the signed dense/linear_wide heads, L0 is 100% and train L0 / dead count positive entries, not "
        f"sparsity). Chance level of the zero-shot mean: {100 * CHANCE:.1f}%. {len(distinct)} distinct runs, "
        f"{sum(distinct.values()):.0f} s of training in all; {seconds:.0f} s this invocation.", "",
        "## Verdicts (difference 'higher'/'lower' = its 95% t-interval over seeds, paired by seed, excludes 0)", "",
        *[f"- {v}" for v in says], "",
    ]
    body = [grid_markdown(g, aggs[g.name]) for g in grids]
    pics = ["## Plots", "", *[f"![{p.stem}](plots/{p.name})" for p in made], ""]
    md = "\n".join(header) + "\n" + "\n".join(body) + "\n" + "\n".join(pics)
    write_text_atomic(out / "summary.md", md)
    write_text_atomic(out / "summary.json", json.dumps(
        {"command": command, "seeds": seeds, "base": base,
         "grids": {g.name: {"title": g.title, "question": g.question, "cells": aggs[g.name]} for g in grids},
         "verdicts": says, "rows": rows}, indent=1))
    return md
