"""Training dynamics: how sparsity, modality and feature meanings evolve over a run's checkpoints."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..eval.sparsity import active_mask, l0
from ..model.rundir import RunDir
from .alignment import alignment
from .inputs import AnalysisData, encode_model
from .modality import modality, modality_histogram
from .naming import name_features, term_scores
from .summary import Options


def checkpoint_stats(model, tokenizer, data: AnalysisData, features: list[int],
                     opts: Options | None = None) -> dict:
    """L0, active %, modality histogram, and the names / best concepts of ``features``, for one model."""
    opts = opts or Options()
    cs = encode_model("checkpoint", model, tokenizer, data)
    mod = modality(cs.image, cs.text, opts.tau, opts.n_min)
    feats = np.asarray(features, dtype=int)
    names = name_features(term_scores(cs.terms), data.vocab, feats)
    al = alignment(cs.image, data.concepts, data.concept_names, opts.tau, opts.n_min,
                   live=np.isin(np.arange(cs.dim), feats))
    return {
        "L0_image": l0(cs.image),
        "L0_text": l0(cs.text),
        "active_pct_image": 100.0 * float(active_mask(cs.image, opts.tau, opts.n_min).mean()),
        "multimodal_frac": mod.multimodal_fraction(opts.band),
        "modality_hist": modality_histogram(mod.image_share, mod.live),
        "names": {int(f): names.get(int(f), "") for f in feats},
        "best_concepts": {int(f): al.feature_best_concept.get(int(f), "") for f in feats},
        "best_aurocs": {int(f): al.feature_best_auroc.get(int(f), float("nan")) for f in feats},
    }


def training_dynamics(run_dir: str | Path, data: AnalysisData, features: list[int],
                      opts: Options | None = None, progress: bool = False) -> dict | None:
    """Per checkpoint of ``run_dir``: sparsity and modality, plus a drift table of ``features``.

    Returns None when the run kept no step checkpoints. The drift table has one entry per feature with
    its name, best concept and that concept's AUROC at every checkpoint.
    """
    from tqdm.auto import tqdm

    from ..model import get_tokenizer
    from ..model.checkpoint import load_model

    ckpts = RunDir(run_dir).checkpoints()
    if not ckpts:
        return None
    data = replace(data, task_images={}, task_targets={})  # class consistency is not tracked over time
    per = []
    for _step, path in tqdm(ckpts, desc="checkpoints", disable=not progress):
        model, cfg = load_model(path)
        per.append(checkpoint_stats(model, get_tokenizer(cfg.model), data, features, opts))
    steps = [s for s, _ in ckpts]
    drift = [{
        "id": int(f),
        "names": [p["names"][int(f)] for p in per],
        "best_concepts": [p["best_concepts"][int(f)] for p in per],
        "best_aurocs": [p["best_aurocs"][int(f)] for p in per],
    } for f in features]
    return {
        "steps": steps,
        "checkpoints": [str(p.name) for _, p in ckpts],
        "L0_image": [p["L0_image"] for p in per],
        "L0_text": [p["L0_text"] for p in per],
        "active_pct_image": [p["active_pct_image"] for p in per],
        "multimodal_frac": [p["multimodal_frac"] for p in per],
        "modality_hist": [p["modality_hist"] for p in per],
        "drift": drift,
    }
