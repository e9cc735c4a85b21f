"""Evaluation sets on disk: image folders and CLIP_benchmark's webdataset layout, as zero-shot tasks.

Both return a :class:`sparseclip.data.tasks.ZeroShotTask` (class names, prompt templates, PIL images, targets),
the object ``sparseclip.eval`` evaluates.

- **Image folder** (torchvision ``ImageFolder`` layout): ``root/<class>/<image>``; class names are the folder
  names (``_`` read as a space) in sorted order, or the lines of ``root/classnames.txt``.
- **CLIP_benchmark webdataset**: ``root/classnames.txt`` (one class per line), ``root/
  zeroshot_classification_templates.txt`` (one template per line, ``{c}`` for the class), and shards
  ``root/<split>/{0..n-1}.tar`` (``n`` from ``nshards.txt``, else every ``*.tar`` there) whose samples hold the
  class index in ``cls`` and the image in ``webp``/``png``/``jpg``/``jpeg``.

Templates come from ``zeroshot_classification_templates.txt`` or ``templates.txt`` in ``root`` when present,
else ``("a photo of a {}.",)``. Unreadable images are skipped and counted in ``counts``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from PIL import Image

from .base import DataError, SkipSample
from .tasks import ZeroShotTask

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
DEFAULT_TEMPLATES = ("a photo of a {}.",)
TEMPLATE_FILES = ("zeroshot_classification_templates.txt", "templates.txt")


def _lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def read_templates(root: Path) -> list[str]:
    """Prompt templates of an evaluation set, with ``{c}`` (CLIP_benchmark) rewritten as ``{}``."""
    for name in TEMPLATE_FILES:
        if (root / name).is_file():
            return [t.replace("{c}", "{}") for t in _lines(root / name)]
    return list(DEFAULT_TEMPLATES)


def _open_rgb(src: Path | bytes, counts: Counter) -> Image.Image | None:
    from .base import SkipSample, open_rgb

    try:
        return open_rgb(src)
    except SkipSample as e:  # unreadable: skipped and counted
        counts[e.reason] += 1
        return None


def load_image_folder(root: str | Path, limit: int = 0, counts: Counter | None = None) -> ZeroShotTask:
    """A zero-shot task from ``root/<class>/<image>`` (at most ``limit`` images per class when > 0)."""
    root = Path(root)
    counts = Counter() if counts is None else counts
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not folders:
        raise DataError(f"{root}: not an image folder (expected root/<class>/<image> sub-folders)")
    classnames = [f.name.replace("_", " ") for f in folders]
    if (root / "classnames.txt").is_file():
        classnames = _lines(root / "classnames.txt")
        if len(classnames) != len(folders):
            raise DataError(f"{root}/classnames.txt: {len(classnames)} names for {len(folders)} class folders")
    images, targets = [], []
    for target, folder in enumerate(folders):
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        for path in files[:limit] if limit > 0 else files:
            img = _open_rgb(path, counts)
            if img is not None:
                images.append(img)
                targets.append(target)
    if not images:
        raise DataError(f"{root}: no readable images")
    return ZeroShotTask(root.name, classnames, read_templates(root), images, targets)


def load_wds_benchmark(root: str | Path, split: str = "test", limit: int = 0,
                       counts: Counter | None = None) -> ZeroShotTask:
    """A zero-shot task from a CLIP_benchmark webdataset folder (at most ``limit`` images when > 0)."""
    from .wds import IMAGE_KEYS, shard_samples

    root = Path(root)
    counts = Counter() if counts is None else counts
    if not (root / "classnames.txt").is_file():
        raise DataError(f"{root}: no classnames.txt (not a CLIP_benchmark webdataset folder)")
    classnames = _lines(root / "classnames.txt")
    split_dir = root / split
    if (split_dir / "nshards.txt").is_file():
        n = int((split_dir / "nshards.txt").read_text().strip())
        shards = [split_dir / f"{i}.tar" for i in range(n)]
    else:
        shards = sorted(split_dir.glob("*.tar"), key=lambda p: (len(p.name), p.name))
    if not shards:
        raise DataError(f"{split_dir}: no shards")
    images, targets = [], []
    for shard in shards:
        for s in shard_samples(str(shard)):
            if limit and len(images) >= limit:
                break
            if isinstance(s, SkipSample):
                counts[s.reason] += 1
                continue
            key = next((k for k in IMAGE_KEYS if k in s), None)
            try:
                target = int(s["cls"].decode().strip())
            except (KeyError, ValueError, UnicodeDecodeError):
                counts["bad_label"] += 1
                continue
            if key is None or not 0 <= target < len(classnames):
                counts["missing_image" if key is None else "bad_label"] += 1
                continue
            img = _open_rgb(s[key], counts)
            if img is not None:
                images.append(img)
                targets.append(target)
    if not images:
        raise DataError(f"{split_dir}: no readable samples")
    return ZeroShotTask(root.name, classnames, read_templates(root), images, targets)


def load_eval_set(path: str | Path, split: str = "test", limit: int = 0,
                  counts: Counter | None = None) -> ZeroShotTask:
    """An image folder or a CLIP_benchmark webdataset folder (told apart by ``<split>/`` holding shards)."""
    path = Path(path)
    if (path / split).is_dir() and any((path / split).glob("*.tar")):
        return load_wds_benchmark(path, split, limit, counts)
    return load_image_folder(path, limit, counts)
