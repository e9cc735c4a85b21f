"""Scoring steered answers by their words: success (names the target, no longer the source) and well-formedness.

Well-formed means "something training produced": for the caption question, a sentence the world's caption
grammar generates (every template, every value) whose length is within the training captions' range; for
the colour and shape questions, one colour or shape word. A small LM trained only on that grammar rarely fails
this check, so the benchmark's corruption is ill-formed *or unfaithful to the image* (:mod:`.judge`), and
success is also judged by a separate model (:class:`.judge.TextJudge`). :func:`score`'s ``corrupt`` is the
grammar check alone.
"""

from __future__ import annotations

import re
from functools import lru_cache

from ..data import world as W
from .text import Q_CAPTION, Q_COLOR, Q_SHAPE


def _alt(values) -> str:
    return "(?:" + "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)) + ")"


@lru_cache(maxsize=1)
def caption_grammar() -> re.Pattern:
    """A regular expression matching exactly the captions the world's templates can produce
    (including the a/an rewrite)."""
    color, shape, size = _alt(W.COLORS), _alt(W.SHAPES), _alt(W.SIZES)
    where, bg = _alt(W.POSITIONS), _alt(W.BACKGROUNDS)
    count = _alt([w for n, w in W.COUNT_WORDS.items() if n > 1])
    phrase = f"an? {color} {shape}"
    lst = f"{phrase}(?:, {phrase})* and {phrase}"
    at = f"{phrase} at the {where}"
    lst_where = f"{at}(?:, {at})* and {at}"
    fills = {"color": color, "shape": shape, "size": size, "where": where, "bg": bg, "count": count,
             "list": lst, "list_where": lst_where}
    alts = []
    for t in (*W.SINGLE_TEMPLATES, *W.MULTI_TEMPLATES):
        if not re.fullmatch(r"[a-z ,:{}_]+", t):  # literal parts must hold no regex syntax
            raise ValueError(f"caption template with unexpected characters: {t!r}")
        alts.append(re.sub(r"\ba ", "an? ", t).format(**fills))  # the world writes "an" before a vowel
    return re.compile("(?:" + "|".join(alts) + ")")


def _n_words(text: str) -> int:
    return len(re.findall(r"[a-z]+", text))


@lru_cache(maxsize=1)
def caption_length_range(n: int = 2000) -> tuple[int, int]:
    """(min, max) number of words of the world's captions, over ``n`` training scenes."""
    world = W.World(seed=0)
    lengths = [_n_words(world.scene(i).caption) for i in range(n)]
    return min(lengths), max(lengths)


def well_formed(answer: str, question: str) -> bool:
    """Whether ``answer`` is a well-formed answer to ``question`` (see module docstring)."""
    a = answer.strip().lower()
    if question == Q_COLOR:
        return a in W.COLORS
    if question == Q_SHAPE:
        return a in W.SHAPES
    if question == Q_CAPTION:
        lo, hi = caption_length_range()
        return lo <= _n_words(a) <= hi and caption_grammar().fullmatch(a) is not None
    raise ValueError(f"no grammar for question {question!r}")


def names(answer: str, concept: str) -> bool:
    """Whether ``answer`` mentions ``concept`` as whole word(s)."""
    return re.search(rf"\b{re.escape(concept.lower())}\b", answer.lower()) is not None


def score(answer: str, question: str, source: str, target: str) -> dict[str, bool]:
    """``success``: names ``target`` and not ``source``; ``corrupt``: not well-formed; ``clean_success``: both
    a success and well-formed."""
    success = names(answer, target) and not names(answer, source)
    corrupt = not well_formed(answer, question)
    return {"success": success, "corrupt": corrupt, "clean_success": success and not corrupt}
