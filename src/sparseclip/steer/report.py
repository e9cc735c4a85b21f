"""Tables, generated prose and plots of a steering sweep (:mod:`.bench`), and their regeneration from
``steering.json`` alone (``sparseclip steer-bench --render``). Every rate is shown with its n and a 95% Wilson
interval."""

from __future__ import annotations

import json
from pathlib import Path

from ..files.atomic import save_figure, write_text_atomic

QUESTION_TEXT = {"caption": "caption question (\"what is in the picture?\")",
                 "attribute": "attribute question (\"what colour is the shape?\" / \"what shape is it?\")"}
FINDINGS_MARK = "findings of docs/steering/steering.md"
BY_KIND_MARK = "chosen settings per kind of docs/steering/steering.md"
HEADLINE_MARK = "headline of docs/steering/steering.md"
#: method names in results written before the methods were registered (the first sweep's two rows)
LEGACY = {"sparse": "text-word", "dense": "dense-text"}


def _entry(method: str):  # -> SteerMethod | None
    """The registered entry of a method named in results (None for a name no longer registered)."""
    from .methods import STEER_METHODS

    name = LEGACY.get(method, method)
    return STEER_METHODS.get(name) if name in STEER_METHODS else None


def is_dense(method: str) -> bool:
    """Whether ``method`` edits a dense CLIP (the baselines); every other method edits a Sparse CLIP's features."""
    e = _entry(method)
    return e is not None and e.edits == "dense"


def is_candidate(method: str) -> bool:
    """Whether the benchmark's target is about ``method`` (the text-word method is the old baseline)."""
    e = _entry(method)
    return e is not None and e.candidate


def wilson(rate: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a rate observed on ``n`` answers."""
    if n <= 0:
        return float("nan"), float("nan")
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * (rate * (1 - rate) / n + z * z / (4 * n * n)) ** 0.5
    return max(0.0, centre - half), min(1.0, centre + half)


def ci(rate: float, n: int) -> str:
    """``rate [lo-hi]`` in percent."""
    lo, hi = wilson(rate, n)
    return f"{rate:.1%} [{100 * lo:.1f}-{100 * hi:.1f}]"


def _n(res: dict, per_kind: bool = False) -> int:
    """Answers behind a rate: images per split and kind, times the kinds unless per kind, times the VLM seeds
    pooled."""
    c = res["config"]
    return c["n_images"] * (1 if per_kind else len(c["kinds"])) * res.get("n_seeds", 1)


def _k(res: dict, k: int) -> str:
    if is_dense(res["method"]):
        return "-"
    return f"all {k}" if k >= res.get("code_width", 10 ** 9) else str(k)


def _base(rows: list[dict]) -> dict | None:
    return next((r for r in rows if r["strength"] == 0), None)


#: the costs of an edit, each read as a rise over the same model's unedited answers (the sparse and dense VLMs'
#: unedited answers differ, so raw rates do not compare across models)
COSTS = ("corrupt", "side_effect")


def rises(edited: dict, unedited: dict) -> dict[str, float]:
    """Each cost of :data:`COSTS` as the edited rate minus the unedited one (same model, question and split)."""
    return {m: edited[m] - unedited[m] for m in COSTS}


def pts(x: float) -> str:
    """A rise in percentage points, signed."""
    return f"{100 * x:+.1f} pts"


def choose(rows: list[dict], question: str, max_corruption: float, metric: str = "corrupt") -> dict:
    """The edited setting with the highest select-split success among those whose select ``metric`` (corruption,
    or side effects) is at most the unedited answers' rate plus ``max_corruption`` (ties: fewer features, then
    lower strength); the one lowest in ``metric`` if none is within that budget."""
    base = _base(rows)
    budget = max_corruption + (base["select"][question][metric] if base else 0.0)
    edited = [r for r in rows if r["strength"] > 0]
    ok = [r for r in edited if r["select"][question][metric] <= budget + 1e-12]
    if ok:
        return max(ok, key=lambda r: (r["select"][question]["success"], -r["k"], -r["strength"]))
    return min(edited, key=lambda r: (r["select"][question][metric], -r["select"][question]["success"]))


def markdown_table(results: list[dict], question: str = "caption") -> str:
    """One Markdown table: a row per method and setting, select and test rates for ``question``."""
    n = _n(results[0]) if results else 0
    lines = [f"| method | K | strength | select success (n={n}) | select corrupt | test success, string (n={n}) | "
             "test success, judge | test corrupt | test ill-formed | test unfaithful | test side effects | "
             "test zero-shot -> target (codes) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        best = choose(res["rows"], question, res["config"]["max_corruption"])
        n = _n(res)
        for r in res["rows"]:
            mark = " **(chosen)**" if r is best else (" (no edit)" if r["strength"] == 0 else "")
            sel, te = r["select"][question], r["test"][question]
            lines.append(f"| {r['method']}{mark} | {_k(res, r['k'])} | {r['strength']:g} | {ci(sel['success'], n)} | "
                         f"{ci(sel['corrupt'], n)} | {ci(te['success'], n)} | {ci(te['judge_success'], n)} | "
                         f"{ci(te['corrupt'], n)} | {ci(te['ill_formed'], n)} | {ci(te['unfaithful'], n)} | "
                         f"{ci(te['side_effect'], n)} | {ci(r['test']['zeroshot_target']['rate'], n)} |")
    return "\n".join(lines)


def chosen_by_kind(results: list[dict]) -> str:
    """Markdown: the chosen settings' test rates per concept kind, beside the unedited answers' rates."""
    n = _n(results[0], per_kind=True) if results else 0
    lines = ["| method | question | K | strength | kind | unedited names source | "
             f"success, string (n={n}) | success, judge | corrupt (unedited) | side effects | "
             "zero-shot -> target (codes) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        base = res["rows"][0]["detail"]["test"]
        for question in ("caption", "attribute"):
            b = choose(res["rows"], question, res["config"]["max_corruption"])
            for kind in res["config"]["kinds"]:
                d, u = b["detail"]["test"][kind], base[kind][question]
                lines.append(f"| {res['method']} | {question} | {_k(res, b['k'])} | {b['strength']:g} | {kind} | "
                             f"{ci(u['names_source'], n)} | {ci(d[question]['success'], n)} | "
                             f"{ci(d[question]['judge_success'], n)} | {ci(d[question]['corrupt'], n)} "
                             f"({u['corrupt']:.1%}) | {ci(d[question]['side_effect'], n)} | "
                             f"{ci(d['zeroshot_target'], n)} |")
    return "\n".join(lines)


def summary(results: list[dict]) -> dict:
    """The chosen setting per method and question, with its test rates, the unedited ones and, when VLM seeds
    were pooled, each seed's test rates at that setting."""
    out = {}
    for res in results:
        for question in ("caption", "attribute"):
            b = choose(res["rows"], question, res["config"]["max_corruption"])
            base = _base(res["rows"]) or res["rows"][0]
            out[f"{res['method']}/{question}"] = {
                "k": b["k"], "strength": b["strength"], "n": _n(res), "select": b["select"][question],
                "test": b["test"][question], "unedited_test": base["test"][question],
                "rise_select": rises(b["select"][question], base["select"][question]),
                "rise_test": rises(b["test"][question], base["test"][question]),
                "test_zeroshot_target": b["test"]["zeroshot_target"]["rate"],
                "seeds_test": [{m: sd["test"][question][m] for m in ("success", "corrupt", "side_effect")}
                               for sd in b.get("seeds", [])]}
    return out


def _overlap(a: tuple[float, int], b: tuple[float, int]) -> bool:
    la, ha = wilson(*a)
    lb, hb = wilson(*b)
    return la <= hb and lb <= ha


def _setting(method: str, s: dict, width: int = 10 ** 9) -> str:
    e = _entry(method)
    if is_dense(method):
        return f"strength {s['strength']:g} {e.unit}"
    if e is not None and e.unit:  # a per-feature scale
        return f"K={s['k']} at {s['strength']:g} {e.unit}"
    k = f"all {s['k']}" if s["k"] >= width else str(s["k"])
    return f"K={k} at {s['strength']:g} x mean code norm"


def _per_seed(s: dict, metric: str = "success") -> str:
    seeds = s.get("seeds_test") or []
    return ", ".join(f"{sd[metric]:.1%}" for sd in seeds) if len(seeds) > 1 else ""


def headline_table(results: list[dict]) -> str:
    """Markdown: every method's chosen setting (select split rule) and its test rates, per question."""
    summ = summary(results)
    seeds = max((r.get("n_seeds", 1) for r in results), default=1)
    lines = ["| question | method | model | chosen on select | success (test) | success per VLM seed | corrupt "
             "(unedited) | corruption rise | side effects (rise) |", "|---|---|---|---|---|---|---|---|---|"]
    for question in ("caption", "attribute"):
        for res in results:
            s = summ[f"{res['method']}/{question}"]
            t, u, n = s["test"], s["unedited_test"], s["n"]
            model = "dense CLIP" if is_dense(res["method"]) else "Sparse CLIP"
            lines.append(f"| {question} | {res['method']} | {model} | "
                         f"{_setting(res['method'], s, res.get('code_width', 10 ** 9))} | {ci(t['success'], n)} | "
                         f"{_per_seed(s) or '-'} | {ci(t['corrupt'], n)} ({u['corrupt']:.1%}) | "
                         f"{pts(s['rise_test']['corrupt'])} | {ci(t['side_effect'], n)} |")
    note = f"Rates pooled over {seeds} VLM seeds ({_n(results[0])} answers each)." if seeds > 1 else ""
    return "\n".join(lines) + (f"\n\n{note}" if note else "")


def target_verdicts(results: list[dict]) -> list[str]:
    """The issue's target, per question and dense baseline: does an evidence, effect or sparse-cleaned method reach
    the dense method's test success with its corruption and side effects rising no more over its own model's
    unedited answers than the dense method's over theirs (point estimates; whether the success intervals overlap
    is said)?"""
    summ = summary(results)
    methods = [r["method"] for r in results]
    dense = [m for m in methods if is_dense(m)]
    cands = [m for m in methods if is_candidate(m)]
    lines = []
    for question in ("caption", "attribute"):
        for d in dense:
            b = summ[f"{d}/{question}"]
            bt, br = b["test"], b["rise_test"]
            parts, met = [], []
            for m in cands:
                a = summ[f"{m}/{question}"]
                at, ar = a["test"], a["rise_test"]
                ok = at["success"] >= bt["success"] and all(ar[c] <= br[c] + 1e-12 for c in COSTS)
                gap = at["success"] - bt["success"]
                over = "intervals overlap" if _overlap((at["success"], a["n"]), (bt["success"], b["n"])) else \
                    "intervals apart"
                parts.append(f"{m} {gap:+.1%} success ({over}), corruption rise {pts(ar['corrupt'])} vs "
                             f"{pts(br['corrupt'])}, side effects {pts(ar['side_effect'])} vs "
                             f"{pts(br['side_effect'])}")
                if ok:
                    met.append(m)
            verdict = f"**met** by {', '.join(met)}" if met else "**not met**"
            lines.append(f"- Target on the {QUESTION_TEXT[question]} against {d} (success {ci(bt['success'], b['n'])},"
                         f" corruption {bt['corrupt']:.1%} against {b['unedited_test']['corrupt']:.1%} unedited, "
                         f"a rise of {pts(br['corrupt'])}; side effects {pts(br['side_effect'])}): {verdict}. "
                         f"Each method against its own model's unedited answers: {'; '.join(parts)}.")
    return lines


def matched_cost(results: list[dict]) -> list[str]:
    """The target asked the other way round, still chosen on the select split: per question, dense method and
    candidate sparse method, the sparse setting with the highest select success among those whose select
    corruption and side effects rise over its unedited answers by at most the dense method's chosen setting's
    rises (select); its test rates and rises against the dense method's."""
    summ = summary(results)
    by = {r["method"]: r for r in results}
    lines = []
    for question in ("caption", "attribute"):
        for d in (m for m in by if is_dense(m)):
            ds = summ[f"{d}/{question}"]
            dsel, dt, n = ds["rise_select"], ds["test"], ds["n"]
            for m in (m for m in by if is_candidate(m)):
                base = _base(by[m]["rows"]) or by[m]["rows"][0]
                ok = [r for r in by[m]["rows"] if r["strength"] > 0
                      and all(v <= dsel[c] + 1e-12 for c, v in rises(r["select"][question],
                                                                     base["select"][question]).items())]
                if not ok:
                    lines.append(f"- {question}, {m} at {d}'s select costs (corruption rise <= {pts(dsel['corrupt'])},"
                                 f" side effects <= {pts(dsel['side_effect'])}): no setting qualifies.")
                    continue
                b = max(ok, key=lambda r: (r["select"][question]["success"], -r["k"], -r["strength"]))
                t, tr = b["test"][question], rises(b["test"][question], base["test"][question])
                met = t["success"] >= dt["success"] and all(tr[c] <= ds["rise_test"][c] + 1e-12 for c in COSTS)
                over = "overlap" if _overlap((t["success"], n), (dt["success"], n)) else "apart"
                setting = _setting(m, b, by[m].get("code_width", 10 ** 9))
                lines.append(f"- {question}, {m} at {d}'s select costs: {setting}, test success {ci(t['success'], n)} "
                             f"vs {ci(dt['success'], n)} (intervals {over}), "
                             f"corruption rise {pts(tr['corrupt'])} vs {pts(ds['rise_test']['corrupt'])}, side effects "
                             f"{pts(tr['side_effect'])} vs {pts(ds['rise_test']['side_effect'])}: "
                             f"target {'**met**' if met else 'not met'}.")
    return lines


def findings(results: list[dict]) -> str:
    """Generated prose: every number the docs state about a sweep, computed from its results."""
    lines = []
    judge = results[0].get("judge", {}) if results else {}
    cal = [f"{key.replace('/', ' from the ')} {v['accuracy']:.0%} (n={v['n']})"
           for key, v in judge.items() if isinstance(v, dict)]
    if cal:
        lines.append(f"- **The judge** ({judge['judge']}) classes the test images' true captions and true "
                     f"attribute words correctly: {', '.join(cal)}.")
    lines += target_verdicts(results)
    lines += matched_cost(results)
    summ = summary(results)
    widths = {r["method"]: r.get("code_width", 10 ** 9) for r in results}
    for key, s in summ.items():
        method, question = key.split("/")
        t, u, n = s["test"], s["unedited_test"], s["n"]
        effects = ", ".join(f"{k} {v}" for k, v in sorted(t.get("side_effect_kinds", {}).items())) or "none"
        wrong = ", ".join(f"{k} {v}" for k, v in sorted(u.get("unfaithful_kinds", {}).items())) or "none"
        seeds = f" (per VLM seed: {_per_seed(s)})" if _per_seed(s) else ""
        lines.append(
            f"- **{method}, {QUESTION_TEXT[question]}**, chosen {_setting(method, s, widths[method])}: success "
            f"{ci(t['success'], n)}{seeds} by string match, {ci(t['judge_success'], n)} by the judge (they agree on "
            f"{ci(t['judge_agrees'], n)} of answers; unedited: {ci(u['success'], n)} / {ci(u['judge_success'], n)},"
            f" the random target named by chance); corruption {ci(t['corrupt'], n)} against {ci(u['corrupt'], n)} "
            f"unedited, a rise of {pts(s['rise_test']['corrupt'])} (ill-formed {ci(t['ill_formed'], n)}, unfaithful "
            f"to the image in a non-steered attribute "
            f"{ci(t['unfaithful'], n)}; the unedited answers' unfaithful attributes: {wrong}); "
            f"side effects {ci(t['side_effect'], n)} of answers (by attribute: {effects}; n={n}).")
    for res in results:
        cap = res["config"].get("max_side_effects", 0.2)
        for question in ("caption", "attribute"):
            b, n = choose(res["rows"], question, cap, "side_effect"), _n(res)
            t = b["test"][question]
            lines.append(f"- {res['method']}, {question} question, side effects held to at most {cap:.0%} on the "
                         f"select split: chosen {_setting(res['method'], b, widths[res['method']])}, test success "
                         f"{ci(t['success'], n)}, side effects {ci(t['side_effect'], n)}, corruption "
                         f"{ci(t['corrupt'], n)}.")
    return "\n".join(lines)


def _frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats (lower x and higher y), sorted by x."""
    best, out = -1.0, []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            out.append((x, y))
            best = y
    return out


def plot(results: list[dict], path: str | Path) -> None:
    """Success against the rise in corruption and in side effects over each model's own unedited answers (test
    split), a row per question: every setting of every method as a dot, each method's frontier as a line, its
    chosen setting ringed; the unedited answers sit at a rise of 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    questions = ("caption", "attribute")
    fig, axes = plt.subplots(len(questions), 2, figsize=(11, 4.2 * len(questions)), squeeze=False)
    for row, question in enumerate(questions):
        for col, (metric, label) in enumerate((("corrupt", "corruption"), ("side_effect", "side effects"))):
            ax = axes[row][col]
            for res in results:
                u = (_base(res["rows"]) or res["rows"][0])["test"][question][metric]
                te = [r["test"][question] for r in res["rows"] if r["strength"] > 0]
                xy = [(t[metric] - u, t["success"]) for t in te]
                style = "--" if is_dense(res["method"]) else "-"
                line, = ax.plot(*zip(*_frontier(xy), strict=True), style, lw=1.4, label=res["method"])
                ax.scatter(*zip(*xy, strict=True), s=8, color=line.get_color(), alpha=0.35)
                b = choose(res["rows"], question, res["config"]["max_corruption"])["test"][question]
                ax.scatter([b[metric] - u], [b["success"]], s=70, facecolors="none", edgecolors=line.get_color(),
                           lw=1.5)
            for model, marker in (("Sparse CLIP", "x"), ("dense CLIP", "+")):
                res = next((r for r in results if (is_dense(r["method"])) == (model == "dense CLIP")), None)
                if res is not None:
                    base = (_base(res["rows"]) or res["rows"][0])["test"][question]
                    ax.scatter([0.0], [base["success"]], s=50, marker=marker, color="black",
                               label=f"unedited ({model})")
            ax.axvline(0.0, color="grey", lw=0.6)
            ax.set_xlim(-0.52, 1.02)
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel(f"{label}: rise over the model's unedited answers (test)")
            ax.set_ylabel("success (test)")
            ax.set_title(f"{question} question: each method's frontier (dashed: dense CLIP), chosen ringed",
                         fontsize=8)
            ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)


def render_results(steering_json: str | Path) -> Path:
    """Regenerate ``steering.md`` and ``steering.png`` beside a ``steering.json`` from its results (no VLM)."""
    path = Path(steering_json)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        results = data["results"]
        write_results(results, path.parent, data.get("command", ""), json_too=False)
    except FileNotFoundError:
        raise ValueError(f"--render {path}: no such file") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"--render {path}: not a steering.json of this version ({type(e).__name__}: {e})") from None
    return path.parent / "steering.md"


def generated(mark: str, text: str) -> str:
    """``text`` between the markers that docs and tests look for."""
    return f"<!-- generated: {mark} -->\n{text}\n<!-- end generated -->"


def write_results(results: list[dict], out_dir: str | Path, command: str = "", json_too: bool = True) -> dict:
    """Write ``steering.json``, ``steering.md`` and ``steering.png`` into ``out_dir``; returns the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summ = summary(results)
    if json_too:
        write_text_atomic(out / "steering.json", json.dumps({"command": command, "summary": summ,
                                                             "results": results}, indent=1))
    md = [f"Command: `{command}`", "", "Chosen settings (select split), test rates:", "",
          generated(HEADLINE_MARK, headline_table(results)), "", "Findings (generated from steering.json):", "",
          generated(FINDINGS_MARK, findings(results)), ""]
    for q in ("caption", "attribute"):
        md += [f"The {QUESTION_TEXT[q]}, every setting:", "", markdown_table(results, q), ""]
    md += ["Chosen settings on the test split, per concept kind (corrupt: the unedited rate in brackets):", "",
           generated(BY_KIND_MARK, chosen_by_kind(results)), ""]
    write_text_atomic(out / "steering.md", "\n".join(md))
    plot(results, out / "steering.png")
    return summ
