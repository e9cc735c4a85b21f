"""Search results as one self-contained HTML page (``sparseclip index search --html PATH``): each hit with its
thumbnail (embedded as a data URL, so the page is one file), caption or path, score, and its explanation: the
share of the score its concept groups and listed features hold. Text reaches the page only through
:func:`~sparseclip.report.html.esc`."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from ..files.atomic import write_text_atomic
from .html import attr, esc

#: thumbnails' longest side in pixels (small images are enlarged by whole pixels)
THUMB = 112


def thumbnail_url(img) -> str:
    """A PNG data URL of a PIL image, scaled to :data:`THUMB` pixels on its longest side."""
    from PIL import Image

    longest = max(img.width, img.height)
    if longest < THUMB:
        f = max(1, THUMB // longest)
        img = img.resize((img.width * f, img.height * f), resample=Image.NEAREST)
    elif longest > THUMB:
        img = img.copy()
        img.thumbnail((THUMB, THUMB))
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _bar(share: float) -> str:
    pct = 100 * min(1.0, max(0.0, share))
    return f'<span class="bar" aria-hidden="true"><span style="width:{pct:.1f}%"></span></span>'


def _hit(result, h, thumbs: bool) -> str:
    from ..index.query import item_image, share_line

    img = item_image(result.index, h.id) if thumbs else None
    pic = (f'<img src={attr(thumbnail_url(img))} alt={attr("image of " + h.id)}>' if img is not None
           else '<div class="noimg">no image</div>')
    words = esc(" ".join(h.caption.split())) if h.caption else ""
    label = f'<p class="caption">{words}</p><p class="id">{esc(h.id)}</p>' if words else \
        f'<p class="caption id">{esc(h.id)}</p>'
    body = [f'<div class="head"><span class="rank">{h.rank}</span><span class="score" title="the score: see the '
            f'line at the top">{h.score:.4f}</span></div>{label}']
    groups = result.groups.get(h.row)
    if h.contributions or groups:
        body.append(f'<p class="share">{esc(share_line(h, result.shared.get(h.row), groups))}</p>')
    if groups:
        rows = "".join(f"<tr><td>{esc(g.concept.replace('&', ' & '))}</td><td class=num>{100 * g.share:.0f}%</td>"
                       f"<td>{_bar(g.share)}</td><td class=num>{len(g.features)}</td></tr>" for g in groups[:6])
        more = f'<p class="more">{len(groups) - 6} more concept groups</p>' if len(groups) > 6 else ""
        body.append('<table class="groups"><caption>the score by concept</caption><thead><tr><th>concept</th>'
                    '<th title="share of the score">share</th><th></th><th title="shared features of this concept">'
                    f"features</th></tr></thead><tbody>{rows}</tbody></table>{more}")
    if h.contributions:
        items = "".join(f"<li>f{c.feature} {esc(c.name or 'unnamed')}: {c.contribution:+.4f} "
                        f"({100 * c.contribution / h.score:.0f}%)</li>" if h.score else
                        f"<li>f{c.feature} {esc(c.name or 'unnamed')}: {c.contribution:+.4f}</li>"
                        for c in h.contributions)
        body.append(f'<ul class="feats" aria-label="largest shared features">{items}</ul>')
    return f'<article class="hit"><div class="thumb">{pic}</div><div class="body">{"".join(body)}</div></article>'


def render_search_page(result, thumbs: bool = True) -> str:
    """The HTML of a :class:`~sparseclip.index.query.SearchResult`."""
    from ..index.query import effect_lines

    filters = "".join(f"<li>{esc(line.strip('[] '))}</li>" for e in result.effects
                      for line in effect_lines(e, result.index))
    hits = "".join(_hit(result, h, thumbs) for h in result.hits) or "<p>no hits</p>"
    title = f"sparseclip search: {result.query or 'query'}"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
            f"<style>{CSS}</style></head><body><main><h1>{esc(result.header())}</h1>"
            f'<p class="what">{esc(result.score_line())}</p>'
            + (f'<ul class="filters">{filters}</ul>' if filters else "")
            + f'<div class="hits">{hits}</div></main></body></html>\n')


def write_search_page(result, path: str | Path, thumbs: bool = True) -> Path:
    """Write :func:`render_search_page` to ``path`` (atomically); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, render_search_page(result, thumbs))
    return out


CSS = """
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#1d2430;background:#f6f7f9}main{max-width:1100px;margin:0 auto;padding:12px 16px 40px}
h1{font-size:18px;margin:8px 0}.what{color:#5d6778;margin:4px 0 10px}.filters{color:#7a3d00;margin:6px 0 12px}
.hits{display:grid;gap:12px}.hit{display:flex;gap:12px;background:#fff;border:1px solid #dfe3ea;border-radius:8px;
padding:10px;min-width:0}.thumb img{width:112px;height:112px;object-fit:contain;image-rendering:pixelated;
border-radius:4px;background:#ddd;display:block}.noimg{width:112px;height:112px;display:flex;align-items:center;
justify-content:center;background:#eee;color:#888;font-size:12px;border-radius:4px}.body{flex:1;min-width:0}
.head{display:flex;gap:10px;align-items:baseline}.rank{font-weight:700}.score{background:#eef1f5;border-radius:10px;
padding:0 8px;font-variant-numeric:tabular-nums}.caption{margin:4px 0;overflow-wrap:anywhere}.id{color:#5d6778;
font-size:12px;margin:0;overflow-wrap:anywhere}.share{margin:6px 0;font-size:13px}
table.groups{border-collapse:collapse;font-size:12px;width:100%;max-width:560px}table.groups caption{text-align:left;
color:#5d6778}table.groups td,table.groups th{padding:2px 6px;text-align:left;border-bottom:1px solid #eef1f5}
table.groups td:first-child{overflow-wrap:anywhere}
td.num{text-align:right;font-variant-numeric:tabular-nums}.bar{display:inline-block;
width:80px;height:8px;background:#eef1f5;border-radius:4px;overflow:hidden}.bar span{display:block;height:100%;
background:#2f6fde}.feats{font-size:12px;margin:6px 0 0;padding-left:18px;overflow-wrap:anywhere}
.more{font-size:12px;color:#5d6778;margin:2px 0}
@media (max-width:520px){.hit{flex-direction:column}.thumb img,.noimg{width:96px;height:96px}.bar{width:48px}}
"""
