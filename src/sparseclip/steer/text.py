"""Texts for the VLM: the procedural world's question/answer pairs and a tiny word-level tokenizer.

The CPU default language model speaks only the world's caption language, so its tokenizer is a closed word
list (built from the world's templates and value lists, no downloads). At scale a Hugging Face tokenizer
loaded from a local directory takes its place (:class:`HFTokenizer`); both expose the same small interface.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from ..data.world import BACKGROUNDS, COLORS, COUNT_WORDS, POSITIONS, SHAPES, SIZES, Scene, World
from ..files.atomic import write_text_atomic

Q_CAPTION = "what is in the picture?"
Q_COLOR = "what colour is the shape?"
Q_SHAPE = "what shape is it?"
QUESTIONS = {"caption": Q_CAPTION, "color": Q_COLOR, "shape": Q_SHAPE}
SPECIALS = ("<pad>", "<bos>", "<eos>", "<sep>", "<unk>")
_TOKEN = re.compile(r"[a-z]+|[,.:?]")


class SteerError(ValueError):
    """Bad input to the steering tools, described in one line."""


def qa_pairs(scene: Scene) -> list[tuple[str, str]]:
    """(question, answer) pairs for a scene: its caption always; colour and shape for one-object scenes."""
    pairs = [(Q_CAPTION, scene.caption)]
    if scene.count == 1:
        pairs += [(Q_COLOR, scene.objects[0].color), (Q_SHAPE, scene.objects[0].shape)]
    return pairs


def world_words(n_scenes: int = 400) -> list[str]:
    """Every word and punctuation token the world's captions, questions and answers use (sorted)."""
    words = set()
    for values in (COLORS, SHAPES, SIZES, POSITIONS, BACKGROUNDS, COUNT_WORDS.values()):
        for v in values:
            words.update(_TOKEN.findall(v))
    for q in QUESTIONS.values():
        words.update(_TOKEN.findall(q))
    world = World(seed=12345)
    for i in range(n_scenes):  # template words (all templates appear within a few hundred scenes)
        words.update(_TOKEN.findall(world.scene(i).caption))
    return sorted(words)


class WordTokenizer:
    """A closed-vocabulary word tokenizer: lower-cased words and ``, . : ?`` are tokens."""

    def __init__(self, words: Sequence[str]):
        self.vocab: list[str] = list(SPECIALS) + [w for w in words if w not in SPECIALS]
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.pad_id, self.bos_id, self.eos_id, self.sep_id, self.unk_id = (self.index[s] for s in SPECIALS)

    @classmethod
    def for_world(cls) -> WordTokenizer:
        return cls(world_words())

    def __len__(self) -> int:
        return len(self.vocab)

    def words(self, text: str) -> list[str]:
        return _TOKEN.findall(text.lower())

    def unknown_words(self, text: str) -> list[str]:
        """Words of ``text`` outside the vocabulary."""
        return [w for w in self.words(text) if w not in self.index]

    def encode(self, text: str) -> list[int]:
        return [self.index.get(w, self.unk_id) for w in self.words(text)]

    def prompt_ids(self, question: str) -> list[int]:
        """``<bos> question <sep>``: what the answer follows."""
        return [self.bos_id, *self.encode(question), self.sep_id]

    def decode(self, ids: Sequence[int]) -> str:
        out = [self.vocab[i] for i in ids if 0 <= i < len(self.vocab) and self.vocab[i] not in SPECIALS]
        return re.sub(r" ([,.:?])", r"\1", " ".join(out))

    def save(self, path: str | Path) -> None:
        write_text_atomic(path, json.dumps({"kind": "word", "vocab": self.vocab}, indent=0))

    @classmethod
    def load(cls, path: str | Path) -> WordTokenizer:
        try:
            data = json.loads(Path(path).read_text())
            vocab = data["vocab"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise SteerError(f"{path}: not a word tokenizer file ({e})") from None
        return cls([w for w in vocab if w not in SPECIALS])


class HFTokenizer:
    """A Hugging Face tokenizer from a local directory behind the :class:`WordTokenizer` interface.

    The separator between question and answer is the text ``"\\nAnswer:"`` tokenised (no new special token).
    """

    def __init__(self, directory: str | Path):
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        self.eos_id = self.tok.eos_token_id
        self.bos_id = self.tok.bos_token_id if self.tok.bos_token_id is not None else self.eos_id
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.eos_id
        self.unk_id = self.tok.unk_token_id if self.tok.unk_token_id is not None else self.eos_id
        self.sep_ids = self.tok.encode("\nAnswer:", add_special_tokens=False)
        self.sep_id = self.sep_ids[-1]

    def __len__(self) -> int:
        return len(self.tok)

    def unknown_words(self, text: str) -> list[str]:
        return []  # an open vocabulary

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False)

    def prompt_ids(self, question: str) -> list[int]:
        """``<bos> question`` then the tokenised separator ``"\\nAnswer:"``."""
        return [self.bos_id, *self.encode(question), *self.sep_ids]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True).strip()

    def save(self, path: str | Path) -> None:
        write_text_atomic(path, json.dumps({"kind": "hf"}))
