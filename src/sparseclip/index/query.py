"""Searching a stored index with a text or an image, embedded by the model the index was built with; filter
phrases ("red but not circle") turned into features by the same model's text tower.

>>> result = search_index("runs/index", text="a red shape", exclude_phrases=["circle"], k=5, explain=3)
>>> result.hits, result.filters
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .codes import SparseIndexError
from .explain import UNASSIGNED, ConceptGroup, group_contributions
from .sparse_index import Hit, SparseIndex


@dataclass
class SearchResult:
    """The hits, and for each filter phrase (``"require 'red'"``, ``"exclude 'circle'"``) the features it stands
    for."""

    index: SparseIndex
    hits: list[Hit]
    filters: dict[str, list[int]] = field(default_factory=dict)
    #: per hit row, its shared features grouped by concept (with explanations, when the index has concepts)
    groups: dict[int, list[ConceptGroup]] = field(default_factory=dict)


def query_model(index: SparseIndex, override: str | Path | None = None):
    """``(model, cfg)`` that embeds queries for ``index``: ``override`` or the checkpoint the index records."""
    from ..model.checkpoint import load_model

    path = override or (index.model or {}).get("checkpoint")
    if not path:
        raise SparseIndexError("this index records no model to embed queries with; pass --model RUN_OR_CKPT")
    if not Path(path).exists():
        raise SparseIndexError(f"the index's model {path} is not there any more; pass --model RUN_OR_CKPT")
    model, cfg = load_model(path)
    if model.code_dim != index.n_features:
        raise SparseIndexError(f"model {path} makes {model.code_dim}-feature codes, the index has {index.n_features}")
    return model, cfg


def search_index(index: SparseIndex | str | Path, *, text: str | None = None, image: str | Path | None = None,
                 k: int = 10, explain: int = 0, require_phrases: Sequence[str] = (),
                 exclude_phrases: Sequence[str] = (), require_features: Sequence[int] = (),
                 exclude_features: Sequence[int] = (), boost: Mapping[int, float] | None = None,
                 concept_k: int = 3, baseline: str | None = None, min_activation: float = 0.0,
                 model: str | Path | None = None, approximate: bool = False) -> SearchResult:
    """Top-``k`` hits for a ``text`` or an ``image`` (path) query.

    Each of ``require_phrases`` keeps the items with at least one of the phrase's top ``concept_k`` features
    (all phrases must hold); ``exclude_phrases`` drop items with any of theirs; ``require_features`` /
    ``exclude_features`` / ``boost`` / ``explain`` are as in :meth:`SparseIndex.search_batch`.
    """
    from ..interpret.concepts import concept_features
    from ..model import get_tokenizer
    from ..model.embed import encode_images, encode_texts

    if k < 1 or concept_k < 1:
        raise SparseIndexError("-k and --concept-k must be >= 1")
    if (text is None) == (image is None):
        raise SparseIndexError("give one query: a text or an image")
    index = index if isinstance(index, SparseIndex) else SparseIndex.load(index)
    net, cfg = query_model(index, model)
    tok = get_tokenizer(cfg.model)
    if text is not None:
        if not text.strip():
            raise SparseIndexError("the text query is empty")
        query = encode_texts(net, tok, [text])
    else:
        from ..data.base import SkipSample, open_rgb

        try:
            img = open_rgb(image)
        except SkipSample as e:
            raise SparseIndexError(f"image {image}: cannot read it ({e})") from None
        query = encode_images(net, [img], cfg.data.image_size)
    allowed = None
    filters: dict[str, list[int]] = {}
    for phrase in require_phrases:
        feats = concept_features(net, tok, phrase, concept_k, baseline=baseline)
        filters[f"require {phrase!r}"] = feats
        mask = index.allowed_mask(require_any=feats, min_activation=min_activation)
        if mask is not None:
            allowed = mask if allowed is None else allowed & mask
    exclude = list(exclude_features)
    for phrase in exclude_phrases:
        feats = concept_features(net, tok, phrase, concept_k, baseline=baseline)
        filters[f"exclude {phrase!r}"] = feats
        exclude += feats
    hits = index.search(query, k=k, require=list(require_features) or None, exclude=exclude or None,
                        boost=dict(boost) if boost else None, min_activation=min_activation, explain=explain,
                        approximate=approximate, allowed=allowed)
    groups = {}
    if explain and index.feature_concepts:  # every shared feature of each hit, grouped by its concept
        for h in hits:
            full = index.explain(query, h.row, boost=dict(boost) if boost else None)
            groups[h.row] = group_contributions(full.contributions, full.score, index.feature_concepts)
    return SearchResult(index=index, hits=hits, filters=filters, groups=groups)


def format_result(r: SearchResult) -> list[str]:
    """The lines ``sparseclip index search`` prints: each filter's features, then one line per hit (rank, score,
    id, caption) with its explanation (the top shared features' contributions) below it."""
    lines = []
    for what, feats in r.filters.items():
        names = [f"{f}" + (f" ({r.index.feature_name(f)})" if r.index.feature_name(f) else "") for f in feats]
        lines.append(f"[{what}: features {', '.join(names) or 'none active'}]")
    if not r.hits:
        lines.append("no hits: no indexed item shares an active feature with the query (after filters)")
    for h in r.hits:
        caption = f"  {' '.join(h.caption.split())}" if h.caption else ""  # one line per hit
        lines.append(f"{h.rank:3d}  {h.score:.4f}  {h.id}{caption}")
        for c in h.contributions:
            name = f" {c.name}" if c.name else ""
            lines.append(f"       f{c.feature}{name}: {c.contribution:+.4f}  (query {c.query_value:.3f} x item "
                         f"{c.item_value:.3f})")
        if h.contributions and abs(h.rest) > 1e-8:
            lines.append(f"       other shared features: {h.rest:+.4f}")
        if h.row in r.groups:
            lines.append("       by concept: " + group_line(r.groups[h.row]))
    return lines


def group_line(groups: list[ConceptGroup], top: int = 3) -> str:
    """``color:red +0.2100 (41%), ...; other concepts +0.05 (9%); (no concept) +0.10 (20%)``."""
    named = [g for g in groups if g.concept != UNASSIGNED]
    parts = [f"{g.concept} {g.contribution:+.4f} ({100 * g.share:.0f}%)" for g in named[:top]]
    if len(named) > top:
        rest = named[top:]
        parts.append(f"{len(rest)} other concepts {sum(g.contribution for g in rest):+.4f} "
                     f"({100 * sum(g.share for g in rest):.0f}%)")
    parts += [f"{g.concept} {g.contribution:+.4f} ({100 * g.share:.0f}%)" for g in groups if g.concept == UNASSIGNED]
    return ", ".join(parts)
