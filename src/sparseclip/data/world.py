"""The procedural world: images of 1-3 coloured shapes with captions and ground-truth concept labels.

Everything is a pure function of ``(seed, index)``, so a dataset needs no files, is identical on every
machine, and training can resume at any step without data-loader state. Train and validation use
different seeds.

Concept labels are strings ``"kind:value"``, e.g. ``"color:red"``, ``"shape:star"``, ``"size:small"``,
``"position:top left"``, ``"count:2"``, ``"background:dark"``.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 230),
    "yellow": (235, 215, 40),
    "purple": (150, 60, 200),
    "orange": (245, 140, 30),
}
SHAPES = ("circle", "square", "triangle", "star", "cross")
SIZES = ("small", "large")
POSITIONS: dict[str, tuple[float, float]] = {
    "top left": (0.27, 0.27),
    "top right": (0.73, 0.27),
    "bottom left": (0.27, 0.73),
    "bottom right": (0.73, 0.73),
    "center": (0.5, 0.5),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {"dark": (25, 25, 30), "light": (225, 225, 220)}
COUNT_WORDS = {1: "one", 2: "two", 3: "three"}

#: every ground-truth concept the world can show
CONCEPTS: list[str] = (
    [f"color:{c}" for c in COLORS]
    + [f"shape:{s}" for s in SHAPES]
    + [f"size:{s}" for s in SIZES]
    + [f"position:{p}" for p in POSITIONS]
    + [f"count:{n}" for n in COUNT_WORDS]
    + [f"background:{b}" for b in BACKGROUNDS]
)

SINGLE_TEMPLATES = (
    "a {size} {color} {shape} at the {where}",
    "a {color} {shape}",
    "a picture of a {size} {color} {shape} on a {bg} background",
    "there is a {color} {shape} in the {where}",
    "{size} {color} {shape}, {where}",
    "a {shape} that is {color}",
    "one shape: a {color} {shape}",
    "a {color} {shape} on a {bg} background",
)
MULTI_TEMPLATES = (
    "{count} shapes: {list}",
    "{list_where}",
    "a picture of {count} shapes on a {bg} background: {list}",
    "{count} objects, {list}",
)


@dataclass(frozen=True)
class Obj:
    """One shape in a scene."""

    color: str
    shape: str
    size: str
    position: str
    jitter: tuple[float, float] = (0.0, 0.0)
    angle: float = 0.0

    @property
    def phrase(self) -> str:
        return f"a {self.color} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """A sampled scene: objects, background, a caption and the ground-truth concept labels."""

    objects: tuple[Obj, ...]
    background: str
    caption: str
    labels: frozenset[str] = field(default_factory=frozenset)

    @property
    def count(self) -> int:
        return len(self.objects)


def _where(position: str) -> str:
    return "center" if position == "center" else position


def _caption(objs: tuple[Obj, ...], bg: str, rng: random.Random) -> str:
    return re.sub(r"\ba (?=[aeiou])", "an ", _raw_caption(objs, bg, rng))


def _raw_caption(objs: tuple[Obj, ...], bg: str, rng: random.Random) -> str:
    if len(objs) == 1:
        o = objs[0]
        t = rng.choice(SINGLE_TEMPLATES)
        return t.format(size=o.size, color=o.color, shape=o.shape, where=_where(o.position), bg=bg)
    phrases = [o.phrase for o in objs]
    lst = ", ".join(phrases[:-1]) + " and " + phrases[-1]
    lst_where = ", ".join(f"{o.phrase} at the {_where(o.position)}" for o in objs[:-1])
    lst_where += f" and {objs[-1].phrase} at the {_where(objs[-1].position)}"
    t = rng.choice(MULTI_TEMPLATES)
    return t.format(count=COUNT_WORDS[len(objs)], list=lst, list_where=lst_where, bg=bg)


def scene_labels(objs: tuple[Obj, ...], bg: str) -> frozenset[str]:
    """Ground-truth concept labels of a scene (union over its objects)."""
    labels = {f"count:{len(objs)}", f"background:{bg}"}
    for o in objs:
        labels |= {f"color:{o.color}", f"shape:{o.shape}", f"size:{o.size}", f"position:{o.position}"}
    return frozenset(labels)


class World:
    """A deterministic generator of scenes.

    ``World(seed).scene(i)`` always returns the same scene; ``render(scene)`` draws it.
    ``min_objects``/``max_objects`` bound the number of shapes (1-3).
    """

    def __init__(self, seed: int = 0, image_size: int = 32, max_objects: int = 3, min_objects: int = 1):
        if not 1 <= min_objects <= max_objects <= 3:
            raise ValueError(f"need 1 <= min_objects <= max_objects <= 3, got {min_objects}, {max_objects}")
        self.seed = seed
        self.image_size = image_size
        self.min_objects = min_objects
        self.max_objects = max_objects

    def _rng(self, index: int) -> random.Random:
        # A string seed is hashed deterministically (sha512) by random.Random, unlike tuples.
        return random.Random(f"world:{self.seed}:{index}")

    def scene(self, index: int, **fixed: str) -> Scene:
        """The scene at ``index``. Keyword arguments fix properties of the first object
        (``color=``, ``shape=``, ``size=``, ``position=``) or the ``background=``."""
        rng = self._rng(index)
        n = rng.randint(self.min_objects, self.max_objects)
        positions = rng.sample(list(POSITIONS), n)
        if "position" in fixed and fixed["position"] not in positions[:1]:
            positions = [fixed["position"]] + [p for p in positions if p != fixed["position"]][: n - 1]
        objs = []
        for k in range(n):
            first = k == 0
            objs.append(Obj(
                color=fixed["color"] if first and "color" in fixed else rng.choice(list(COLORS)),
                shape=fixed["shape"] if first and "shape" in fixed else rng.choice(SHAPES),
                size=fixed["size"] if first and "size" in fixed else rng.choice(SIZES),
                position=positions[k],
                jitter=(rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05)),
                angle=rng.uniform(-0.3, 0.3),
            ))
        bg = fixed.get("background") or rng.choice(list(BACKGROUNDS))
        objs_t = tuple(objs)
        return Scene(objs_t, bg, _caption(objs_t, bg, rng), scene_labels(objs_t, bg))

    def captions(self, scene: Scene, n: int, index: int = 0) -> list[str]:
        """``n`` further captions of the same scene, paraphrases that differ from ``scene.caption``
        and from each other where the templates allow it."""
        rng = random.Random(f"captions:{self.seed}:{index}")
        out: list[str] = []
        for _ in range(n):
            cap = _caption(scene.objects, scene.background, rng)
            for _retry in range(8):
                if cap != scene.caption and cap not in out:
                    break
                cap = _caption(scene.objects, scene.background, rng)
            out.append(cap)
        return out

    def render(self, scene: Scene, index: int = 0) -> Image.Image:
        """Draw a scene (2x supersampled, then downscaled for anti-aliasing)."""
        ss = 2
        size = self.image_size * ss
        rng = random.Random(f"render:{self.seed}:{index}")
        base = BACKGROUNDS[scene.background]
        bg = tuple(max(0, min(255, c + rng.randint(-12, 12))) for c in base)
        img = Image.new("RGB", (size, size), bg)
        draw = ImageDraw.Draw(img)
        for o in scene.objects:
            col = tuple(max(0, min(255, c + rng.randint(-15, 15))) for c in COLORS[o.color])
            cx, cy = POSITIONS[o.position]
            cx, cy = (cx + o.jitter[0]) * size, (cy + o.jitter[1]) * size
            r = size * (0.10 if o.size == "small" else 0.19)
            _draw_shape(draw, o.shape, cx, cy, r, o.angle, col)
        return img.resize((self.image_size, self.image_size), Image.BOX)

    def sample(self, index: int) -> tuple[Image.Image, str, frozenset[str]]:
        """(image, caption, labels) at ``index``."""
        s = self.scene(index)
        return self.render(s, index), s.caption, s.labels


def _polygon(cx: float, cy: float, r: float, angle: float, pts: list[tuple[float, float]]):
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * ca - y * sa), cy + r * (x * sa + y * ca)) for x, y in pts]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, angle: float,
                col: tuple) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col)
    elif shape == "square":
        s = 0.85
        draw.polygon(_polygon(cx, cy, r, angle, [(-s, -s), (s, -s), (s, s), (-s, s)]), fill=col)
    elif shape == "triangle":
        pts = [(0.0, -1.0), (0.95, 0.75), (-0.95, 0.75)]
        draw.polygon(_polygon(cx, cy, r, angle, pts), fill=col)
    elif shape == "star":
        pts = []
        for k in range(10):
            rad = 1.0 if k % 2 == 0 else 0.42
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((rad * math.cos(a), rad * math.sin(a)))
        draw.polygon(_polygon(cx, cy, r, angle, pts), fill=col)
    elif shape == "cross":
        w = 0.33
        pts = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w),
               (-1, -w), (-w, -w)]
        draw.polygon(_polygon(cx, cy, r, angle, pts), fill=col)
    else:  # pragma: no cover - guarded by SHAPES
        raise ValueError(f"unknown shape {shape!r}")
