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
else ``("a photo of a {}.",)``; each line must hold exactly one placeholder (see :func:`read_template_file`).
Unreadable images are skipped and counted in ``counts``.
"""

from __future__ import annotations

import string
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


def _template_problem(template: str) -> str:
    """Why ``template`` cannot be formatted with exactly one class name ("" when it can)."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:  # e.g. "Single '{' encountered in format string"
        return f"unbalanced braces ({e})"
    unknown = [f for f in fields if f not in ("", "0")]
    if unknown:
        return f"unknown placeholder {{{unknown[0]}}}"
    if len(fields) != 1:
        return f"{len(fields)} placeholders"
    try:
        template.format("class")
    except (ValueError, IndexError, KeyError, AttributeError) as e:  # e.g. a nested format spec {:{}}
        return f"it cannot be formatted ({type(e).__name__}: {e})"
    return ""


def read_template_file(path: str | Path, flag: str = "") -> list[str]:
    """Prompt templates from a file, one per line (blank lines ignored). The class name goes where ``{}`` (or
    CLIP_benchmark's ``{c}``, rewritten as ``{}``, or ``{0}``) stands; a line with no placeholder, two, an
    unknown name or unbalanced braces is refused in one line naming the file and the line number (``flag``,
    e.g. ``"--templates "``, is put before the file name)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{flag}{path}: cannot read the templates ({type(e).__name__})") from None
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        template = line.strip().replace("{c}", "{}")
        problem = _template_problem(template)
        if problem:
            raise DataError(f"{flag}{path} line {number}: {problem} in {line.strip()!r}; each line needs exactly "
                            "one {} (or {c}) where the class name goes ({{ and }} for literal braces)")
        out.append(template)
    if not out:
        raise DataError(f"{flag}{path}: no templates (one per line, with {{}} where the class name goes)")
    return out


def read_templates(root: Path) -> list[str]:
    """Prompt templates of an evaluation set (:func:`read_template_file` of its templates file), else the
    default."""
    for name in TEMPLATE_FILES:
        if (root / name).is_file():
            return read_template_file(root / name)
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
