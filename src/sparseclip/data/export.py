"""The procedural world written out as a user's data set: PNG files and CSVs of image-caption pairs with label
columns, in the training CSV format. For trying every ``--data`` command (train, eval, analyze, index) on files
without preparing any; ``sparseclip import-world``."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..files.atomic import save_image, write_text_atomic
from .base import DataError
from .world import World

#: the CSV's columns: the image, its caption, and one label column per attribute of the (single) shape
COLUMNS = ("filepath", "title", "shape", "color", "size", "position", "background")


def import_world(out: str | Path, n_train: int = 2000, n_test: int = 300, size: int = 32, captions: int = 2,
                 train_seed: int = 0, test_seed: int = 1) -> dict:
    """Write ``OUT/train.csv`` and ``OUT/test.csv`` (+ ``OUT/images/``): one-shape scenes of the world (training
    scenes from ``train_seed``, test scenes from ``test_seed``), ``captions`` rows per image (the scene's caption
    and paraphrases), label columns shape, color, size, position, background. Returns a summary."""
    if n_train < 1 or n_test < 1 or size < 8 or captions < 1:
        raise DataError("need n_train >= 1, n_test >= 1, size >= 8 and captions >= 1")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    summary = {}
    for split, n, seed in (("train", n_train, train_seed), ("test", n_test, test_seed)):
        world = World(seed=seed, image_size=size, max_objects=1)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(COLUMNS)
        for i in range(n):
            scene = world.scene(i)
            obj = scene.objects[0]
            path = f"images/{split}_{i:06d}.png"
            save_image(world.render(scene, i), out / path)
            for caption in [scene.caption, *world.captions(scene, captions - 1, i)]:
                w.writerow([path, caption, obj.shape, obj.color, obj.size, obj.position, scene.background])
        write_text_atomic(out / f"{split}.csv", buf.getvalue())
        summary[f"{split}_data"] = str(out / f"{split}.csv")
        summary[f"{split}_images"] = n
    return summary
