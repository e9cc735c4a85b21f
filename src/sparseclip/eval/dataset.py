"""Evaluation on the user's own data: a CSV of image-caption pairs, an image folder, CLIP_benchmark's layout.

- **CSV** (the training format: ``filepath``/``title`` columns by default, paths relative to the CSV; several rows
  may share an image): retrieval both ways over the CSV's images and captions (CLIP_benchmark's recall@k, see
  :mod:`sparseclip.eval.retrieval`). With ``label_key`` (a column, e.g. ``category``): zero-shot classification
  over that column's values with prompt templates, and a linear probe on a deterministic split.
- **Image folder** / **CLIP_benchmark webdataset** (:func:`sparseclip.data.folder.load_eval_set`): zero-shot and a
  linear probe.

The linear probe's split is deterministic: within each class, images are ordered by a hash of their path (or
index) and alternate train / test, so every class with >= 2 images is on both sides.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..data.base import DataError, SkipSample
from ..data.folder import DEFAULT_TEMPLATES, read_template_file
from ..model import get_tokenizer
from ..model.embed import encode_images, encode_texts
from .linear_probe import linear_probe
from .retrieval import retrieval_metrics
from .sparsity import sparsity_stats
from .zeroshot import classifier_weights, zero_shot_eval

#: the default prompt templates for a label column (a small CLIP-style set)
LABEL_TEMPLATES = ("a photo of a {}.", "a picture of a {}.", "an image of a {}.", "{}")


@dataclass
class PairSet:
    """Unique images (PIL) of a CSV, their captions and which image each caption belongs to."""

    images: list = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    caption_image: list[int] = field(default_factory=list)
    labels: dict[str, list[str]] = field(default_factory=dict)  # label column -> per image value ("" = none)
    skipped: Counter = field(default_factory=Counter)
    codes: Any = None  # with ``encode``: the images' codes, chunks joined (the images themselves are not kept)


def load_csv_pairs(path: str | Path, img_key: str = "filepath", caption_key: str = "title", separator: str = ",",
                   label_keys: tuple[str, ...] | list[str] = (), limit: int = 0,
                   encode: Callable[[list], torch.Tensor] | None = None, chunk: int = 256,
                   shrink_to: int = 0) -> PairSet:
    """Read a CSV of image-caption pairs for evaluation; bad rows are skipped and counted.

    ``label_keys``: columns whose per-image values are kept (an image's value is taken from its first row); a
    column named twice is taken once.
    ``limit``: keep only the first ``limit`` distinct images (0: all) and their captions.
    ``encode``: images are encoded ``chunk`` at a time as they are read and only their codes are kept
    (``PairSet.codes``), so memory does not grow with the number of full-size photos.
    ``shrink_to``: images kept in memory whose shorter side exceeds it are resized (Lanczos) to that shorter side
    as they are read (the analysis keeps its images; 1,000 12-megapixel photos would need 36 GB).
    """
    from ..data.base import check_caption, decode_image

    path = Path(path)
    label_keys = tuple(dict.fromkeys(label_keys))
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter=separator)
            header = reader.fieldnames or []
            rows = list(reader)
    except FileNotFoundError:
        raise DataError(f"--data {path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"--data {path}: is a folder; analyse and index take a CSV file") from None
    except OSError as e:
        raise DataError(f"--data {path}: cannot read it ({e.strerror or type(e).__name__})") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"--data {path}: not a readable UTF-8 CSV ({type(e).__name__})") from None
    for key, what in ((img_key, "image"), (caption_key, "caption"), *((k, "label") for k in label_keys)):
        if key and key not in header:
            raise DataError(f"--data {path}: no {what} column {key!r} (columns: {', '.join(header)})")
    out = PairSet(labels={k: [] for k in label_keys})
    at: dict[str, int] = {}
    pending: list = []
    coded: list[torch.Tensor] = []
    for row in rows:
        src = (row.get(img_key) or "").strip()
        try:
            caption = check_caption(row.get(caption_key))
            if src not in at:
                if limit and len(out.ids) >= limit:
                    continue
                full = Path(src) if Path(src).is_absolute() else path.parent / src
                image = decode_image(full, lambda im: im)  # PIL RGB, fully read, or SkipSample
                if shrink_to and min(image.size) > shrink_to:
                    f = shrink_to / min(image.size)
                    image = image.resize((max(1, round(image.width * f)), max(1, round(image.height * f))),
                                         resample=Image.LANCZOS)
                if encode is None:
                    out.images.append(image)
                else:
                    pending.append(image)
                    if len(pending) >= chunk:
                        coded.append(encode(pending))
                        pending = []
                out.ids.append(src)
                for k in label_keys:
                    out.labels[k].append((row.get(k) or "").strip())
                at[src] = len(out.ids) - 1
        except SkipSample as e:
            out.skipped[e.reason] += 1
            continue
        out.captions.append(caption)
        out.caption_image.append(at[src])
    if encode is not None:
        if pending:
            coded.append(encode(pending))
        if coded and isinstance(coded[0], torch.Tensor):
            out.codes = torch.cat(coded)
        elif coded:  # e.g. scipy.sparse chunks (an index's codes)
            import scipy.sparse as sp

            out.codes = sp.vstack(coded, format="csr")
    if not out.ids or not out.captions:
        raise DataError(f"--data {path}: no usable image-caption pairs ({dict(out.skipped)})")
    return out


def probe_split(ids: list[str], targets: list[int]) -> tuple[list[int], list[int]]:
    """Deterministic train / test indices: per class, ordered by a hash of the id, alternating."""
    train, test = [], []
    for c in sorted(set(targets)):
        members = sorted((i for i, t in enumerate(targets) if t == c),
                         key=lambda i: hashlib.sha1(ids[i].encode()).hexdigest())
        train += members[0::2]
        test += members[1::2]
    return sorted(train), sorted(test)


def _classify(model, tokenizer, codes: torch.Tensor, ids: list[str], targets: list[int], classnames: list[str],
              templates: list[str], probe: bool) -> tuple[dict, dict | None]:
    weights = classifier_weights(model, tokenizer, classnames, templates)
    zs = zero_shot_eval(codes, weights, targets)
    lp = None
    tr, te = probe_split(ids, targets)
    if probe and len({targets[i] for i in tr}) >= 2 and te:
        lp = linear_probe(codes[tr], [targets[i] for i in tr], codes[te], [targets[i] for i in te])
        lp |= {"train": len(tr), "test": len(te)}
    return zs, lp


@torch.no_grad()
def evaluate_data(model, cfg, data: str | Path, label_key: str = "", templates: list[str] | None = None,
                  probe: bool = True, img_key: str | None = None, caption_key: str | None = None,
                  split: str = "test") -> dict:
    """Evaluate ``model`` on a CSV (retrieval; zero-shot and probe over ``label_key``) or an image folder /
    CLIP_benchmark set (zero-shot and probe). Returns the JSON-ready result."""
    model.eval()
    tokenizer = get_tokenizer(cfg.model, cfg.data.context_length)
    size = cfg.data.image_size
    data = Path(data)
    out: dict = {"dataset": {"path": str(data), "name": data.stem if data.is_file() else data.name}}
    if data.is_file():
        pairs = load_csv_pairs(data, img_key or cfg.data.csv_img_key, caption_key or cfg.data.csv_caption_key,
                               cfg.data.csv_separator, (label_key,) if label_key else (),
                               encode=lambda ims: encode_images(model, ims, size))
        img = pairs.codes
        txt = encode_texts(model, tokenizer, pairs.captions)
        out["dataset"] |= {"images": len(pairs.ids), "captions": len(pairs.captions),
                           "skipped": dict(pairs.skipped)}
        out["retrieval"] = retrieval_metrics(img, txt, pairs.caption_image)
        out["sparsity"] = {"image": sparsity_stats(img), "text": sparsity_stats(txt)}
        if label_key:
            labels = pairs.labels[label_key]
            keep = [i for i, lab in enumerate(labels) if lab]
            classnames = sorted({labels[i] for i in keep})
            if len(classnames) < 2:
                raise DataError(f"--label-key {label_key}: needs at least 2 distinct values, got {classnames}")
            tmpl = list(templates or LABEL_TEMPLATES)
            targets = [classnames.index(labels[i]) for i in keep]
            zs, lp = _classify(model, tokenizer, img[keep], [pairs.ids[i] for i in keep], targets, classnames,
                               tmpl, probe)
            out["dataset"] |= {"label_key": label_key, "classes": classnames, "templates": tmpl}
            out["zeroshot"] = {label_key: zs}
            out["zeroshot_mean_acc1"] = zs["acc1"]
            if lp is not None:
                out["linear_probe"] = {label_key: lp}
        return out
    if not data.exists():
        raise DataError(f"--data {data}: no such file or folder")
    from ..data.folder import load_eval_set

    skipped: Counter = Counter()
    task = load_eval_set(data, split=split, counts=skipped)
    present = sorted({task.classnames[t] for t in task.targets})
    if len(present) < 2:
        raise DataError(f"--data {data}: needs readable images of at least 2 classes for zero-shot "
                        f"classification, got {present}" + (f" (skipped {dict(skipped)})" if skipped else ""))
    tmpl = list(templates or task.templates or DEFAULT_TEMPLATES)
    img = encode_images(model, task.images, size)
    ids = [str(i) for i in range(len(task.images))]
    zs, lp = _classify(model, tokenizer, img, ids, list(task.targets), list(task.classnames), tmpl, probe)
    out["dataset"] |= {"images": len(task.images), "classes": list(task.classnames), "templates": tmpl,
                       "skipped": dict(skipped)}
    out["zeroshot"] = {"class": zs}
    out["zeroshot_mean_acc1"] = zs["acc1"]
    if lp is not None:
        out["linear_probe"] = {"class": lp}
    out["sparsity"] = {"image": sparsity_stats(img)}
    return out


def templates_from_file(path: str | Path) -> list[str]:
    """Prompt templates, one per line (``{}`` or CLIP_benchmark's ``{c}`` for the class); a line that does not
    format with exactly one class name is refused naming the file and line (:func:`read_template_file`)."""
    return read_template_file(path, flag="--templates ")


__all__ = ["LABEL_TEMPLATES", "PairSet", "evaluate_data", "load_csv_pairs", "probe_split", "templates_from_file"]
