"""Naming features by the words and short phrases that the TEXT tower maps most strongly onto them.

A vocabulary of terms is encoded by the text side; each term's code is L2-normalised (so a term counts by
*where* its code points, not by how loud it is), and a feature's name is the term with the highest
normalised activation on it. Vocabularies: the training captions' words and n-grams (default; for the
procedural world, its caption language), optionally WordNet lemmas (Debian ``wordnet-base`` files) and
common English words (the ``wordfreq`` package). :func:`name_quality` checks a name against the image
side: how well the name's text embedding ranks the feature's top-activating images above the others.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..eval.sparsity import as_numpy
from ._arrays import l2_normalize, paired_auroc

STOPWORDS = frozenset("a an the of on in at and or is are there that this with to some it its".split())
WORDNET_DIR = Path("/usr/share/wordnet")
_WORD = re.compile(r"[a-z]+")
_CLAUSE = re.compile(r"[,.;:!?()]|\band\b")


def caption_ngrams(captions: Iterable[str], max_n: int = 3, min_count: int = 2,
                   stopwords: frozenset[str] = STOPWORDS) -> list[str]:
    """Words and n-grams (n <= ``max_n``) of ``captions`` seen at least ``min_count`` times.

    N-grams do not cross punctuation or "and", and may not start or end with a stopword ("red circle"
    is kept, "a red" is not; single stopwords are dropped). Sorted by frequency, then alphabetically.
    """
    counts: Counter[str] = Counter()
    for cap in captions:
        for clause in _CLAUSE.split(cap.lower()):  # n-grams do not cross punctuation
            words = _WORD.findall(clause)
            for n in range(1, max_n + 1):
                for i in range(len(words) - n + 1):
                    gram = words[i:i + n]
                    if gram[0] in stopwords or gram[-1] in stopwords:
                        continue
                    counts[" ".join(gram)] += 1
    return [t for t, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count]


def wordnet_lemmas(root: str | Path = WORDNET_DIR, pos: Sequence[str] = ("noun", "adj"),
                   max_words: int = 2) -> list[str]:
    """Lemmas from WordNet's ``index.<pos>`` files (Debian ``wordnet-base``); [] when not installed.

    Multi-word lemmas (``ice_cream`` -> ``ice cream``) are kept up to ``max_words`` words.
    """
    out: list[str] = []
    for p in pos:
        path = Path(root) / f"index.{p}"
        if not path.is_file():
            continue
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(" "):  # licence header
                    continue
                lemma = line.split(" ", 1)[0].replace("_", " ")
                if lemma.replace(" ", "").isalpha() and lemma.count(" ") < max_words:
                    out.append(lemma.lower())
    return sorted(set(out))


def common_words(n: int = 20000) -> list[str]:
    """The ``n`` most frequent English words from ``wordfreq``; [] when the package is missing."""
    try:
        from wordfreq import top_n_list
    except ImportError:
        return []
    return [w for w in top_n_list("en", n) if w.isalpha() and w not in STOPWORDS]


def build_vocabulary(captions: Iterable[str], max_n: int = 3, min_count: int = 2, wordnet: bool = False,
                     wordfreq_n: int = 0, wordnet_root: str | Path = WORDNET_DIR) -> list[str]:
    """Caption n-grams, plus optionally WordNet lemmas and the ``wordfreq_n`` commonest words (deduplicated,
    caption terms first)."""
    terms = caption_ngrams(captions, max_n, min_count)
    extra: list[str] = []
    if wordnet:
        extra += wordnet_lemmas(wordnet_root)
    if wordfreq_n > 0:
        extra += common_words(wordfreq_n)
    seen = set(terms)
    for t in extra:
        if t not in seen:
            seen.add(t)
            terms.append(t)
    return terms


def term_scores(term_codes) -> np.ndarray:
    """(V, D) per-term normalised activations: each term's code scaled to unit L2 norm (negatives kept)."""
    return l2_normalize(as_numpy(term_codes, 2, "term_codes"))


def top_terms(scores: np.ndarray, vocab: Sequence[str], feature: int, k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` terms with the highest normalised activation on ``feature``, with their scores."""
    if scores.shape[0] != len(vocab):
        raise ValueError(f"scores have {scores.shape[0]} rows but the vocabulary has {len(vocab)} terms")
    col = scores[:, feature]
    idx = np.argsort(-col, kind="stable")[:k]
    return [(vocab[i], float(col[i])) for i in idx]


def name_features(scores: np.ndarray, vocab: Sequence[str], features: Iterable[int]) -> dict[int, str]:
    """Each feature's name: its top term (an empty string if no term activates it at all)."""
    out = {}
    for f in features:
        col = scores[:, f]
        i = int(np.argmax(col))
        out[int(f)] = vocab[i] if col[i] > 0 else ""
    return out


def name_quality(feature_acts, name_sims, top_k: int = 20, tau: float = 1e-3) -> np.ndarray:
    """Per feature, AUROC of the name's similarity to each image at picking the feature's top images.

    ``feature_acts`` (N, F): the features' activations on N images; ``name_sims`` (N, F): each image's
    similarity to the name of the same feature (e.g. cosine of image and name embeddings). Positives are
    the feature's ``top_k`` highest-activating images among those where it fires (``> tau``); the rest are
    negatives. 1.0: the name alone finds the feature's images; 0.5: chance. NaN when a feature fires on
    no image or on all of them.
    """
    acts = as_numpy(feature_acts, 2, "feature_acts")
    sims = as_numpy(name_sims, 2, "name_sims")
    order = np.argsort(-acts, axis=0, kind="stable")[:top_k]
    pos = np.zeros_like(acts, dtype=bool)
    np.put_along_axis(pos, order, True, axis=0)
    pos &= acts > tau
    return paired_auroc(sims, pos)
