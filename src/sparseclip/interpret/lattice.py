"""The concept lattice: ground-truth concepts of every analysed input, single attributes AND conjunctions.

A world scene's ``labels`` are the union over its objects (``color:red``, ``shape:circle``, ...), so a feature
that fires on red circles only can never look clean against them: it is half of "red" and half of "circle". The
lattice adds the conjunctions of attributes of the SAME object (``color:red&shape:circle``,
``shape:circle&size:large``, ...), so such a feature has a concept of its own. Scene-level labels (``count:2``,
``background:dark``) are single concepts; they are not conjoined (they belong to no object).

*Pixel-level* concepts (the world's ``background``: a mean brightness any random feature separates) are marked
so that metrics report them apart and they cannot carry a random model.

Any labelled data fits: each input is a list of *objects*, each a set of ``"kind:value"`` strings (a CSV row is
one object made of its label columns ``COL:value``; caption words can be added as ``word:x``), plus scene-level
labels.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

#: concept kinds that are pixel statistics, reported apart from the semantic ones
PIXEL_KINDS = ("background",)
#: joins the parts of a conjunction: ``color:red&shape:circle``
CONJ = "&"
#: a concept needs at least this many inputs to enter the lattice
MIN_SUPPORT = 10


@dataclass
class Lattice:
    """Binary concept labels of N inputs: ``matrix[n, c]`` says whether input n shows concept ``names[c]``."""

    names: list[str]
    matrix: np.ndarray  # (N, C) bool
    order: np.ndarray  # (C,) int: 1 for a single attribute, 2 for a pair of the same object, ...
    pixel: np.ndarray  # (C,) bool: a pixel-level concept (reported apart)

    @property
    def semantic(self) -> np.ndarray:
        """(C,) bool: the concepts that are not pixel statistics."""
        return ~self.pixel

    def rows(self, idx) -> Lattice:
        """The lattice of a subset (or permutation) of the inputs, same concepts."""
        return Lattice(self.names, self.matrix[np.asarray(idx)], self.order, self.pixel)

    def columns(self, keep) -> Lattice:
        """The lattice restricted to the concepts ``keep`` (bool mask or indices)."""
        keep = np.asarray(keep)
        idx = np.flatnonzero(keep) if keep.dtype == bool else keep.astype(int)
        return Lattice([self.names[i] for i in idx], self.matrix[:, idx], self.order[idx], self.pixel[idx])

    def to_dict(self) -> dict:
        """Counts per kind, for a JSON description of what was scored."""
        return {"concepts": len(self.names), "singles": int((self.order == 1).sum()),
                "conjunctions": int((self.order > 1).sum()), "pixel": int(self.pixel.sum()),
                "inputs": int(self.matrix.shape[0])}


def concept_parts(name: str) -> list[str]:
    """The single concepts a lattice concept is made of (``"a:x&b:y"`` -> ``["a:x", "b:y"]``)."""
    return name.split(CONJ)


def _is_pixel(name: str, pixel_kinds: Sequence[str]) -> bool:
    return any(part.partition(":")[0] in pixel_kinds for part in concept_parts(name))


def build_lattice(objects: Sequence[Sequence[Iterable[str]]], labels: Sequence[Iterable[str]] | None = None,
                  max_order: int = 2, min_support: int = MIN_SUPPORT,
                  pixel_kinds: Sequence[str] = PIXEL_KINDS) -> Lattice:
    """The lattice of N inputs. ``objects[n]``: the objects of input n, each an iterable of ``kind:value``;
    ``labels[n]``: scene-level single concepts (e.g. the world's ``Scene.labels``; default none).

    Singles are every object attribute and scene label; conjunctions are the combinations of 2..``max_order``
    attributes of one object. Concepts on fewer than ``min_support`` inputs, or on every input, are dropped.
    Columns are sorted by order, then name.
    """
    n = len(objects)
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels: {len(labels)} rows for {n} inputs")
    if max_order < 1:
        raise ValueError(f"max_order must be >= 1, got {max_order}")
    per_input: list[set[str]] = []
    for i in range(n):
        have = set(labels[i]) if labels is not None else set()
        for obj in objects[i]:
            attrs = sorted(set(obj))
            have.update(attrs)
            for k in range(2, max_order + 1):
                have.update(CONJ.join(c) for c in itertools.combinations(attrs, k)
                            if not any(_is_pixel(a, pixel_kinds) for a in c))
        per_input.append(have)
    counts = Counter(c for have in per_input for c in have)
    names = sorted((c for c, k in counts.items() if min_support <= k < n),
                   key=lambda c: (len(concept_parts(c)), c))
    index = {c: j for j, c in enumerate(names)}
    matrix = np.zeros((n, len(names)), dtype=bool)
    for i, have in enumerate(per_input):
        cols = [index[c] for c in have if c in index]
        matrix[i, cols] = True
    order = np.array([len(concept_parts(c)) for c in names], dtype=int)
    pixel = np.array([_is_pixel(c, pixel_kinds) for c in names], dtype=bool)
    return Lattice(names, matrix, order, pixel)


def scene_objects(scene) -> list[frozenset[str]]:
    """A world scene's objects as sets of ``kind:value`` (colour, shape, size, position)."""
    return [frozenset({f"color:{o.color}", f"shape:{o.shape}", f"size:{o.size}", f"position:{o.position}"})
            for o in scene.objects]


def world_lattice(scenes: Sequence, max_order: int = 2, min_support: int = MIN_SUPPORT) -> Lattice:
    """The lattice of world scenes: object attributes and their same-object conjunctions, plus the scene's count
    and (pixel-level) background."""
    return build_lattice([scene_objects(s) for s in scenes], [s.labels for s in scenes], max_order, min_support)


_WORD = re.compile(r"[a-z]+")


def caption_words(captions: Sequence[str], stopwords: Iterable[str] = (), min_len: int = 3) -> list[frozenset[str]]:
    """Each caption's words as ``word:x`` concepts (lower case, stopwords and words shorter than ``min_len``
    dropped): for data whose captions are their ground truth (e.g. an emoji's Unicode name)."""
    stop = set(stopwords)
    return [frozenset(f"word:{w}" for w in _WORD.findall(c.lower()) if len(w) >= min_len and w not in stop)
            for c in captions]


def table_lattice(columns: dict[str, Sequence[str]], words: Sequence[Iterable[str]] | None = None,
                  max_order: int = 2, min_support: int = MIN_SUPPORT) -> Lattice:
    """The lattice of a labelled table (a user's CSV): each row is one object made of its label columns
    (``COL:value``, empty values skipped) and, when given, its ``words`` (:func:`caption_words`)."""
    n = len(next(iter(columns.values()))) if columns else len(words or [])
    objs = []
    for i in range(n):
        attrs = {f"{k}:{v[i]}" for k, v in columns.items() if v[i]}
        if words is not None:
            attrs |= set(words[i])
        objs.append([attrs])
    return build_lattice(objs, None, max_order, min_support)
