"""Evaluation with CLIP_benchmark semantics: zero-shot classification, retrieval, linear probe, sparsity.

``evaluate(model, cfg)`` runs everything on the procedural world's validation sets and returns a
JSON-serialisable dict.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import Config
from ..data.tasks import TASK_NAMES, retrieval_set, zero_shot_task
from ..model import SparseCLIP, get_tokenizer
from ..model.embed import encode_images, encode_texts
from .linear_probe import linear_probe
from .retrieval import retrieval_metrics
from .sparsity import sparsity_stats
from .zeroshot import classification_metrics, classifier_weights, zero_shot_eval

__all__ = ["classification_metrics", "classifier_weights", "evaluate", "linear_probe", "retrieval_metrics",
           "sparsity_stats", "zero_shot_eval"]


def evaluate(model: SparseCLIP, cfg: Config, tasks: tuple[str, ...] = TASK_NAMES, progress: bool = True,
             probe: bool = True) -> dict:
    """Zero-shot per task, retrieval, linear probe per task and per-modality sparsity, on validation data."""
    t0 = time.time()
    model.eval()
    tokenizer = get_tokenizer(cfg.model, cfg.data.context_length)
    size, n_val, n_probe = cfg.data.image_size, cfg.data.num_val, cfg.data.num_probe_train
    out: dict = {"zeroshot": {}, "linear_probe": {}}
    with tqdm(total=len(tasks) + 1, desc="eval", disable=not progress, leave=False) as bar:  # closed on errors too
        image_code_batches = []
        for task in tasks:
            val = zero_shot_task(task, n_val, seed=cfg.data.val_seed, image_size=size)
            codes = encode_images(model, val.images, size)
            image_code_batches.append(codes)
            weights = classifier_weights(model, tokenizer, val.classnames, val.templates)
            out["zeroshot"][task] = zero_shot_eval(codes, weights, val.targets)
            if probe:
                train = zero_shot_task(task, n_probe, seed=cfg.data.train_seed, image_size=size)
                train_codes = encode_images(model, train.images, size)
                out["linear_probe"][task] = linear_probe(train_codes, train.targets, codes, val.targets)
            bar.update(1)
        ret = retrieval_set(n_val, seed=cfg.data.val_seed, image_size=size, max_objects=cfg.data.max_objects)
        img_codes = encode_images(model, ret.images, size)
        txt_codes = encode_texts(model, tokenizer, ret.captions)
        out["retrieval"] = retrieval_metrics(img_codes, txt_codes, ret.caption_image)
        bar.update(1)
    out["zeroshot_mean_acc1"] = float(np.mean([v["acc1"] for v in out["zeroshot"].values()]))
    if probe:
        out["linear_probe_mean_acc1"] = float(np.mean([v["acc1"] for v in out["linear_probe"].values()]))
    out["sparsity"] = {
        "image": sparsity_stats(torch.cat([img_codes, *image_code_batches])),
        "text": sparsity_stats(txt_codes),
    }
    out["eval_seconds"] = time.time() - t0
    return out
