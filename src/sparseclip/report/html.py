"""The report page as one HTML string: inline CSS and JS, no external resources, every user string escaped.

Rule of this module: text from the run (model names, feature names, captions, words, concepts, notes, file
names) reaches the page only through :func:`esc` (or :func:`attr`); numbers only through :func:`fmt` or
after ``float()``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from pathlib import Path

from .. import __version__
from .columns import COLUMNS
from .data import Feature, RunData, number

#: a demo table wider than this is shown transposed (one column per model)
TRANSPOSE_ABOVE = 10
CAPTIONS_SHOWN = 5


def esc(s) -> str:
    """HTML-escape any value's text (quotes included)."""
    return html.escape("" if s is None else str(s), quote=True)


def attr(s) -> str:
    """A quoted attribute value."""
    return f'"{esc(s)}"'


def fmt(v) -> str:
    """A table cell: numbers compactly, strings escaped, anything else empty."""
    if isinstance(v, bool):
        return esc(v)
    f = number(v)
    if f is None:
        return esc(v) if isinstance(v, str) else ("&ndash;" if v is None else "")
    if isinstance(v, int):
        return str(v)
    a = abs(f)
    return f"{f:.3f}" if a < 10 else f"{f:.1f}" if a < 1000 else f"{f:.0f}"


def model_kind(row: dict) -> str:
    """``sae`` / ``dense`` / ``sparse``, from an explicit ``kind`` column or the model name."""
    name = str(row.get("kind") or row.get("model") or "").lower()
    return "sae" if "sae" in name else "dense" if "dense" in name else "sparse"


def _columns(rows: list[dict], known: dict[str, tuple[str, str]]) -> list[str]:
    seen: list[str] = []
    for r in rows:
        seen += [k for k in r if k not in seen]
    scalar = [k for k in seen if k != "model" and any(isinstance(r.get(k), (int, float, str)) for r in rows)]
    return ["model"] + [k for k in known if k in scalar] + [k for k in scalar if k not in known]


def table(rows: list[dict], known: dict[str, tuple[str, str]] | None = None, css: str = "") -> str:
    """A table of rows (one per model); transposed (one column per model) when it has many columns."""
    if not rows:
        return ""
    known = known or {}
    cols = _columns(rows, known)

    def head(k: str) -> str:
        label, tip = known.get(k, (k, ""))
        return f"<th title={attr(tip)}>{esc(label)}</th>" if tip else f"<th>{esc(label)}</th>"

    if len(cols) > TRANSPOSE_ABOVE:
        out = [f'<table class="data transposed {esc(css)}"><thead><tr><th>metric</th>']
        out += [f'<th class="model"><span class="tag tag-{model_kind(r)}">{model_kind(r)}</span><br>'
                f'{esc(r.get("model", ""))}</th>' for r in rows]
        out.append("</tr></thead><tbody>")
        for k in cols[1:]:
            out.append("<tr>" + head(k) + "".join(f'<td class="num">{fmt(r.get(k))}</td>' for r in rows)
                       + "</tr>")
        return "".join(out) + "</tbody></table>"
    out = [f'<table class="data {esc(css)}"><thead><tr>' + "".join(head(k) for k in cols) + "</tr></thead><tbody>"]
    for r in rows:
        kind = model_kind(r)
        cells = [f'<th class="model"><span class="tag tag-{kind}">{kind}</span> {esc(r.get("model", ""))}</th>']
        cells += [f'<td class="num">{fmt(r.get(k))}</td>' for k in cols[1:]]
        out.append(f'<tr class="kind-{kind}">' + "".join(cells) + "</tr>")
    return "".join(out) + "</tbody></table>"


def hist_svg(bins: list[float], counts: list[float], width: int = 300, height: int = 64) -> str:
    """An inline SVG bar chart of an activation histogram (log-scaled bars when counts span > 100x)."""
    if not counts:
        return ""
    top = max(counts)
    positive = [c for c in counts if c > 0]
    log = bool(positive) and top / min(positive) > 100
    scale: Callable[[float], float] = (lambda c: math.log1p(c) / math.log1p(top)) if log else \
        (lambda c: c / top if top > 0 else 0.0)
    n, plot_h = len(counts), height - 14
    bw = width / n
    bars = []
    for i, c in enumerate(counts):
        h = max(0.0, scale(max(c, 0.0))) * plot_h
        if len(bins) == n + 1:
            tip = f"{bins[i]:.3g} to {bins[i + 1]:.3g}: {c:g}"
        else:
            tip = f"{c:g}"
        bars.append(f'<rect x="{i * bw:.2f}" y="{plot_h - h:.2f}" width="{max(bw - 1, 0.5):.2f}" '
                    f'height="{h:.2f}"><title>{esc(tip)}</title></rect>')
    lo = f"{bins[0]:.3g}" if bins else ""
    hi = f"{bins[-1]:.3g}" if bins else ""
    label = "count (log)" if log else "count"
    return (f'<svg class="hist" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="activation histogram">{"".join(bars)}'
            f'<text x="0" y="{height - 2}">{esc(lo)}</text>'
            f'<text x="{width}" y="{height - 2}" text-anchor="end">{esc(hi)}</text>'
            f'<text x="{width / 2}" y="{height - 2}" text-anchor="middle">{label}</text></svg>')


def _modality(share: float | None) -> str:
    if share is None:
        return ""
    s = min(1.0, max(0.0, share))
    return (f'<div class="modality" title="share of activation mass from images">'
            f'<div class="bar"><span class="img" style="width:{100 * s:.1f}%"></span></div>'
            f'<div class="legend"><span>image {100 * s:.0f}%</span><span>text {100 * (1 - s):.0f}%</span></div>'
            "</div>")


def feature_card(f: Feature, url: Callable[[Path], str]) -> str:
    """One card of the feature browser."""
    search = " ".join([str(f.id), f.name, f.best_concept, *(w for w, _ in f.top_words), *f.top_captions]).lower()
    data = {"id": f.id, "score": f.name_score, "density": f.density, "auroc": f.best_auroc,
            "share": f.modality_share}
    data_attrs = " ".join(f"data-{k}={attr('' if v is None else v)}" for k, v in data.items())
    score = (f'<span class="score" title="name quality score">{fmt(f.name_score)}</span>'
             if f.name_score is not None else "")
    parts = [f'<article class="card feature-card" id="feature-{f.id}" {data_attrs} data-search={attr(search)}>',
             f'<header><span class="fid">#{f.id}</span><h3>{esc(f.name) or "<i>unnamed</i>"}</h3>{score}</header>']
    meta = []
    if f.best_concept:
        auroc = f" (AUROC {fmt(f.best_auroc)})" if f.best_auroc is not None else ""
        meta.append(f"best concept <b>{esc(f.best_concept)}</b>{auroc}")
    if f.density is not None:
        meta.append(f"density {fmt(f.density)}")
    if meta:
        parts.append(f'<p class="meta">{" &middot; ".join(meta)}</p>')
    parts.append(_modality(f.modality_share))
    if f.top_images:
        imgs = "".join(f'<img loading="lazy" src={attr(url(p))} alt="top image {i + 1}">'
                       for i, p in enumerate(f.top_images))
        parts.append(f'<div class="thumbs">{imgs}</div>')
    if f.top_words:
        chips = "".join(f'<li>{esc(w)}{f" <small>{fmt(s)}</small>" if s is not None else ""}</li>'
                        for w, s in f.top_words)
        parts.append(f'<ul class="words">{chips}</ul>')
    if f.top_captions:
        items = [f"<li>{esc(c)}</li>" for c in f.top_captions]
        caps = f'<ol class="captions">{"".join(items[:CAPTIONS_SHOWN])}</ol>'
        if len(items) > CAPTIONS_SHOWN:
            caps += (f'<details><summary>{len(items) - CAPTIONS_SHOWN} more captions</summary>'
                     f'<ol class="captions" start="{CAPTIONS_SHOWN + 1}">{"".join(items[CAPTIONS_SHOWN:])}</ol>'
                     "</details>")
        parts.append(caps)
    parts.append(hist_svg(f.hist_bins, f.hist_counts))
    if f.heatmap is not None:
        parts.append(f'<figure class="heatmap"><img loading="lazy" src={attr(url(f.heatmap))} '
                     f'alt="heatmap of feature {f.id}"><figcaption>where it fires</figcaption></figure>')
    parts.append("</article>")
    return "".join(p for p in parts if p)


def _figures(paths: list[Path], url: Callable[[Path], str]) -> str:
    figs = []
    for p in paths:
        caption = p.stem.replace("_", " ").replace("-", " ")
        img = f'<img loading="lazy" src={attr(url(p))} alt={attr(caption)}>'
        # an SVG is shown only through <img> (where scripts never run), never linked: opened as a document,
        # a script inside it would run
        if p.suffix.lower() != ".svg":
            img = f"<a href={attr(url(p))}>{img}</a>"
        figs.append(f"<figure>{img}<figcaption>{esc(caption)}</figcaption></figure>")
    return f'<div class="plots">{"".join(figs)}</div>'


def render_page(data: RunData, url: Callable[[Path], str], title: str) -> str:
    """The whole page for ``data``; ``url`` maps an image file to its link relative to the page."""
    sections, nav = [], []
    if data.summary_rows or data.notes:
        nav.append(("summary", "Summary"))
        body = table(data.summary_rows, COLUMNS, "summary")
        if data.notes:
            body += '<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in data.notes) + "</ul>"
        sections.append(f'<section id="summary"><h2>Summary: dense vs sparse vs SAEs</h2>{body}</section>')
    if data.plots:
        nav.append(("plots", "Plots"))
        sections.append(f'<section id="plots"><h2>Plots</h2>{_figures(data.plots, url)}</section>')
    if data.demo_rows or data.demo_markdown or data.demo_plots:
        nav.append(("demo", "Demo results"))
        body = table(data.demo_rows) if data.demo_rows else \
            (f'<pre class="markdown">{esc(data.demo_markdown)}</pre>' if data.demo_markdown else "")
        if data.demo_plots:
            body += _figures(data.demo_plots, url)
        sections.append(f'<section id="demo"><h2>Demo results</h2>{body}</section>')
    if data.features:
        nav.append(("features", "Features"))
        shown = len(data.features)
        more = (f" (the first {shown} of {data.n_features_total})" if data.n_features_total > shown else "")
        cards = "".join(feature_card(f, url) for f in data.features)
        sections.append(
            f'<section id="features"><h2>Feature browser{esc(more)}</h2>'
            '<div class="controls"><input id="q" type="search" placeholder="filter: name, word, caption, concept"'
            ' aria-label="filter features">'
            '<select id="mod" aria-label="modality"><option value="all">any modality</option>'
            '<option value="multi">multimodal (10-90% image)</option><option value="image">image-only (&gt;90%)'
            '</option><option value="text">text-only (&lt;10%)</option></select>'
            '<select id="sort" aria-label="sort by"><option value="id">sort: id</option>'
            '<option value="score">sort: name score</option><option value="auroc">sort: best AUROC</option>'
            '<option value="density">sort: density</option><option value="share">sort: image share</option>'
            f'</select><span id="count">{shown} features</span></div>'
            f'<div id="cards" class="cards">{cards}</div></section>')
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
--sae:#8a4fd0;--dense:#6b7280;--sparse:#14915f}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--fg);background:var(--bg)}
header.top{position:sticky;top:0;z-index:2;display:flex;gap:24px;align-items:baseline;padding:10px 24px;
background:#1d2430;color:#fff}header.top h1{font-size:18px;margin:0}header.top nav a{color:#cfd8e6;
margin-right:14px;text-decoration:none}header.top nav a:hover{color:#fff}
main{max-width:1400px;margin:0 auto;padding:8px 24px 40px}h2{font-size:17px;margin:26px 0 10px}
section{margin-bottom:10px}table.data{border-collapse:collapse;background:var(--card);border:1px solid var(--line)}
table.data th,table.data td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left}
table.data thead th{background:#eef1f5;font-weight:600;cursor:help}td.num{text-align:right;
font-variant-numeric:tabular-nums}th.model{font-weight:500}
.tag{display:inline-block;font-size:11px;padding:0 6px;border-radius:8px;color:#fff;margin-right:4px}
.tag-sae{background:var(--sae)}.tag-dense{background:var(--dense)}.tag-sparse{background:var(--sparse)}
.notes{color:var(--muted);margin:8px 0}.plots{display:flex;flex-wrap:wrap;gap:14px}
.plots figure{margin:0;background:var(--card);border:1px solid var(--line);padding:8px;border-radius:6px;
max-width:100%}.plots img{max-width:100%;max-height:340px;display:block;margin:auto}
figcaption{color:var(--muted);font-size:12px;text-align:center}
pre.markdown{background:var(--card);border:1px solid var(--line);padding:10px;overflow:auto}
.controls{display:flex;gap:10px;align-items:center;margin-bottom:12px;flex-wrap:wrap}
.controls input{flex:1;min-width:220px;padding:6px 10px;border:1px solid var(--line);border-radius:6px}
.controls select{padding:5px;border:1px solid var(--line);border-radius:6px}#count{color:var(--muted)}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:14px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px;min-width:0}
.card[hidden]{display:none}.card header{display:flex;align-items:baseline;gap:8px}
.card h3{margin:0;font-size:15px;flex:1;overflow-wrap:anywhere}.fid{color:var(--muted);font-size:12px}
.score{background:#eef1f5;border-radius:10px;padding:0 8px;font-size:12px}.meta{margin:4px 0;color:var(--muted);
font-size:12px}.modality .bar{height:8px;background:var(--txt);border-radius:4px;overflow:hidden;margin-top:6px}
.modality .img{display:block;height:100%;background:var(--img)}.modality .legend{display:flex;
justify-content:space-between;font-size:11px;color:var(--muted)}
.thumbs{display:grid;grid-template-columns:repeat(auto-fill,minmax(56px,1fr));gap:4px;margin:8px 0}
.thumbs img{width:100%;aspect-ratio:1;object-fit:cover;image-rendering:pixelated;border-radius:3px;
background:#ddd}.words{list-style:none;padding:0;margin:6px 0;display:flex;flex-wrap:wrap;gap:4px}
.words li{background:#e9f0fc;border-radius:10px;padding:1px 8px;font-size:12px}.words small{color:var(--muted)}
.captions{margin:4px 0;padding-left:20px;font-size:12px}details summary{font-size:12px;color:var(--muted);
cursor:pointer}svg.hist{display:block;margin-top:6px;max-width:100%;height:auto}svg.hist rect{fill:#8aa4cf}
svg.hist text{font-size:9px;fill:var(--muted)}.heatmap{margin:8px 0 0}.heatmap img{max-width:100%;
image-rendering:pixelated;width:160px}footer{color:var(--muted);text-align:center;padding:20px;font-size:12px}
"""

JS = """
(function(){
var grid=document.getElementById('cards');if(!grid){document.body.setAttribute('data-ready','1');return;}
var q=document.getElementById('q'),mod=document.getElementById('mod'),sort=document.getElementById('sort'),
count=document.getElementById('count'),cards=Array.prototype.slice.call(grid.querySelectorAll('.feature-card'));
function num(c,k){var v=parseFloat(c.getAttribute('data-'+k));return isNaN(v)?-1e300:v;}
function apply(){var terms=q.value.toLowerCase().split(/\\s+/).filter(Boolean),m=mod.value,shown=0;
cards.forEach(function(c){var s=parseFloat(c.getAttribute('data-share')),hay=c.getAttribute('data-search'),
ok=terms.every(function(t){return hay.indexOf(t)>=0;});
if(ok&&m!=='all'){ok=!isNaN(s)&&(m==='multi'?(s>=0.1&&s<=0.9):m==='image'?s>0.9:s<0.1);}
c.hidden=!ok;if(ok)shown++;});count.textContent=shown+' of '+cards.length+' features shown';}
function order(){var k=sort.value;cards.slice().sort(function(a,b){return k==='id'?num(a,k)-num(b,k):
num(b,k)-num(a,k);}).forEach(function(c){grid.appendChild(c);});}
var h=/^#q=(.*)$/.exec(location.hash);if(h){try{q.value=decodeURIComponent(h[1]);}catch(e){}}
q.addEventListener('input',apply);mod.addEventListener('change',apply);
sort.addEventListener('change',function(){order();apply();});apply();
document.body.setAttribute('data-ready','1');})();
"""
