"""Concepts as feature sets: which features of the code a phrase turns on.

A Sparse CLIP text code is non-negative and mostly zero, so a phrase ("red", "a circle") names a small
set of features: the ones its code activates most. That set is what search filters on ("red but not
circle": require/exclude the features of each phrase) and what steering pushes up or down, so this
module knows nothing about either: it maps phrases to codes and codes to feature ids.

>>> feats = concept_features(model, tokenizer, "red", k=8)                 # strongest first
>>> feats = concept_features(model, tokenizer, "red", k=8, baseline="a shape")  # minus generic features
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..model import SparseCLIP
from ..model.embed import encode_texts


def phrase_code(model: SparseCLIP, tokenizer, phrase: str | Sequence[str]) -> torch.Tensor:
    """The text code (``code_dim``,) of a phrase; for several phrases (paraphrases, templates) their mean."""
    phrases = [phrase] if isinstance(phrase, str) else list(phrase)
    if not phrases or any(not isinstance(p, str) or not p.strip() for p in phrases):
        raise ValueError("a concept needs at least one non-empty phrase")
    return encode_texts(model, tokenizer, phrases).mean(dim=0)


def concept_activations(model: SparseCLIP, tokenizer, phrase: str | Sequence[str],
                        baseline: str | Sequence[str] | None = None) -> torch.Tensor:
    """How strongly the phrase drives each feature: its code, minus the ``baseline`` code when given.

    A baseline ("a picture", "a shape") removes the features that every phrase of that form turns on, so
    what is left is specific to the concept. Values can be negative after the subtraction.
    """
    code = phrase_code(model, tokenizer, phrase)
    if baseline is not None:
        code = code - phrase_code(model, tokenizer, baseline)
    return code


def concept_features(model: SparseCLIP, tokenizer, phrase: str | Sequence[str], k: int = 8, *,
                     baseline: str | Sequence[str] | None = None, min_activation: float = 0.0) -> list[int]:
    """The (up to) ``k`` features the text tower activates most for ``phrase``, strongest first.

    Only features whose activation (after subtracting ``baseline``, if given) exceeds ``min_activation``
    are returned, so a phrase that activates fewer features yields a shorter list.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    act = concept_activations(model, tokenizer, phrase, baseline)
    vals, idx = act.topk(min(k, act.numel()))
    return [int(i) for v, i in zip(vals.tolist(), idx.tolist(), strict=True) if v > min_activation]
