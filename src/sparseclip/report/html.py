"""The report page as one HTML string: inline CSS and JS, no external resources, every user string escaped.

The page leads with the answer (:mod:`.answer`): how sparse and how accurate the sparse model is against the dense
one and what the interpretability verdicts say, in sentences; then a table of every model with plain labels, the
plots, the feature browser (:mod:`.cards`), the raw tables folded, and a glossary of every metric shown.

Rule of this module: text from the run (model names, feature names, captions, words, concepts, notes, file
names) reaches the page only through :func:`esc` (or :func:`attr`); numbers only through :func:`fmt` or
after ``float()``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .. import __version__
from .answer import Answer, Model, answer, row_l0_pct, sparsity_tag
from .cards import JS, browser_section, feature_card, hist_svg
from .columns import COLUMNS, EVAL_COLUMNS, Column, column
from .data import RunData
from .html_base import attr, esc, fmt

#: a raw table wider than this is shown transposed (one column per model)
TRANSPOSE_ABOVE = 10
#: captions of the plots the analysis and the demo write, by file stem
PLOT_CAPTIONS = {
    "frequency_hist": "How often each feature fires, per model",
    "modality_scatter": "Image share of each live feature's activation against its mean activation",
    "clarity_bars": "Clarity per model, against random sets of inputs",
    "l0_over_training": "Non-zeros per input (L0) over training",
    "modality_over_training": "Image share of the features over training",
    "accuracy": "Zero-shot accuracy, retrieval R@1 and linear-probe accuracy per model",
    "loss": "Training loss against samples seen",
    "l0": "Image L0 (% of dims) against samples seen",
    "training": "Training curves",
}

__all__ = ["attr", "esc", "feature_card", "fmt", "hist_svg", "model_kind", "render_page", "table"]


def model_kind(row: dict) -> str:
    """The row's tag from its code, not its name: ``sparse`` only when its image L0 is under 10% of its dims
    (:func:`~.answer.sparsity_tag`), ``dense`` from 90%, else ``not sparse``; empty when no L0 is known."""
    return sparsity_tag(row_l0_pct(row))


def _role(row: dict) -> str:
    name = str(row.get("model", "")).lower()
    return "SAE" if "sae" in name else "baseline" if name.startswith("baseline") else ""


def tags(row: dict) -> str:
    """The row's tags: its sparsity (from its L0) and its role (SAE, baseline)."""
    out = ""
    kind = model_kind(row)
    if kind:
        pct = row_l0_pct(row)
        out += (f'<span class="tag tag-{kind.replace(" ", "")}" title="image L0 {pct:.2f}% of dims; sparse means '
                f'under 10%">{kind}</span>')
    role = _role(row)
    if role:
        out += f'<span class="tag tag-{role.lower()}">{role}</span>'
    return out


def _label(key: str, known: dict[str, Column]) -> str:
    col = known.get(key) or column(key)
    if col is None:
        return f"<code>{esc(key)}</code>"
    return (f'<a class="term" href="#def-{esc(key)}" title={attr(col.tip)}>{esc(col.header)}</a>'
            f'<code class="key">{esc(key)}</code>')


def _columns(rows: list[dict], known: dict[str, Column]) -> list[str]:
    seen: list[str] = []
    for r in rows:
        seen += [k for k in r if k not in seen]
    scalar = [k for k in seen if k != "model" and any(isinstance(r.get(k), (int, float, str)) for r in rows)]
    return ["model"] + [k for k in known if k in scalar] + [k for k in scalar if k not in known]


def table(rows: list[dict], known: dict[str, Column] | None = None, css: str = "") -> str:
    """A table of rows (one per model) with plain labels (definition on hover, a link to the glossary); transposed
    (one column per model) when it has many columns; inside a box that scrolls on its own on a narrow screen."""
    if not rows:
        return ""
    known = known or {}
    cols = _columns(rows, known)

    def model_cell(r: dict, sep: str) -> str:
        return f'<th class="model">{tags(r)}{sep}{esc(r.get("model", ""))}</th>'

    if len(cols) > TRANSPOSE_ABOVE:
        out = [f'<table class="data transposed {esc(css)}"><thead><tr><th>metric</th>']
        out += [model_cell(r, "<br>") for r in rows]
        out.append("</tr></thead><tbody>")
        for k in cols[1:]:
            out.append(f"<tr><th>{_label(k, known)}</th>" + "".join(f'<td class="num">{fmt(r.get(k))}</td>'
                                                                       for r in rows) + "</tr>")
        body = "".join(out) + "</tbody></table>"
    else:
        out = [f'<table class="data {esc(css)}"><thead><tr><th>model</th>'
               + "".join(f"<th>{_label(k, known)}</th>" for k in cols[1:]) + "</tr></thead><tbody>"]
        for r in rows:
            out.append("<tr>" + model_cell(r, " ") + "".join(f'<td class="num">{fmt(r.get(k))}</td>'
                                                              for k in cols[1:]) + "</tr>")
        body = "".join(out) + "</tbody></table>"
    return f'<div class="scroll">{body}</div>'


#: the models table's columns: key, what the cell shows
MODEL_COLUMNS = (("image_L0_pct", "image L0 % of dims"), ("image_active_train_pct", "active on training images %"),
                 ("zs_mean", "zero-shot accuracy"), ("t2i_R@1", "text-to-image R@1"),
                 ("i2t_R@1", "image-to-text R@1"))


def _cell(m: Model, key: str) -> str:
    st = m.stat(key)
    if st is None:
        return "&ndash;"
    scale, digits = (100.0, 1) if key in ("zs_mean", "t2i_R@1", "i2t_R@1") else \
        (1.0, 2 if "L0" in key and st.mean < 10 else 1)
    return esc(st.pct(digits, scale))


def models_table(models: list[Model]) -> str:
    """Every model of the results, one row each: its tags, what it is, sparsity and accuracy with plain labels (a
    narrow screen shows each row as a block of label: value lines)."""
    cols = [(k, h) for k, h in MODEL_COLUMNS if any(m.stat(k) is not None for m in models)]
    head = "".join(f'<th>{_label(k, EVAL_COLUMNS)}</th>' for k, _ in cols)
    rows = []
    for m in models:
        first = m.rows[0]
        what = f'<div class="what">{esc(first.get("name"))}</div>' if first.get("name") else ""
        cells = "".join(f'<td class="num" data-label={attr(h)}>{_cell(m, k)}</td>' for k, h in cols)
        rows.append(f'<tr><th class="model">{tags(first)} {esc(m.name)}{what}</th>{cells}</tr>')
    return (f'<table class="data models"><thead><tr><th>model</th>{head}</tr></thead><tbody>{"".join(rows)}'
            "</tbody></table>")


def answer_section(a: Answer, models: list[Model]) -> str:
    """The first screen: three verdict cards, what each number counts, and the models table."""
    cards = []
    for key, title, text in (("sparsity", "How sparse", a.sparsity), ("accuracy", "How accurate", a.accuracy),
                             ("interpretability", "How interpretable", a.interpretability)):
        if not text:
            continue
        extra = ""
        if key == "interpretability" and a.verdicts:
            items = "".join(f'<li class="{"holds" if ok else "fails" if ok is False else "none"}">{esc(s)}</li>'
                            for ok, s in a.verdicts)
            extra = (f"<details><summary>each measure in one sentence ({len(a.verdicts)})</summary>"
                     f'<ul class="verdicts">{items}</ul></details>')
        cards.append(f'<div class="verdict-card"><h3>{title}</h3><p class="verdict" id="verdict-{key}">'
                     f"{esc(text)}</p>{extra}</div>")
    if not cards:
        return ""
    counts = ('<p class="counts">What each number counts: ' + " ".join(esc(c) for c in a.counts)
              + ' Definitions: hover a label, or see the <a href="#glossary">glossary</a>.</p>')
    table_html = models_table(models) if models else ""
    return (f'<section id="answer"><h2>The answer</h2><div class="verdicts-grid">{"".join(cards)}</div>{counts}'
            f"{table_html}</section>")


def _figures(paths: list[Path], url: Callable[[Path], str]) -> str:
    figs = []
    for p in paths:
        caption = PLOT_CAPTIONS.get(p.stem, p.stem.replace("_", " ").replace("-", " ").capitalize())
        img = f'<img loading="lazy" src={attr(url(p))} alt={attr(caption)}>'
        # an SVG is shown only through <img> (where scripts never run), never linked: opened as a document,
        # a script inside it would run
        if p.suffix.lower() != ".svg":
            img = f'<a href={attr(url(p))} title="full size">{img}</a>'
        img = f'<div class="pic">{img}</div>'  # on a phone: a readable height, scrolled sideways inside its box
        figs.append(f"<figure>{img}<figcaption>{esc(caption)} <small>({esc(p.name)})</small></figcaption></figure>")
    return f'<div class="plots">{"".join(figs)}</div>'


def glossary(keys: list[str], doc_url: Callable[[str], str | None]) -> str:
    """Every metric label the page shows: its definition and the doc that explains it."""
    items = []
    for k in dict.fromkeys(keys):
        col = column(k)
        if col is None:
            continue
        link = doc_url(col.doc)
        doc = f'<a href={attr(link)}>{esc(col.doc)}</a>' if link else f"<code>{esc(col.doc)}</code>"
        items.append(f'<dt id="def-{esc(k)}">{esc(col.header)} <code>{esc(k)}</code></dt>'
                     f"<dd>{esc(col.tip)} (more in {doc})</dd>")
    return f'<section id="glossary"><h2>Glossary</h2><dl>{"".join(items)}</dl></section>' if items else ""


def _keys(rows: list[dict]) -> list[str]:
    return [k for r in rows for k in r if k != "model"]


def render_page(data: RunData, url: Callable[[Path], str], title: str,
                doc_url: Callable[[str], str | None] = lambda doc: None) -> str:
    """The whole page for ``data``; ``url`` maps an image file to its link relative to the page, ``doc_url`` a doc
    (``docs/interpret.md``) to its link (None: named, not linked)."""
    sections, nav = [], []
    ans, _, _, models = answer(data)
    first = answer_section(ans, models)
    if first:
        nav.append(("answer", "Answer"))
        sections.append(first)
    if data.plots or data.demo_plots:
        nav.append(("plots", "Plots"))
        sections.append(f'<section id="plots"><h2>Plots</h2>{_figures([*data.demo_plots, *data.plots], url)}'
                        "</section>")
    if data.features:
        nav.append(("features", "Features"))
        sections.append(browser_section(data, url))
    raw = []
    if data.summary_rows or data.notes:
        body = table(data.summary_rows, COLUMNS, "summary")
        if data.notes:
            body += '<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in data.notes) + "</ul>"
        raw.append(f"<details><summary>Feature analysis: every metric of every row (summary.json; counted on the "
                   f"analysis' own inputs, named in its notes)</summary>{body}</details>")
    if data.demo_rows or data.demo_markdown:
        body = table(data.demo_rows, EVAL_COLUMNS) if data.demo_rows else \
            f'<pre class="markdown">{esc(data.demo_markdown)}</pre>'
        raw.append("<details><summary>Evaluation: every column of every model (results.json; held-out images, "
                   f"training-input health where counted)</summary>{body}</details>")
    if raw:
        nav.append(("details", "All numbers"))
        sections.append(f'<section id="details"><h2>All numbers</h2>{"".join(raw)}</section>')
    keys = [k for k, _ in MODEL_COLUMNS] + _keys(data.summary_rows) + _keys(data.demo_rows) \
        + [str(v["metric"]) for v in data.verdicts]
    gloss = glossary(keys, doc_url)
    if gloss:
        nav.append(("glossary", "Glossary"))
        sections.append(gloss)
    if data.skipped:
        sections.append('<section id="skipped"><h2>Not shown</h2><ul class="notes">'
                        + "".join(f"<li>{esc(s)}</li>" for s in data.skipped) + "</ul></section>")
    links = "".join(f'<a href="#{k}">{esc(v)}</a>' for k, v in nav)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f'<header class="top"><h1>{esc(title)}</h1><nav>{links}</nav></header><main>{"".join(sections)}</main>'
            f'<footer>sparseclip {esc(__version__)} &middot; run directory {esc(data.run_dir.name)}</footer>'
            f"<script>{JS}</script></body></html>\n")


CSS = """
:root{--fg:#1d2430;--muted:#5d6778;--bg:#f6f7f9;--card:#fff;--line:#dfe3ea;--img:#2f6fde;--txt:#e08a1e;
--sae:#8a4fd0;--dense:#6b7280;--sparse:#14915f;--notsparse:#b45309}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--fg);background:var(--bg);overflow-wrap:break-word}
header.top{position:sticky;top:0;z-index:2;display:flex;flex-wrap:wrap;column-gap:24px;align-items:baseline;
padding:8px 24px;background:#1d2430;color:#fff}header.top h1{font-size:17px;margin:0;overflow-wrap:anywhere}
header.top nav{display:flex;flex-wrap:wrap;column-gap:14px;min-width:0}
header.top nav a{color:#cfd8e6;text-decoration:none;white-space:nowrap}
header.top nav a:hover{color:#fff}main{max-width:1400px;margin:0 auto;padding:4px 24px 40px}
h2{font-size:17px;margin:22px 0 10px}section{margin-bottom:10px}
.verdicts-grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(280px,1fr));gap:12px}
.verdict-card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 14px;min-width:0}
.verdict-card h3{margin:0 0 4px;font-size:14px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.verdict{margin:0;font-size:15px}ul.verdicts{padding-left:18px;margin:6px 0;font-size:13px}
ul.verdicts li.holds::marker{color:var(--sparse)}ul.verdicts li.fails::marker{color:#b91c1c}
.counts{color:var(--muted);font-size:13px;margin:10px 0}
.scroll{max-width:100%;overflow-x:auto}table.data{border-collapse:collapse;background:var(--card);
border:1px solid var(--line);margin:6px 0}table.data th,table.data td{padding:5px 9px;
border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
table.data thead th{background:#eef1f5;font-weight:600}
table.data td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}th.model{font-weight:500}
table.models{width:100%}.what{color:var(--muted);font-size:12px;font-weight:400}
code.key{display:block;font-size:10px;color:var(--muted);font-weight:400}a.term{color:inherit;
text-decoration:underline dotted;cursor:help}
.tag{display:inline-block;font-size:11px;padding:0 6px;border-radius:8px;color:#fff;margin-right:4px}
.tag-sae{background:var(--sae)}.tag-dense{background:var(--dense)}.tag-sparse{background:var(--sparse)}
.tag-notsparse{background:var(--notsparse)}.tag-baseline{background:#9ca3af}
details{margin:8px 0}details>summary{cursor:pointer;color:var(--muted)}
.notes{color:var(--muted);margin:8px 0}.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));
gap:14px}.plots figure{margin:0;background:var(--card);border:1px solid var(--line);padding:8px;border-radius:6px;
min-width:0}.plots img{width:100%;height:auto;display:block}
figcaption{color:var(--muted);font-size:13px;text-align:center}
pre.markdown{background:var(--card);border:1px solid var(--line);padding:10px;overflow:auto}
.how{color:var(--muted);max-width:1000px;padding-left:18px}.controls{display:flex;gap:10px;align-items:center;margin-bottom:12px;
flex-wrap:wrap}.controls input{flex:1;min-width:200px;padding:6px 10px;border:1px solid var(--line);
border-radius:6px}.controls select{padding:5px;border:1px solid var(--line);border-radius:6px;max-width:100%}
#count{color:var(--muted)}.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:14px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px;min-width:0}
.card[hidden]{display:none}.card header{display:flex;align-items:baseline;gap:8px}
.card h3{margin:0;font-size:15px;flex:1;overflow-wrap:anywhere}.cand{color:var(--muted);font-weight:400}
.fid{color:var(--muted);font-size:12px}.badge{background:#fde68a;border-radius:8px;padding:0 6px}
.score{background:#eef1f5;border-radius:10px;padding:0 8px;font-size:12px}.meta{margin:4px 0;color:var(--muted);
font-size:12px}.modality .bar{height:8px;background:var(--txt);border-radius:4px;overflow:hidden;margin-top:6px}
.modality .img{display:block;height:100%;background:var(--img)}.modality .legend{display:flex;
justify-content:space-between;font-size:11px;color:var(--muted)}
.thumbs{display:grid;grid-template-columns:repeat(auto-fill,minmax(56px,1fr));gap:4px;margin:8px 0}
.thumbs img{width:100%;aspect-ratio:1;object-fit:cover;image-rendering:pixelated;border-radius:3px;
background:#ddd}.words{list-style:none;padding:0;margin:6px 0;display:flex;flex-wrap:wrap;gap:4px}
.words li{background:#e9f0fc;border-radius:10px;padding:1px 8px;font-size:12px}.words small{color:var(--muted)}
.captions{margin:4px 0;padding-left:20px;font-size:12px}svg.hist{display:block;margin-top:6px;width:100%;
height:auto}svg.hist rect{fill:#8aa4cf}svg.hist text{font-size:10px;fill:var(--muted)}.heatmap{margin:8px 0 0}
.heatmap img{max-width:100%;image-rendering:pixelated;width:160px}
dl dt{font-weight:600;margin-top:8px}dl dd{margin:2px 0 0 16px;color:var(--muted)}
footer{color:var(--muted);text-align:center;padding:20px;font-size:12px}
@media (max-width:640px){header.top{position:static;padding:8px 12px}main{padding:4px 12px 30px}
.plots{grid-template-columns:1fr}.pic{overflow-x:auto}.plots .pic img{width:auto;max-width:none;height:280px}
table.models thead{display:none}table.models,table.models tbody,table.models tr,
table.models th,table.models td{display:block;width:100%}table.models tr{border-bottom:2px solid var(--line)}
table.models td.num{border:0;padding:2px 9px;text-align:left;white-space:normal}
table.models td::before{content:attr(data-label) ": ";color:var(--muted)}}
@media print{header.top{position:static}.controls{display:none}.plots{grid-template-columns:1fr 1fr}}
"""
