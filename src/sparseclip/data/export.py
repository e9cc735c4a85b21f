"""Data sets written out as a user's: PNG files and CSVs of image-caption pairs with label columns, in the training
CSV format, for trying every ``--data`` command (train, eval, analyze, index) on files without preparing any.
``sparseclip import-world``: the procedural world; ``sparseclip import-digits``: scikit-learn's handwritten digits
(1,797 real 8x8 scans that ship inside the scikit-learn wheel, ten classes), a real labelled set the analysis was
not developed on."""

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
        summary.update(_finish(out, split, buf, n))
    return summary


def _finish(out: Path, split: str, buf: io.StringIO, n: int) -> dict:
    write_text_atomic(out / f"{split}.csv", buf.getvalue())
    return {f"{split}_data": str(out / f"{split}.csv"), f"{split}_images": n}


DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: caption templates of the digits set: the first is every image's, the others paraphrases (``captions``)
DIGIT_TEMPLATES = ("a handwritten {word}", "the digit {word}, written by hand", "a scanned handwritten number {n}",
                   "the number {word} in pen")


def import_digits(out: str | Path, size: int = 64, captions: int = 2, test_every: int = 5) -> dict:
    """Write ``OUT/train.csv`` and ``OUT/test.csv`` (+ ``OUT/images/``) from scikit-learn's handwritten digits:
    each 8x8 scan as dark ink on white, upsampled to ``size`` pixels; every ``test_every``-th image is a test
    image (a fixed split, each class in both); ``captions`` rows per image from :data:`DIGIT_TEMPLATES`;
    label columns digit (its word) and parity. Returns a summary."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    if size < 8 or not 1 <= captions <= len(DIGIT_TEMPLATES) or test_every < 2:
        raise DataError(f"need size >= 8, 1 <= captions <= {len(DIGIT_TEMPLATES)} and test_every >= 2")
    digits = load_digits()
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    bufs = {split: io.StringIO() for split in ("train", "test")}
    writers = {split: csv.writer(buf, lineterminator="\n") for split, buf in bufs.items()}
    for w in writers.values():
        w.writerow(("filepath", "title", "digit", "parity"))
    counts = {"train": 0, "test": 0}
    for i, (scan, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        split = "test" if i % test_every == 0 else "train"
        ink = (255 - np.clip(scan, 0, 16) * 255 / 16).astype(np.uint8)
        path = f"images/{split}_{i:04d}.png"
        save_image(Image.fromarray(ink, "L").convert("RGB").resize((size, size), Image.BICUBIC), out / path)
        word = DIGIT_WORDS[int(label)]
        for template in DIGIT_TEMPLATES[:captions]:
            writers[split].writerow((path, template.format(word=word, n=int(label)), word,
                                     "even" if label % 2 == 0 else "odd"))
        counts[split] += 1
    summary = {}
    for split, buf in bufs.items():
        summary.update(_finish(out, split, buf, counts[split]))
    return summary
