"""Searching a stored index with a text or an image, embedded by the model the index was built with; filter
phrases ("red but not circle") turned into features by the same model's text tower.

>>> result = search_index("runs/index", text="a red shape", exclude_phrases=["circle"], k=5, explain=3)
>>> result.hits, result.filters
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .codes import SparseIndexError
from .explain import UNASSIGNED, ConceptGroup, group_contributions, top_share
from .sparse_index import Hit, SparseIndex


@dataclass
class FilterEffect:
    """What one filter did: the items it kept out of those searched, and per feature the items it is active on."""

    what: str  # "require 'red'", "exclude 'circle'", "exclude features"
    features: list[int]
    kept: int
    of: int
    per_feature: dict[int, int] = field(default_factory=dict)
    #: features whose name shares no word with the phrase (they may stand for another concept)
    off_topic: list[int] = field(default_factory=list)

    @property
    def removed(self) -> int:
        return self.of - self.kept

    def to_dict(self) -> dict:
        return {"what": self.what, "features": self.features, "kept": self.kept, "removed": self.removed,
                "of": self.of, "items_per_feature": {str(k): v for k, v in self.per_feature.items()},
                "names_off_topic": self.off_topic}


@dataclass
class SearchResult:
    """The hits, and for each filter phrase (``"require 'red'"``, ``"exclude 'circle'"``) the features it stands
    for, with what each filter removed (``effects``)."""

    index: SparseIndex
    hits: list[Hit]
    filters: dict[str, list[int]] = field(default_factory=dict)
    #: per hit row, its shared features grouped by concept (with explanations, when the index has concepts)
    groups: dict[int, list[ConceptGroup]] = field(default_factory=dict)
    #: the query in words (``text "a red circle"``, ``image q.png``); empty when unknown
    query: str = ""
    effects: list[FilterEffect] = field(default_factory=list)
    #: per hit row, how many features the query and the item share (with explanations)
    shared: dict[int, int] = field(default_factory=dict)
    boosted: bool = False

    def score_line(self) -> str:
        """What the score is, in one line (the header of the printed and HTML results)."""
        what = ("cosine similarity of the query's and the item's codes (each scaled to length 1) = the sum over the "
                "features both have active of query value x item value; 1 = the same code, 0 = nothing shared"
                if self.index.normalize else
                "dot product of the query's and the item's raw codes = the sum over the features both have active of "
                "query value x item value; 0 = nothing shared")
        return f"score = {what}" + ("; the query's code was boosted (--boost)" if self.boosted else "")

    def header(self) -> str:
        """``searched N items for text "..."``."""
        query = f" for {self.query}" if self.query else ""
        return f"searched {len(self.index)} items{query}: {len(self.hits)} hits"

    def to_dict(self) -> dict:
        """The result as JSON-ready data (what ``index search --json`` prints, with the query added)."""
        return {"score": self.score_line(), "searched": len(self.index), "filters": self.filters,
                "filter_effects": [e.to_dict() for e in self.effects],
                "hits": [{**h.to_dict(), "shared_features": self.shared.get(h.row),
                          "concept_groups": [{"concept": g.concept, "contribution": g.contribution, "share": g.share,
                                              "features": g.features} for g in self.groups.get(h.row, [])]}
                         for h in self.hits]}


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
    effects: list[FilterEffect] = []
    for phrase in require_phrases:
        feats = concept_features(net, tok, phrase, concept_k, baseline=baseline)
        filters[f"require {phrase!r}"] = feats
        effects.append(filter_effect(index, f"require {phrase!r}", feats, min_activation, phrase, keep_any=True))
        mask = index.allowed_mask(require_any=feats, min_activation=min_activation)
        if mask is not None:
            allowed = mask if allowed is None else allowed & mask
    if require_features:
        effects.append(filter_effect(index, "require features", list(require_features), min_activation,
                                     keep_any=False))
    exclude = list(exclude_features)
    if exclude_features:
        effects.append(filter_effect(index, "exclude features", list(exclude_features), min_activation))
    for phrase in exclude_phrases:
        feats = concept_features(net, tok, phrase, concept_k, baseline=baseline)
        filters[f"exclude {phrase!r}"] = feats
        effects.append(filter_effect(index, f"exclude {phrase!r}", feats, min_activation, phrase))
        exclude += feats
    hits = index.search(query, k=k, require=list(require_features) or None, exclude=exclude or None,
                        boost=dict(boost) if boost else None, min_activation=min_activation, explain=explain,
                        approximate=approximate, allowed=allowed)
    groups, shared = {}, {}
    if explain:  # every shared feature of each hit: how many, and grouped by concept when the index has concepts
        for h in hits:
            full = index.explain(query, h.row, boost=dict(boost) if boost else None)
            shared[h.row] = len(full.contributions)
            if index.feature_concepts:
                groups[h.row] = group_contributions(full.contributions, full.score, index.feature_concepts)
    words = f"text {text!r}" if text is not None else f"image {image}"
    return SearchResult(index=index, hits=hits, filters=filters, groups=groups, query=words, effects=effects,
                        shared=shared, boosted=bool(boost))


def filter_effect(index: SparseIndex, what: str, features: Sequence[int], min_activation: float = 0.0,
                  phrase: str | None = None, keep_any: bool | None = None) -> FilterEffect:
    """What a filter over ``features`` does to ``index`` on its own: the items it keeps (``keep_any`` True: items
    with any of the features; False: with all of them; None: an exclusion, items with none), the items each
    feature is active on, and (for a ``phrase``) the features whose name shares no word with it."""
    feats = [int(f) for f in features]
    n = len(index)
    if not feats:
        return FilterEffect(what, [], n if keep_any is None else 0, n)
    if keep_any is None:
        mask = index.allowed_mask(exclude=feats, min_activation=min_activation)
    elif keep_any:
        mask = index.allowed_mask(require_any=feats, min_activation=min_activation)
    else:
        mask = index.allowed_mask(require=feats, min_activation=min_activation)
    kept = n if mask is None else int(mask.sum())
    per = {}
    for f in feats:
        with_f = index.allowed_mask(require=[f], min_activation=min_activation)
        per[f] = 0 if with_f is None else int(with_f.sum())
    off = []
    if phrase is not None:
        words = set(_words(phrase))
        off = [f for f in feats if index.feature_name(f) and not words & set(_words(index.feature_name(f) or ""))]
    return FilterEffect(what, feats, kept, n, per, off)


def _words(text: str) -> list[str]:
    """Lower-case words of ``text``, a trailing plural ``s`` dropped (``circles`` matches ``circle``)."""
    return [w[:-1] if len(w) > 3 and w.endswith("s") else w for w in re.findall(r"[a-z0-9]+", text.lower())]


def item_image(index: SparseIndex, item_id: str):
    """The image of an indexed item, as a PIL image: a procedural world scene (``world:SEED:I``, rendered again
    with the index's model settings) or an image file (a path id); None when it cannot be had."""
    m = re.fullmatch(r"world:(-?\d+):(\d+)", item_id)
    if m:
        from ..data.world import World

        data = ((index.model or {}).get("config") or {}).get("data") or {}
        world = World(seed=int(m.group(1)), image_size=int(data.get("image_size", 64)),
                      max_objects=int(data.get("max_objects", 3)))
        i = int(m.group(2))
        return world.render(world.scene(i), i)
    path = Path(item_id)
    if path.is_file():
        from ..data.base import SkipSample, open_rgb

        try:
            return open_rgb(path)
        except SkipSample:
            return None
    return None


def format_result(r: SearchResult) -> list[str]:
    """The lines ``sparseclip index search`` prints: what was searched and what the score is; each filter's
    features and what it removed; then one line per hit (rank, score, id, caption) with its explanation below it:
    the share of the score the listed features hold, each feature's part, and the concept groups."""
    lines = [r.header(), r.score_line()]
    described = {e.what for e in r.effects}
    for what, feats in r.filters.items():
        if what in described:
            continue  # its effect line names the features
        names = [f"{f}" + (f" ({r.index.feature_name(f)})" if r.index.feature_name(f) else "") for f in feats]
        lines.append(f"[{what}: features {', '.join(names) or 'none active'}]")
    for e in r.effects:
        lines += effect_lines(e, r.index)
    if not r.hits:
        gone = [e.what for e in r.effects if e.kept == 0]
        lines.append(f"no hits: {' and '.join(gone)} left no item" if gone else
                     "no hits: no indexed item shares an active feature with the query (after filters)")
    for h in r.hits:
        caption = f"  {' '.join(h.caption.split())}" if h.caption else ""  # one line per hit
        lines.append(f"{h.rank:3d}  {h.score:.4f}  {h.id}{caption}")
        if h.contributions or h.row in r.groups:
            lines.append("       " + share_line(h, r.shared.get(h.row), r.groups.get(h.row)))
        for c in h.contributions:
            name = f" {c.name}" if c.name else ""
            lines.append(f"       f{c.feature}{name}: {c.contribution:+.4f}{_pct(c.contribution, h.score)}  "
                         f"(query {c.query_value:.3f} x item {c.item_value:.3f})")
        if h.contributions and abs(h.rest) > 1e-8:
            lines.append(f"       other shared features: {h.rest:+.4f}{_pct(h.rest, h.score)}")
        if h.row in r.groups:
            lines.append("       by concept: " + group_line(r.groups[h.row]))
    return lines


def _pct(part: float, score: float) -> str:
    return f" ({100 * part / score:.0f}%)" if score else ""


def share_line(hit: Hit, shared: int | None, groups: list[ConceptGroup] | None, top: int = 3) -> str:
    """``the 3 features listed hold 16% of the score (of 201 shared); the 3 largest concept groups hold 83%``."""
    parts = []
    if hit.contributions:
        n = len(hit.contributions)
        held = _share(sum(c.contribution for c in hit.contributions), hit.score)
        of = f" (of {shared} shared)" if shared is not None else ""
        parts.append(f"the {n} feature{'s' if n != 1 else ''} listed hold{'s' if n == 1 else ''} {held} of the "
                     f"score{of}")
    if groups:
        n = min(top, len([g for g in groups if g.concept != UNASSIGNED]))
        parts.append(f"the {n} largest concept group{'s' if n != 1 else ''} hold{'s' if n == 1 else ''} "
                     f"{100 * top_share(groups, top):.0f}%")
    return "; ".join(parts)


def _share(part: float, score: float) -> str:
    return f"{100 * part / score:.0f}%" if score else "n/a"


def effect_lines(e: FilterEffect, index: SparseIndex) -> list[str]:
    """``[exclude 'circle' removed 287 of 300 items: f226 on 120, f84 (two objects) on 150, ...]``, and a line
    naming the phrase's features whose names do not mention it."""
    verb = f"kept {e.kept}" if e.what.startswith("require") else f"removed {e.removed}"
    per = ", ".join(f"f{f}" + (f" ({index.feature_name(f)})" if index.feature_name(f) else "") + f" on {n}"
                    for f, n in e.per_feature.items())
    lines = [f"[{e.what} {verb} of {e.of} items" + (f"; active on: {per}" if per else ": no features") + "]"]
    if e.off_topic:
        lines.append(f"[  the names of {', '.join(f'f{f}' for f in e.off_topic)} do not mention the phrase: they may "
                     "stand for something else; --exclude-feature / --require-feature ID filter single features]")
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
