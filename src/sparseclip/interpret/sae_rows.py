"""SAE baseline rows of ``analyze --sae``: SAEs at the analysed model's L0, in the two spaces a user would train
them in, trained until their loss curve is flat (or said not to be).

- On the **dense head's embeddings** (image and caption embeddings share one SAE, as the Sparse CLIP's codes
  share one space): TopK and BatchTopK with k = the model's image L0, and ReLU + L1 with its coefficient found
  for that L0 (:func:`~sparseclip.sae.suite.train_at_l0`).
- On the **towers' features** (the heads' own input): a TopK SAE per modality (image and text towers differ in
  width, so their features share no ids: a cross-modal metric must find chance on this row).

Each row carries its held-out unexplained variance (``fvu_image``, ``fvu_text``), the L0 it reached, and
``converged`` (the FVU fell by less than :data:`~sparseclip.sae.metrics.FLAT_FVU` over the last 10% of steps
before the learning-rate decay, :func:`~sparseclip.sae.metrics.convergence`).
"""

from __future__ import annotations

import numpy as np
import torch

from .inputs import AnalysisData, CodeSet, _np, derived_codes, first_captions, heads_off

#: the largest k of the L0-matched SAEs (a TopK SAE with k in the thousands is neither sparse nor cheap)
MAX_MATCHED_K = 256
#: the SAE kinds trained on the dense head's embeddings
DENSE_KINDS = ("topk", "batchtopk", "relu")


class SAERowsError(ValueError):
    """SAE rows that cannot be built, in one line."""


def training_pairs(dcfg, n: int) -> tuple[list, list[str]]:
    """``n`` training images of the world and their captions (the SAEs' training data on the world)."""
    from ..data.world import World

    world = World(seed=dcfg.data.train_seed, image_size=dcfg.data.image_size)
    imgs, caps = [], []
    for i in range(n):
        img, cap, _ = world.sample(i)
        imgs.append(img)
        caps.append(cap)
    return imgs, caps


def training_csv_pairs(dcfg, n: int, data: AnalysisData) -> tuple[list, list[str], str]:
    """Up to ``n`` images of the dense run's training CSV (``data.train_data``) with their first captions, and
    what the SAEs were trained on, in words. Without a readable training CSV (a webdataset run, a moved file)
    the SAEs fall back to the analysed images themselves, and the words say their FVU is then not held out."""
    from ..data.base import DataError
    from ..data.sources import DATA_FORMATS

    d = dcfg.data
    fmt = DATA_FORMATS.get(d.kind) if d.kind in DATA_FORMATS else None  # a format registered by the dense run
    path = d.train_data if fmt is not None and fmt.reads_files else ""
    if fmt is not None and path:
        try:
            pairs = fmt.pairs(path, d, option="data.train_data", limit=n, shrink_to=max(2 * d.image_size, 256))
        except (DataError, OSError):
            pairs = None
        if pairs is not None and len(pairs.images) >= 2:
            words = f"{len(pairs.images)} images of the training CSV {path} and their captions"
            return pairs.images, first_captions(pairs), words
    return (data.images, data.captions, f"the {len(data.images)} analysed images and their captions (no "
            "readable training CSV in the dense run's config: the FVU is then measured on the training images)")


def _encode(model, cfg, images, captions, towers: bool) -> tuple[np.ndarray, np.ndarray]:
    from ..model import get_tokenizer
    from ..model.embed import encode_images, encode_texts

    def run():
        return (_np(encode_images(model, images, cfg.data.image_size)),
                _np(encode_texts(model, get_tokenizer(cfg.model), captions)))

    if not towers:
        return run()
    with heads_off(model):
        return run()


def sae_codesets(dense_cs: CodeSet, dense: tuple, sparse_model: tuple, tower_cs: CodeSet, data: AnalysisData,
                 width: int, match_l0: float, steps: int, n_train: int, on_csv: bool, notes: list[str],
                 progress: bool = False) -> list[CodeSet]:
    """The SAE rows (see the module docstring). ``dense`` / ``sparse_model``: ``(model, config)``; ``tower_cs``:
    the towers' outputs on ``data`` (:func:`~sparseclip.interpret.inputs.tower_features`)."""
    try:
        from ..sae.suite import train_at_l0
    except ImportError:
        raise SAERowsError("--sae needs the sparseclip.sae package, which this installation lacks") from None
    from tqdm.auto import tqdm

    if on_csv:  # the user's CSV: the SAEs learn on the runs' own training CSV, as the analysed model did
        imgs, caps, trained_on = training_csv_pairs(dense[1], n_train, data)
    else:
        imgs, caps = training_pairs(dense[1], n_train)
        trained_on = f"{n_train} training images and their captions"
    k = max(1, min(width, round(match_l0), MAX_MATCHED_K))
    matched = (f"k = {k}, the analysed model's image L0" if k == round(match_l0)
               else f"k = {k}: the model's image L0 {match_l0:.0f} capped at {MAX_MATCHED_K}")
    x_img, x_txt = _encode(*dense, imgs, caps, towers=False)
    t_img, t_txt = _encode(*sparse_model, imgs, caps, towers=True)
    out: list[CodeSet] = []
    bar = tqdm(total=len(DENSE_KINDS) + 2, desc="SAEs", disable=not progress)
    for kind in DENSE_KINDS:
        s = train_at_l0(kind, (x_img, x_txt), width, k, steps=steps)
        cs = derived_codes(f"SAE {kind} on dense embeddings", dense_cs, s.encode)
        cs.extra = _sae_extra(s, (("image", dense_cs.image), ("text", dense_cs.text)))
        out.append(cs)
        bar.update()
    sides = {}
    for side, x in (("image", t_img), ("text", t_txt)):
        sides[side] = train_at_l0("topk", x, width, k, steps=steps)
        bar.update()
    bar.close()
    si, st = sides["image"], sides["text"]

    def enc(s, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            parts = [_np(s.encode(torch.as_tensor(x[i:i + 4096], dtype=torch.float32)))
                     for i in range(0, len(x), 4096)]
        return np.concatenate(parts) if parts else np.zeros((0, width), dtype=np.float32)

    cs = CodeSet("SAE topk on tower features (one per modality)", enc(si, tower_cs.image), enc(st, tower_cs.text),
                 enc(st, tower_cs.terms), {t: enc(si, v) for t, v in tower_cs.tasks.items()})
    cs.extra = _sae_extra(si, (("image", tower_cs.image),)) | {
        k2: v for k2, v in _sae_extra(st, (("text", tower_cs.text),)).items()}
    out.append(cs)
    notes.append(f"SAEs at the analysed model's L0 ({matched}; ReLU + L1: coefficient found for that L0), width "
                 f"{width}, {steps} steps on {trained_on}: TopK, BatchTopK and ReLU + L1 on the dense head's "
                 "embeddings (one SAE for images and captions), and a TopK SAE per modality on the towers' "
                 "features (no shared ids across modalities). fvu_* = held-out unexplained variance; "
                 "sae_converged = the FVU fell by < 0.005 over the last 10% of steps before the decay")
    return out


def _sae_extra(sae, held_out) -> dict:
    """``fvu_<side>`` on held-out codes and whether the loss curve had flattened."""
    from ..sae.metrics import convergence

    extra: dict = {}
    for side, x in held_out:
        conv = convergence(sae, x)
        extra[f"fvu_{side}"] = conv["fvu"]
        extra[f"sae_fvu_drop_{side}"] = conv["fvu_drop"]
        extra[f"sae_converged_{side}"] = float(conv["converged"])
    extra["sae_k_or_l1"] = sae.cfg.sparsity_setting
    return extra

