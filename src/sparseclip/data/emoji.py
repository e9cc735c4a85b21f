"""A real image-caption set built offline: the colour emoji of Noto Color Emoji, captioned by their Unicode names.

Needs the font (Debian/Ubuntu: ``apt-get install fonts-noto-color-emoji``; or any path given to the functions)
and ``fontTools`` (a dependency of matplotlib) to list the font's characters. Each single-code-point emoji with
a Unicode name becomes one pair: the glyph rendered with Pillow (``ImageFont.truetype(font, 109)``,
``embedded_color=True``) and the caption ``unicodedata.name()`` in lower case ("grinning face with smiling
eyes"). Every emoji gets a fixed split (``train``/``test``, about 20% test, by a hash of its name) and, where
its name says so clearly, a zero-shot ``group`` (face, heart, clock, hand, ...; see :func:`emoji_group`).

``import_emoji(out, fmt="csv")`` writes ``images/*.png`` and ``train.csv`` / ``test.csv`` (columns
``filepath``, ``title``, ``emoji``, ``group``, ``split``, ``view``); ``fmt="wds"`` writes
``shards/{train,test}/{00000..}.tar`` (``png``, ``txt``, ``json``) with ``sizes.json``, as img2dataset
does. ``views > 1`` adds re-rendered copies of the training emoji (smaller, shifted, on tinted backgrounds)
for augmentation; view 0 is always the plain rendering.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import tarfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, features

from ..files.atomic import atomic_path, save_image, write_text_atomic
from .base import DataError

FONT_PATHS = ("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf", "/usr/share/fonts/noto/NotoColorEmoji.ttf")
FONT_SIZE = 109  # the one bitmap size of Noto Color Emoji (CBDT): glyphs are 136 x 128
_SKIP_PREFIXES = ("REGIONAL INDICATOR", "EMOJI MODIFIER", "TAG ", "VARIATION SELECTOR", "COMBINING")
# zero-shot groups: (class name, words of the Unicode name that select it), first match wins
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("clock", ("CLOCK",)),
    ("cat", ("CAT",)),
    ("dog", ("DOG", "POODLE")),
    ("flag", ("FLAG", "FLAGS")),
    ("heart", ("HEART",)),
    ("hand", ("HAND", "HANDS", "FIST", "INDEX", "THUMBS")),
    ("moon", ("MOON",)),
    ("arrow", ("ARROW", "ARROWS")),
    ("ball", ("BALL",)),
    ("face", ("FACE",)),
    ("car", ("CAR", "AUTOMOBILE", "TAXI", "BUS", "TRUCK")),
    ("tree", ("TREE",)),
    ("fruit", ("APPLE", "PEAR", "BANANA", "GRAPES", "MELON", "WATERMELON", "CHERRIES", "STRAWBERRY",
               "PEACH", "PINEAPPLE", "LEMON", "TANGERINE", "MANGO", "KIWIFRUIT", "BLUEBERRIES", "COCONUT")),
    ("bird", ("BIRD", "CHICKEN", "ROOSTER", "PENGUIN", "DUCK", "EAGLE", "OWL", "PARROT", "FLAMINGO", "DOVE",
              "SWAN", "PEACOCK", "TURKEY", "CHICK", "DODO")),
)


@dataclass(frozen=True)
class Emoji:
    """One emoji: its text, Unicode name, caption, zero-shot group ("" if none) and split."""

    text: str
    name: str
    caption: str
    group: str
    split: str


def find_emoji_font(path: str | Path | None = None) -> Path:
    """The Noto Color Emoji font: ``path``, ``$SPARSECLIP_EMOJI_FONT``, or the Debian location."""
    candidates = [path] if path else [os.environ.get("SPARSECLIP_EMOJI_FONT"), *FONT_PATHS]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise DataError(f"emoji font not found ({path or FONT_PATHS[0]}); install the Debian package "
                    "fonts-noto-color-emoji or pass --font")


def emoji_group(name: str) -> str:
    """The zero-shot group of a Unicode name ("" when none applies clearly)."""
    words = set(name.replace("-", " ").split())
    for group, keys in GROUPS:
        if words.intersection(keys):
            return group
    return ""


def _split(name: str, test_fraction: float = 0.2) -> str:
    h = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") / 2**32
    return "test" if h < test_fraction else "train"


def list_emoji(font_path: str | Path | None = None) -> list[Emoji]:
    """Every single-code-point emoji of the font that has a Unicode name, in code-point order."""
    try:
        from fontTools.ttLib import TTFont
    except ImportError:
        raise DataError("listing the emoji needs fontTools (pip install fonttools)") from None
    font = TTFont(str(find_emoji_font(font_path)), lazy=True)
    out = []
    for cp in sorted(font.getBestCmap()):
        ch = chr(cp)
        name = unicodedata.name(ch, "")
        if not name or cp < 0x80 or unicodedata.category(ch) in ("Mn", "Cf", "Zs", "Nd", "Cc"):
            continue
        if name.startswith(_SKIP_PREFIXES):
            continue
        out.append(Emoji(ch, name, name.lower(), emoji_group(name), _split(name)))
    if not out:
        raise DataError(f"no named emoji in {font_path}")
    return out


class EmojiRenderer:
    """Renders emoji with Pillow at the font's native size, then scales to ``size`` x ``size`` RGB."""

    def __init__(self, font_path: str | Path | None = None, size: int = 128):
        self.font = ImageFont.truetype(str(find_emoji_font(font_path)), FONT_SIZE)
        self.size = size
        self.complex_layout = features.check("raqm")  # sequences render as one glyph only with raqm

    def render(self, text: str, view: int = 0, seed: int = 0) -> Image.Image:
        """View 0: the glyph centred on white. Other views: scaled 60-95%, shifted, on a tinted background
        (a pure function of ``(text, view, seed)``)."""
        left, top, right, bottom = self.font.getbbox(text)
        w, h = max(1, right - left), max(1, bottom - top)
        glyph = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        ImageDraw.Draw(glyph).text((-left, -top), text, font=self.font, embedded_color=True)
        side = max(w, h) + 8
        if view == 0:
            canvas = Image.new("RGBA", (side, side), (255, 255, 255, 255))
            canvas.alpha_composite(glyph, ((side - w) // 2, (side - h) // 2))
            return canvas.convert("RGB").resize((self.size, self.size), Image.LANCZOS)
        rng = random.Random(f"emoji-view:{seed}:{text}:{view}")
        bg = tuple(rng.randint(150, 255) for _ in range(3)) + (255,)
        scale = rng.uniform(0.6, 0.95)
        gw, gh = max(1, int(w * scale)), max(1, int(h * scale))
        small = glyph.resize((gw, gh), Image.LANCZOS)
        canvas = Image.new("RGBA", (side, side), bg)
        canvas.alpha_composite(small, (rng.randint(0, side - gw), rng.randint(0, side - gh)))
        return canvas.convert("RGB").resize((self.size, self.size), Image.LANCZOS)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def import_emoji(out: str | Path, fmt: str = "csv", size: int = 128, views: int = 1, limit: int = 0,
                 font_path: str | Path | None = None, shard_size: int = 1000, seed: int = 0) -> dict:
    """Write the emoji set to ``out`` as CSV + PNGs or as webdataset shards; return a summary dict.

    ``limit`` keeps every n-th emoji so that about ``limit`` remain (for quick runs). ``views`` re-renderings
    are written for training emoji only; test emoji get view 0.
    """
    if fmt not in ("csv", "wds"):
        raise DataError(f"format must be csv or wds, got {fmt!r}")
    if size < 8 or views < 1:
        raise DataError("size must be >= 8 and views >= 1")
    items = list_emoji(font_path)
    if limit and limit < len(items):
        step = len(items) / limit
        items = [items[int(i * step)] for i in range(limit)]
    renderer = EmojiRenderer(font_path, size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, e in enumerate(items):
        for v in range(views if e.split == "train" else 1):
            rows.append({"key": f"{i:05d}_{v}", "emoji": e.text, "title": e.caption, "group": e.group,
                         "split": e.split, "view": v, "image": renderer.render(e.text, v, seed)})
    written = {split: _write(out, fmt, [r for r in rows if r["split"] == split], split, shard_size)
               for split in ("train", "test")}
    counts = {"emoji": len(items), "rows": len(rows), "train_emoji": sum(e.split == "train" for e in items),
              "test_emoji": sum(e.split == "test" for e in items), "grouped": sum(bool(e.group) for e in items)}
    return {"train_data": written["train"], "test_data": written["test"], **counts}


def _write(out: Path, fmt: str, rows: list[dict], split: str, shard_size: int) -> str:
    """Write one split; return what ``data.train_data`` should say to read it."""
    if fmt == "csv":
        (out / "images").mkdir(exist_ok=True)
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["filepath", "title", "emoji", "group", "split", "view"])
        for r in rows:
            path = f"images/{r['key']}.png"
            save_image(r["image"], out / path)
            w.writerow([path, r["title"], r["emoji"], r["group"], r["split"], r["view"]])
        write_text_atomic(out / f"{split}.csv", buf.getvalue())
        return str(out / f"{split}.csv")
    folder = out / "shards" / split
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for s in range(0, len(rows), shard_size):
        name = f"{s // shard_size:05d}.tar"
        chunk = rows[s:s + shard_size]
        with atomic_path(folder / name) as tmp, tarfile.open(tmp, "w") as tar:
            for r in chunk:
                meta = {k: r[k] for k in ("emoji", "group", "split", "view")}
                for ext, blob in (("png", _png(r["image"])), ("txt", r["title"].encode()),
                                  ("json", json.dumps(meta).encode())):
                    info = tarfile.TarInfo(f"{r['key']}.{ext}")
                    info.size = len(blob)
                    tar.addfile(info, io.BytesIO(blob))
        sizes[name] = len(chunk)
    write_text_atomic(folder / "sizes.json", json.dumps(sizes, indent=1))
    n = len(sizes)
    return str(folder / ("00000.tar" if n <= 1 else f"{{00000..{n - 1:05d}}}.tar"))
