"""Evaluation on the user's own data: a file of image-caption pairs, an image folder, CLIP_benchmark's layout.

- **A file of pairs**, read by its data format's entry (:func:`sparseclip.data.sources.read_data_pairs`): a CSV
  (the training format: ``filepath``/``title`` columns by default, paths relative to the CSV; several rows may
  share an image) or a file of another registered format: retrieval both ways over its images and captions
  (CLIP_benchmark's recall@k, see :mod:`sparseclip.eval.retrieval`). With ``label_key`` (a label column, e.g.
  ``category``): zero-shot classification over that column's values with prompt templates, and a linear probe on
  a deterministic split.
- **Image folder** / **CLIP_benchmark webdataset** (:func:`sparseclip.data.folder.load_eval_set`): zero-shot and a
  linear probe.

The linear probe's split is deterministic: within each class, images are ordered by a hash of their path (or
index) and alternate train / test, so every class with >= 2 images is on both sides.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch

from ..data.base import DataError
from ..data.folder import DEFAULT_TEMPLATES, read_template_file
from ..data.pairs import PairSet
from ..data.sources import read_data_pairs
from ..model import get_tokenizer
from ..model.embed import encode_images, encode_texts
from .linear_probe import linear_probe
from .retrieval import retrieval_metrics
from .sparsity import sparsity_stats
from .zeroshot import classifier_weights, zero_shot_eval

#: the default prompt templates for a label column (a small CLIP-style set)
LABEL_TEMPLATES = ("a photo of a {}.", "a picture of a {}.", "an image of a {}.", "{}")


def load_csv_pairs(path: str | Path, img_key: str = "filepath", caption_key: str = "title", separator: str = ",",
                   label_keys: tuple[str, ...] | list[str] = (), limit: int = 0,
                   encode: Callable[[list], torch.Tensor] | None = None, chunk: int = 256,
                   shrink_to: int = 0) -> PairSet:
    """The pairs of a data file for evaluation, with these CSV columns: :func:`~sparseclip.data.sources.
    read_data_pairs` (the file's format entry reads it; a CSV through the one CSV reader); bad rows are skipped
    and counted. ``label_keys``, ``limit``, ``encode``, ``chunk``, ``shrink_to``: see
    :func:`~sparseclip.data.pairs.collect_pairs`."""
    return read_data_pairs(path, option="--data", label_keys=label_keys, limit=limit, encode=encode, chunk=chunk,
                           shrink_to=shrink_to, csv_img_key=img_key, csv_caption_key=caption_key,
                           csv_separator=separator)


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
        pairs = read_data_pairs(data, cfg.data, label_keys=(label_key,) if label_key else (),
                                encode=lambda ims: encode_images(model, ims, size),
                                csv_img_key=img_key or cfg.data.csv_img_key,
                                csv_caption_key=caption_key or cfg.data.csv_caption_key)
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
