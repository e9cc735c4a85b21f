"""The feature browser: one card per feature of ``features.json``, what the cards are (how the analysis chose them,
and other sets of features to show), names only where their score clears a stated bar, and a sort control whose
first option is the order the cards are in."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from .data import Feature, RunData
from .html_base import attr, esc, fmt

#: a feature's name is shown when its name score (AUROC of the name at finding the feature's top images) reaches this
NAME_BAR = 0.75
#: mean activation at or under this: the card is marked "nearly silent"
SILENT = 1e-3
CAPTIONS_SHOWN = 5
#: how ``sparseclip analyze --select`` chooses, by its value
RULES = {
    "auroc": "the best feature of each ground-truth concept first (by AUROC at detecting it), concepts taken in "
             "turn so a few concepts cannot fill the list",
    "frequency": "the features that fire on the most inputs",
    "density": "the features with the highest mean activation",
}
#: the browser's views: key -> (label, how a view over the loaded cards orders them when features.json has no such set)
VIEWS = {"chosen": "chosen by the analysis", "active": "most active", "selective": "most selective",
         "random": "random live ones"}
#: names a features.json ``views`` entry may use for each view
VIEW_ALIASES = {"active": ("most active", "active", "frequency"), "selective": ("most selective", "selective", "auroc"),
                "random": ("random live", "random live ones", "random")}


def shown_name(f: Feature) -> str:
    """The name shown on ``f``'s card: its name when its score reaches :data:`NAME_BAR`, else empty (unnamed)."""
    return f.name if f.name and f.name_score is not None and f.name_score >= NAME_BAR else ""


def fires_on(f: Feature) -> int | None:
    """On how many analysis inputs (images and captions) ``f`` is non-zero: the sum of its histogram."""
    return int(sum(f.hist_counts)) if f.hist_counts else None


def hist_svg(bins: list[float], counts: list[float], width: int = 300, height: int = 78) -> str:
    """An inline SVG bar chart of an activation histogram (log-scaled bars when counts span > 100x), with a title,
    the activation range on the x axis and the count scale named."""
    if not counts:
        return ""
    top = max(counts)
    positive = [c for c in counts if c > 0]
    log = bool(positive) and top / min(positive) > 100
    scale: Callable[[float], float] = (lambda c: math.log1p(c) / math.log1p(top)) if log else \
        (lambda c: c / top if top > 0 else 0.0)
    n, y0, plot_h = len(counts), 12, height - 26
    bw = width / n
    bars = []
    for i, c in enumerate(counts):
        h = max(0.0, scale(max(c, 0.0))) * plot_h
        tip = f"activation {bins[i]:.3g} to {bins[i + 1]:.3g}: {c:g} inputs" if len(bins) == n + 1 else f"{c:g}"
        bars.append(f'<rect x="{i * bw:.2f}" y="{y0 + plot_h - h:.2f}" width="{max(bw - 1, 0.5):.2f}" '
                    f'height="{h:.2f}"><title>{esc(tip)}</title></rect>')
    lo = f"{bins[0]:.3g}" if bins else ""
    hi = f"{bins[-1]:.3g}" if bins else ""
    title = f"inputs per activation value (max {top:g}{', log scale' if log else ''})"
    return (f'<svg class="hist" viewBox="0 0 {width} {height}" role="img" aria-label="activation histogram">'
            f'<text x="0" y="9">{esc(title)}</text>{"".join(bars)}'
            f'<text x="0" y="{height - 2}">{esc(lo)}</text>'
            f'<text x="{width}" y="{height - 2}" text-anchor="end">{esc(hi)}</text>'
            f'<text x="{width / 2}" y="{height - 2}" text-anchor="middle">activation</text></svg>')


def _modality(share: float | None) -> str:
    if share is None:
        return ""
    s = min(1.0, max(0.0, share))
    return (f'<div class="modality" title="share of activation mass from images">'
            f'<div class="bar"><span class="img" style="width:{100 * s:.1f}%"></span></div>'
            f'<div class="legend"><span>image {100 * s:.0f}%</span><span>text {100 * (1 - s):.0f}%</span></div>'
            "</div>")


def feature_card(f: Feature, url: Callable[[Path], str], order: int = 0, views: tuple[str, ...] = ("chosen",),
                 ranks: dict[str, int] | None = None) -> str:
    """One card of the feature browser (``order``: its place in the analysis' choice; ``views``: the sets it is in,
    ``ranks``: its place in each)."""
    name = shown_name(f)
    search = " ".join([str(f.id), f.name, f.best_concept, *(w for w, _ in f.top_words), *f.top_captions]).lower()
    data = {"id": f.id, "order": order, "score": f.name_score, "density": f.density, "auroc": f.best_auroc,
            "share": f.modality_share, "views": " ".join(views)}
    data |= {f"rank-{k}": v for k, v in (ranks or {}).items()}
    data_attrs = " ".join(f"data-{k}={attr('' if v is None else v)}" for k, v in data.items())
    score = (f'<span class="score" title="name score: AUROC of the name at finding this feature\'s top images '
             f'(0.5 = chance; names are shown from {NAME_BAR:g})">{fmt(f.name_score)}</span>'
             if f.name_score is not None else "")
    if name:
        title = f"<h3>{esc(name)}</h3>"
    else:
        cand = (f' <small class="cand">(best word &ldquo;{esc(f.name)}&rdquo;, name score '
                f'{fmt(f.name_score) if f.name_score is not None else "n/a"} &lt; {NAME_BAR:g})</small>'
                if f.name else "")
        title = f"<h3><i>unnamed</i>{cand}</h3>"
    parts = [f'<article class="card feature-card" id="feature-{f.id}" {data_attrs} data-search={attr(search)}>',
             f'<header><span class="fid">#{f.id}</span>{title}{score}</header>']
    meta = []
    if f.best_concept:
        auroc = f" (AUROC {fmt(f.best_auroc)})" if f.best_auroc is not None else ""
        meta.append(f"best concept <b>{esc(f.best_concept)}</b>{auroc}")
    if f.density is not None:
        meta.append(f"mean activation {fmt(f.density)}")
    if fires_on(f) is not None:
        meta.append(f"non-zero on {fires_on(f):,} analysis inputs")
    if f.density is not None and f.density <= SILENT:
        meta.append('<span class="badge" title="mean activation at or under 0.001">nearly silent</span>')
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
        parts.append(f'<ul class="words" title="the words the text tower maps most strongly onto this feature">'
                     f"{chips}</ul>")
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
                     f'alt="heatmap of feature {f.id}"><figcaption>where it fires in its top image</figcaption>'
                     "</figure>")
    parts.append("</article>")
    return "".join(p for p in parts if p)


def _view_sets(data: RunData) -> dict[str, list[int]]:
    """features.json's other sets of features, under the browser's view keys (those with at least one card)."""
    ids = {f.id for f in data.features}
    out = {}
    for key, names in VIEW_ALIASES.items():
        for n in names:
            if n in data.views:
                out[key] = [i for i in data.views[n] if i in ids]
                break
    return {k: v for k, v in out.items() if v}


def how_chosen(data: RunData, sets: dict[str, list[int]]) -> list[str]:
    """What the browser shows, as short lines: which features (chosen how, of how many), the other sets the show
    control offers, and how names are shown."""
    sel = data.selection
    shown = len(data.features)
    rule = str(sel.get("rule") or RULES.get(str(sel.get("by") or ""), ""))
    of = ""
    if isinstance(sel.get("live"), int):
        of = f" of the model's {sel['live']:,} live features"
        if isinstance(sel.get("dim"), int):
            of += f" ({sel['dim']:,} in all)"
    chosen = len(chosen_ids(data, sets)) if sets else shown
    which = (f"Which: the analysis chose these {chosen} features{of}: {rule}." if rule else
             f"Which: the {shown} features in features.json{of}; it does not say how they were chosen (sparseclip "
             "analyze picks by --select; auroc, the default, takes the best feature of each ground-truth concept "
             "in turn).")
    if data.n_features_total > shown:
        which += f" The page shows the first {shown} of the {data.n_features_total} in features.json."
    silent = sum(1 for f in data.features if f.density is not None and f.density <= SILENT)
    if silent:
        which += f" {silent} of them are nearly silent (mean activation at most {SILENT:g})."
    if sets:
        others = ("Show: other sets the analysis wrote: " + ", ".join(f"{VIEWS[k]} ({len(v)})" for k, v in sets.items())
                  + "; the other choices reorder the chosen ones.")
    else:
        others = ("Show: features.json holds no other features, so the choices reorder these: most active (highest "
                  "mean activation), most selective (best AUROC), random. For other features: sparseclip analyze "
                  "RUN --select frequency (or density), or more --features.")
    names = (f"Names: the words the text side maps onto a feature, shown only where its name score reaches "
             f"{NAME_BAR:g} (AUROC of the name at finding the feature's top images; 0.5 = chance); other cards read "
             "unnamed, with the rejected word in small print.")
    return [which, others, names]


def chosen_ids(data: RunData, sets: dict[str, list[int]]) -> set[int]:
    """The features the analysis chose: ``views["chosen"]`` or ``selection["ids"]`` when features.json lists them,
    else every feature that is in none of the other sets."""
    listed = data.views.get("chosen") or data.selection.get("ids")
    if isinstance(listed, list):
        return {i for i in listed if isinstance(i, int)}
    others = {i for v in sets.values() for i in v}
    return {f.id for f in data.features if f.id not in others}


def browser_section(data: RunData, url: Callable[[Path], str]) -> str:
    """The feature browser section."""
    sets = _view_sets(data)
    chosen = chosen_ids(data, sets) if sets else {f.id for f in data.features}
    cards = []
    for order, f in enumerate(data.features):
        views = tuple(k for k, v in sets.items() if f.id in v)
        if f.id in chosen:
            views = ("chosen", *views)
        ranks = {k: v.index(f.id) for k, v in sets.items() if f.id in v}
        cards.append(feature_card(f, url, order, views, ranks))
    suffix = " (the chosen ones, reordered)" if sets else " (these, reordered)"
    options = "".join(f'<option value="{k}">{esc(label)}{"" if k == "chosen" or k in sets else esc(suffix)}'
                      "</option>" for k, label in VIEWS.items())
    how = "".join(f"<li>{esc(line)}</li>" for line in how_chosen(data, sets))
    return (f'<section id="features"><h2>Feature browser</h2><ul class="how">{how}</ul>'
            f'<div class="controls" data-sets="{" ".join(sets)}">'
            f'<label>show <select id="view" aria-label="which features">{options}</select></label>'
            '<input id="q" type="search" placeholder="filter: name, word, caption, concept" '
            'aria-label="filter features">'
            '<select id="mod" aria-label="modality"><option value="all">any modality</option>'
            '<option value="multi">multimodal (10-90% image)</option><option value="image">image-only (&gt;90%)'
            '</option><option value="text">text-only (&lt;10%)</option></select>'
            '<select id="sort" aria-label="sort by"><option value="view">sort: as shown by the view</option>'
            '<option value="score">sort: name score</option><option value="auroc">sort: best AUROC</option>'
            '<option value="density">sort: mean activation</option><option value="share">sort: image share</option>'
            f'<option value="id">sort: feature id</option></select><span id="count">{len(cards)} features</span></div>'
            f'<div id="cards" class="cards">{"".join(cards)}</div></section>')


JS = """
(function(){
var grid=document.getElementById('cards');if(!grid){document.body.setAttribute('data-ready','1');return;}
var q=document.getElementById('q'),mod=document.getElementById('mod'),sort=document.getElementById('sort'),
view=document.getElementById('view'),count=document.getElementById('count'),
sets=(grid.parentNode.querySelector('.controls').getAttribute('data-sets')||'').split(' ').filter(Boolean),
cards=Array.prototype.slice.call(grid.querySelectorAll('.feature-card'));
function num(c,k){var v=parseFloat(c.getAttribute('data-'+k));return isNaN(v)?-1e300:v;}
function rnd(c){var x=Math.sin(num(c,'id')*12.9898)*43758.5453;return x-Math.floor(x);}
function inView(c){var v=sets.indexOf(view.value)>=0?view.value:'chosen';
return (' '+c.getAttribute('data-views')+' ').indexOf(' '+v+' ')>=0;}
function key(c){var k=sort.value,v=view.value;if(k==='id')return num(c,'id');if(k!=='view')return -num(c,k);
if(sets.indexOf(v)>=0)return num(c,'rank-'+v);if(v==='active')return -num(c,'density');
if(v==='selective')return -num(c,'auroc');if(v==='random')return rnd(c);return num(c,'order');}
function apply(){var terms=q.value.toLowerCase().split(/\\s+/).filter(Boolean),m=mod.value,shown=0,pool=0;
cards.slice().sort(function(a,b){return key(a)-key(b);}).forEach(function(c){grid.appendChild(c);});
cards.forEach(function(c){var s=parseFloat(c.getAttribute('data-share')),hay=c.getAttribute('data-search'),
ok=inView(c);if(ok)pool++;ok=ok&&terms.every(function(t){return hay.indexOf(t)>=0;});
if(ok&&m!=='all'){ok=!isNaN(s)&&(m==='multi'?(s>=0.1&&s<=0.9):m==='image'?s>0.9:s<0.1);}
c.hidden=!ok;if(ok)shown++;});count.textContent=shown+' of '+pool+' features shown';}
var h=/^#q=(.*)$/.exec(location.hash);if(h){try{q.value=decodeURIComponent(h[1]);}catch(e){}}
q.addEventListener('input',apply);mod.addEventListener('change',apply);sort.addEventListener('change',apply);
view.addEventListener('change',function(){sort.value='view';apply();});apply();
document.body.setAttribute('data-ready','1');})();
"""
