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
    """Answers behind a rate: images per split and kind, times the kinds unless per kind."""
    c = res["config"]
    return c["n_images"] * (1 if per_kind else len(c["kinds"]))


def _base(rows: list[dict]) -> dict | None:
    return next((r for r in rows if r["strength"] == 0), None)


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
            k = "-" if r["method"] == "dense" else str(r["k"])
            lines.append(f"| {r['method']}{mark} | {k} | {r['strength']:g} | {ci(sel['success'], n)} | "
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
                k = "-" if res["method"] == "dense" else str(b["k"])
                lines.append(f"| {res['method']} | {question} | {k} | {b['strength']:g} | {kind} | "
                             f"{ci(u['names_source'], n)} | {ci(d[question]['success'], n)} | "
                             f"{ci(d[question]['judge_success'], n)} | {ci(d[question]['corrupt'], n)} "
                             f"({u['corrupt']:.1%}) | {ci(d[question]['side_effect'], n)} | "
                             f"{ci(d['zeroshot_target'], n)} |")
    return "\n".join(lines)


def summary(results: list[dict]) -> dict:
    """The chosen setting per method and question, with its test rates and the unedited ones."""
    out = {}
    for res in results:
        for question in ("caption", "attribute"):
            b = choose(res["rows"], question, res["config"]["max_corruption"])
            out[f"{res['method']}/{question}"] = {
                "k": b["k"], "strength": b["strength"], "n": _n(res), "select": b["select"][question],
                "test": b["test"][question], "unedited_test": res["rows"][0]["test"][question],
                "test_zeroshot_target": b["test"]["zeroshot_target"]["rate"]}
    return out


def _overlap(a: tuple[float, int], b: tuple[float, int]) -> bool:
    la, ha = wilson(*a)
    lb, hb = wilson(*b)
    return la <= hb and lb <= ha


def _setting(method: str, s: dict) -> str:
    return f"K={s['k']} at {s['strength']:g} x p99" if method == "sparse" else \
        f"strength {s['strength']:g} x mean code norm"


def findings(results: list[dict]) -> str:
    """Generated prose: every number the docs state about a sweep, computed from its results."""
    lines = []
    judge = results[0].get("judge", {}) if results else {}
    cal = [f"{key.replace('/', ' from the ')} {v['accuracy']:.0%} (n={v['n']})"
           for key, v in judge.items() if isinstance(v, dict)]
    if cal:
        lines.append(f"- **The judge** ({judge['judge']}) classes the test images' true captions and true "
                     f"attribute words correctly: {', '.join(cal)}.")
    summ = summary(results)
    for key, s in summ.items():
        method, question = key.split("/")
        t, u, n = s["test"], s["unedited_test"], s["n"]
        effects = ", ".join(f"{k} {v}" for k, v in sorted(t.get("side_effect_kinds", {}).items())) or "none"
        wrong = ", ".join(f"{k} {v}" for k, v in sorted(u.get("unfaithful_kinds", {}).items())) or "none"
        lines.append(
            f"- **{method}, {QUESTION_TEXT[question]}**, chosen {_setting(method, s)}: success {ci(t['success'], n)} "
            f"by string match, {ci(t['judge_success'], n)} by the judge (they agree on {ci(t['judge_agrees'], n)} "
            f"of answers; unedited: {ci(u['success'], n)} / {ci(u['judge_success'], n)}, the random target named "
            f"by chance); corruption {ci(t['corrupt'], n)} against {ci(u['corrupt'], n)} unedited (ill-formed "
            f"{ci(t['ill_formed'], n)}, unfaithful to the image in a non-steered attribute {ci(t['unfaithful'], n)}; "
            f"the unedited answers' unfaithful attributes: {wrong}); "
            f"side effects {ci(t['side_effect'], n)} of answers (by attribute: {effects}; n={n}).")
    for res in results:
        cap = res["config"].get("max_side_effects", 0.2)
        for question in ("caption", "attribute"):
            b, n = choose(res["rows"], question, cap, "side_effect"), _n(res)
            t = b["test"][question]
            lines.append(f"- {res['method']}, {question} question, side effects held to at most {cap:.0%} on the "
                         f"select split: chosen {_setting(res['method'], b)}, test success {ci(t['success'], n)}, "
                         f"side effects {ci(t['side_effect'], n)}, corruption {ci(t['corrupt'], n)}.")
    methods = [r["method"] for r in results]
    if "sparse" in methods and "dense" in methods:
        for question in ("caption", "attribute"):
            a, b = summ[f"sparse/{question}"], summ[f"dense/{question}"]
            for metric, what in (("success", "success"), ("side_effect", "side effects")):
                ra, rb = (a["test"][metric], a["n"]), (b["test"][metric], b["n"])
                verdict = "the 95% intervals overlap" if _overlap(ra, rb) else \
                    ("sparse higher" if ra[0] > rb[0] else "dense higher") + ", the 95% intervals do not overlap"
                lines.append(f"- {QUESTION_TEXT[question].capitalize()}, {what}: sparse {ci(*ra)} vs dense "
                             f"{ci(*rb)} ({verdict}).")
    for res in results:
        budget = res["config"]["max_corruption"]
        for question in ("caption", "attribute"):
            b = choose(res["rows"], question, budget)
            base, n = res["rows"][0]["detail"]["test"], _n(res, per_kind=True)
            for kind in res["config"]["kinds"]:
                d = b["detail"]["test"][kind][question]
                met = d["success"] >= 0.8 and d["corrupt"] <= base[kind][question]["corrupt"] + budget
                verdict = "met" if met else "not met"
                lines.append(f"- {res['method']}, {question}, {kind}: the research target (>= 80% success, "
                             f"corruption at most {100 * budget:g} points above unedited) is {verdict} "
                             f"(n={n}: success {ci(d['success'], n)}, corrupt {ci(d['corrupt'], n)} vs "
                             f"{ci(base[kind][question]['corrupt'], n)} unedited).")
    return "\n".join(lines)


def plot(results: list[dict], path: str | Path) -> None:
    """Test-split rates, a row per question: per method, success (string match, solid; judge, dashed) and side
    effects (dotted) against strength (sparse: a line per K, in multiples of each feature's p99; dense: in mean
    image-code norms); then every setting's success against its side effects and against its corruption."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    questions = ("caption", "attribute")
    ncol = len(results) + 2
    fig, axes = plt.subplots(len(questions), ncol, figsize=(4.3 * ncol, 3.8 * len(questions)), squeeze=False)
    for row, question in enumerate(questions):
        for col, res in enumerate(results):
            ax = axes[row][col]
            rows = [r for r in res["rows"] if r["strength"] > 0]
            for k in sorted({r["k"] for r in rows}):
                rs = sorted((r for r in rows if r["k"] == k), key=lambda r: r["strength"])
                x = [r["strength"] for r in rs]
                te = [r["test"][question] for r in rs]
                line, = ax.plot(x, [t["success"] for t in te], "o-", ms=3,
                                label=f"K={k}" if res["method"] == "sparse" else "dense")
                ax.plot(x, [t["judge_success"] for t in te], "--", color=line.get_color())
                ax.plot(x, [t["side_effect"] for t in te], ":", color=line.get_color())
            ax.axhline(0.8, color="grey", lw=0.8, ls="--")
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel("strength (x feature's p99)" if res["method"] == "sparse" else
                          "strength (x mean code norm)")
            ax.set_ylabel("test rate")
            ax.set_title(f"{res['method']}, {question}: success (-, judge --), side effects (:)", fontsize=8)
            ax.legend(fontsize=7, ncol=2)
        for col, (metric, label) in enumerate((("side_effect", "side effects"), ("corrupt", "corruption"))):
            ax = axes[row][len(results) + col]
            for res in results:
                te = [r["test"][question] for r in res["rows"] if r["strength"] > 0]
                ax.scatter([t[metric] for t in te], [t["success"] for t in te], s=12, label=res["method"])
                base = res["rows"][0]["test"][question]
                ax.scatter([base[metric]], [base["success"]], s=40, marker="x", color="black")
            ax.set_xlim(-0.02, 1.02)
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel(f"{label} (test)")
            ax.set_ylabel("success (test)")
            ax.set_title(f"{question}: every setting (x: unedited)", fontsize=8)
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
    md = [f"Command: `{command}`", "", "Findings (generated from steering.json):", "",
          generated(FINDINGS_MARK, findings(results)), ""]
    for q in ("caption", "attribute"):
        md += [f"The {QUESTION_TEXT[q]}, every setting:", "", markdown_table(results, q), ""]
    md += ["Chosen settings on the test split, per concept kind (corrupt: the unedited rate in brackets):", "",
           generated(BY_KIND_MARK, chosen_by_kind(results)), ""]
    write_text_atomic(out / "steering.md", "\n".join(md))
    plot(results, out / "steering.png")
    return summ
