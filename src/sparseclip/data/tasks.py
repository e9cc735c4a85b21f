"""Evaluation sets derived from the procedural world: zero-shot tasks and a retrieval set.

Zero-shot tasks (CLIP_benchmark style: class names + prompt templates):
``color``, ``shape``, ``size``, ``position`` on single-object scenes, ``count`` on 1-3 objects.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from .world import COLORS, COUNT_WORDS, POSITIONS, SHAPES, SIZES, World


@dataclass
class ZeroShotTask:
    """A classification task: images, integer targets, class names and prompt templates."""

    name: str
    classnames: list[str]
    templates: list[str]
    images: list[Image.Image]
    targets: list[int]


TASK_SPECS: dict[str, tuple[list[str], list[str]]] = {
    "color": (list(COLORS), ["a {} shape.", "a {} object.", "a picture of something {}."]),
    "shape": (list(SHAPES), ["a {}.", "a picture of a {}.", "a {} on a background."]),
    "size": (list(SIZES), ["a {} shape.", "a {} object."]),
    "position": (list(POSITIONS), ["a shape at the {}.", "an object in the {}."]),
    "count": ([f"{w} shape" + ("s" if n > 1 else "") for n, w in COUNT_WORDS.items()],
              ["{}.", "a picture of {}.", "{} on a background."]),
}
TASK_NAMES = tuple(TASK_SPECS)


def task_labels(world: World, index: int, task: str) -> tuple[int, object]:
    """(target, scene) for ``task`` at ``index``: the class is balanced by ``index`` modulo classes."""
    classnames, _ = TASK_SPECS[task]
    target = index % len(classnames)
    if task == "count":
        w = World(world.seed, world.image_size, max_objects=target + 1, min_objects=target + 1)
        return target, w.scene(index)
    single = World(world.seed, world.image_size, max_objects=1)
    return target, single.scene(index, **{task: classnames[target]})


def zero_shot_task(task: str, n: int, seed: int, image_size: int = 32) -> ZeroShotTask:
    """``n`` balanced, deterministic examples of a zero-shot task (seeded separately per task)."""
    if task not in TASK_SPECS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASK_NAMES)}")
    classnames, templates = TASK_SPECS[task]
    world = World(seed=hash_seed(seed, task), image_size=image_size)
    images, targets = [], []
    for i in range(n):
        target, scene = task_labels(world, i, task)
        images.append(world.render(scene, i))
        targets.append(target)
    return ZeroShotTask(task, list(classnames), list(templates), images, targets)


def hash_seed(seed: int, name: str) -> int:
    """A stable derived seed (independent of PYTHONHASHSEED)."""
    h = seed * 1_000_003
    for ch in name:
        h = (h * 31 + ord(ch)) % (2**31 - 1)
    return h


@dataclass
class RetrievalSet:
    """Images, captions, and for each caption the index of its image (CLIP_benchmark layout)."""

    images: list[Image.Image]
    captions: list[str]
    caption_image: list[int]
    labels: list[frozenset[str]]


def retrieval_set(n: int, seed: int, image_size: int = 32, captions_per_image: int = 2,
                  max_objects: int = 3) -> RetrievalSet:
    """``n`` validation scenes, each with ``captions_per_image`` paraphrased captions."""
    world = World(seed=hash_seed(seed, "retrieval"), image_size=image_size, max_objects=max_objects)
    images, captions, owner, labels = [], [], [], []
    for i in range(n):
        scene = world.scene(i)
        images.append(world.render(scene, i))
        labels.append(scene.labels)
        caps = [scene.caption] + world.captions(scene, captions_per_image - 1, i)
        for c in caps:
            captions.append(c)
            owner.append(i)
    return RetrievalSet(images, captions, owner, labels)
