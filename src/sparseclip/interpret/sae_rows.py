"""SAE baseline rows of ``analyze --sae``: SAEs at the analysed model's L0, in the two spaces a user would train
them in, each trained until its held-out unexplained variance stops falling (or said not to have).

- On the **dense head's embeddings** (image and caption embeddings share one SAE, as the Sparse CLIP's codes
  share one space): TopK, BatchTopK, ReLU + L1 and Matryoshka (:data:`DENSE_KINDS`), ``width`` = the model's code
  size, k = the model's image L0 (ReLU + L1: its coefficient found for that L0,
  :func:`~sparseclip.sae.suite.train_at_l0`). These are matched on L0 only: their live share is their own.
- The same top-k kinds **matched on live features too** (:data:`LIVE_KINDS`, rows named ``..., live-matched``):
  at the same k, with the width that makes the number of latents firing on the analysed inputs equal the model's
  live features (:func:`~sparseclip.sae.suite.train_at_live`, within
  :data:`~sparseclip.sae.suite.LIVE_TOL`): a dictionary as alive as the model's, not a healthy one against a dying
  one. The ReLU + L1 kind is not among them: without AuxK its dead share is not set by its width.
- On the **towers' features** (the heads' own input): a TopK SAE per modality, at the model's width and matched on
  live features. Image and text towers differ in width, so the two SAEs share no latent: the row's image codes
  occupy the first block of its columns and its text codes the second (``code_dim`` = both widths), so its live
  count and dead share count each SAE's latents once, and a cross-modal metric must find chance on it.

"Live" is :mod:`sparseclip.eval.sparsity`'s one definition: a feature that fires (``> TAU``) on at least one of the
analysed images and captions (not dead); the summary's ``live_features`` and ``dead_pct`` count it alike.

Each SAE trains on the training rows less a held-out slice (:func:`~sparseclip.sae.train.split_held_out`) and stops
when that slice's FVU is flat (:class:`~sparseclip.sae.train.StopRule`; ``--sae-steps`` is the cap). Each row
carries, per modality, ``fvu_<side>`` (unexplained variance on the analysed inputs: held out), ``fvu_train_<side>``
(on its training rows), ``sae_steps_<side>`` and ``sae_converged_<side>`` (flat before the cap's decay), and
``sae_k_or_l1``; a live-matched row also ``sae_live_target`` and ``sae_live_within``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..eval.sparsity import TAU, dead_mask, l0
from .inputs import AnalysisData, CodeSet, _np, derived_codes, first_captions, heads_off

#: the largest k of the L0-matched SAEs (a TopK SAE with k in the thousands is neither sparse nor cheap)
MAX_MATCHED_K = 256
#: the SAE kinds trained on the dense head's embeddings at the model's width (matched on L0)
DENSE_KINDS = ("topk", "batchtopk", "relu", "matryoshka")
#: the kinds trained again on the dense head's embeddings matched on live features too (AuxK keeps their latents
#: alive, so the width sets the live count)
LIVE_KINDS = ("topk", "batchtopk", "matryoshka")
#: the share of each modality's training rows held out to decide when an SAE has converged (at most 1024 rows)
HELD_OUT_SHARE = 0.1
#: steps of each of the ReLU + L1 kind's coefficient probes (at most; a fifth of the cap when that is less)
PROBE_STEPS = 200


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


@dataclass(frozen=True)
class Target:
    """What the SAE rows are matched to: the analysed model's image L0, its code size and its live features (on
    the analysed images and captions together, and on each modality)."""

    l0: float
    width: int
    live: int
    live_image: int
    live_text: int


def live_features(*codes: np.ndarray, tau: float = TAU) -> int:
    """Features that fire (``> tau``) on at least one row of ``codes`` (stacked): not dead."""
    return int((~dead_mask(np.concatenate(codes), tau)).sum())


def model_target(sparse: CodeSet, tau: float = TAU) -> Target:
    """The analysed model's :class:`Target` from its codes."""
    return Target(l0(sparse.image), sparse.dim, live_features(sparse.image, sparse.text, tau=tau),
                  live_features(sparse.image, tau=tau), live_features(sparse.text, tau=tau))


def _codes(sae, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        parts = [_np(sae.encode(torch.as_tensor(x[i:i + 4096], dtype=torch.float32))) for i in range(0, len(x), 4096)]
    return np.concatenate(parts) if parts else np.zeros((0, sae.width), dtype=np.float32)


def sae_codesets(dense_cs: CodeSet, dense: tuple, sparse_model: tuple, sparse_cs: CodeSet, tower_cs: CodeSet,
                 data: AnalysisData, steps: int, n_train: int, on_csv: bool, notes: list[str],
                 progress: bool = False, tau: float = TAU) -> list[CodeSet]:
    """The SAE rows (see the module docstring). ``dense`` / ``sparse_model``: ``(model, config)``; ``sparse_cs``:
    the analysed model's codes (the target); ``tower_cs``: the towers' outputs on ``data``
    (:func:`~sparseclip.interpret.inputs.tower_features`); ``steps``: the cap of each SAE's training; ``tau``: the
    firing threshold live features are counted at (the analysis's)."""
    try:
        from ..sae.suite import train_at_l0, train_at_live
        from ..sae.train import StopRule, split_held_out
    except ImportError:
        raise SAERowsError("--sae needs the sparseclip.sae package, which this installation lacks") from None
    from tqdm.auto import tqdm

    if on_csv:  # the user's CSV: the SAEs learn on the runs' own training CSV, as the analysed model did
        imgs, caps, trained_on = training_csv_pairs(dense[1], n_train, data)
    else:
        imgs, caps = training_pairs(dense[1], n_train)
        trained_on = f"{n_train} training images and their captions"
    t = model_target(sparse_cs, tau)
    width = t.width
    k = max(1, min(width, round(t.l0), MAX_MATCHED_K))
    matched = (f"k = {k}, the analysed model's image L0" if k == round(t.l0)
               else f"k = {k}: the model's image L0 {t.l0:.0f} capped at {MAX_MATCHED_K}")
    dense_train, dense_held = split_held_out(_encode(*dense, imgs, caps, towers=False), HELD_OUT_SHARE)
    tower_train, tower_held = split_held_out(_encode(*sparse_model, imgs, caps, towers=True), HELD_OUT_SHARE)
    # the held-out FVU is measured at least 20 times over the cap (every 100 steps at most); the ReLU kind's L1 probes
    # keep the 200 steps each they had with the fixed 1000 (a longer cap buys the final training, not the search)
    fit = {"steps": steps, "stop": StopRule(eval_every=max(1, min(100, steps // 20))),
           "probe_steps": max(1, min(steps // 5, PROBE_STEPS))}
    out: list[CodeSet] = []
    bar = tqdm(total=len(DENSE_KINDS) + len(LIVE_KINDS) + 4, desc="SAEs", disable=not progress)
    analysed = (("image", dense_cs.image), ("text", dense_cs.text))

    def dense_row(name: str, s) -> CodeSet:
        cs = derived_codes(name, dense_cs, s.encode)
        cs.extra = sae_extra([(side, s, x, tr) for (side, x), tr in zip(analysed, dense_train, strict=True)])
        bar.update()
        return cs

    for kind in DENSE_KINDS:
        s = train_at_l0(kind, dense_train, width, k, held_out=dense_held, **fit)
        out.append(dense_row(f"SAE {kind} on dense embeddings", s))
    tower = {side: train_at_l0("topk", tower_train[i], width, k, held_out=tower_held[i], **fit)
             for i, side in enumerate(("image", "text"))}
    bar.update(2)
    out.append(tower_row("SAE topk on tower features (one per modality)", tower, tower_cs, tower_train))
    for kind in LIVE_KINDS:
        s = train_at_live(kind, dense_train, t.live, k, lambda s: live_features(
            _codes(s, dense_cs.image), _codes(s, dense_cs.text), tau=tau), held_out=dense_held, **fit)
        out.append(dense_row(f"SAE {kind} on dense embeddings, live-matched", s))
    # the two towers' SAEs share the model's live count as its features are live per modality
    share = t.live_image / max(1, t.live_image + t.live_text)
    goal = {"image": max(1, round(t.live * share)), "text": max(1, t.live - round(t.live * share))}
    ref = {"image": tower_cs.image, "text": tower_cs.text}
    tower = {side: train_at_live("topk", tower_train[i], goal[side], k,
                                 lambda s, side=side: live_features(_codes(s, ref[side]), tau=tau),
                                 held_out=tower_held[i], **fit) for i, side in enumerate(("image", "text"))}
    bar.update(2)
    bar.close()
    out.append(tower_row("SAE topk on tower features (one per modality), live-matched", tower, tower_cs,
                         tower_train))
    notes.append(f"SAEs at the analysed model's L0 ({matched}; ReLU + L1: coefficient found for that L0), trained "
                 f"on {trained_on} less a held-out {HELD_OUT_SHARE:.0%} until its FVU was flat (at most {steps} "
                 f"steps): {', '.join(DENSE_KINDS)} on the dense head's embeddings (one SAE for images and captions) "
                 f"at width {width} (matched on L0 only); {', '.join(LIVE_KINDS)} again at the width whose live "
                 f"latents on the analysed inputs match the model's {t.live} live features ('live-matched'); a TopK "
                 "SAE per modality on the towers' features (no shared ids across modalities: image latents, then "
                 f"text latents), at width {width} each and live-matched. fvu_* = unexplained variance on the "
                 "analysed inputs (held out), fvu_train_* on the training rows; sae_converged = flat before the cap")
    return out


def tower_row(name: str, saes: dict, tower_cs: CodeSet, train: list) -> CodeSet:
    """One row from a TopK SAE per modality on the towers' features: image codes in the first block of columns,
    text codes (and the vocabulary's, which are texts) in the second, so no latent id is shared."""
    wi, wt = saes["image"].width, saes["text"].width

    def block(x: np.ndarray, side: str) -> np.ndarray:
        z = np.zeros((len(x), wi + wt), dtype=np.float32)
        if side == "image":
            z[:, :wi] = _codes(saes["image"], x)
        else:
            z[:, wi:] = _codes(saes["text"], x)
        return z

    cs = CodeSet(name, block(tower_cs.image, "image"), block(tower_cs.text, "text"), block(tower_cs.terms, "text"),
                 {task: block(v, "image") for task, v in tower_cs.tasks.items()})
    cs.extra = sae_extra([("image", saes["image"], tower_cs.image, train[0]),
                          ("text", saes["text"], tower_cs.text, train[1])])
    return cs


def sae_extra(parts: list[tuple]) -> dict:
    """Summary columns of an SAE row from ``(side, sae, analysed embeddings, training embeddings)`` per modality:
    ``fvu_<side>`` (held out: the analysed inputs), ``fvu_train_<side>``, ``sae_steps_<side>``,
    ``sae_converged_<side>`` (1.0 / 0.0), and the SAE's ``sae_k_or_l1`` and ``sae_max_steps``; a live-matched SAE
    adds ``sae_live_target`` and ``sae_live_within`` (summed / all over the modalities' SAEs)."""
    from ..sae.metrics import fvu

    extra: dict = {}
    live = []
    for side, sae, held, train in parts:
        with torch.no_grad():
            for key, x in ((f"fvu_{side}", held), (f"fvu_train_{side}", train)):
                xp = sae.prepare(x)
                extra[key] = fvu(xp, sae.decode(sae.encode(xp)))
        info = sae.train_info
        extra[f"sae_steps_{side}"] = int(info.get("steps", 0))
        extra[f"sae_converged_{side}"] = float(bool(info.get("converged", False)))
        extra["sae_k_or_l1"] = sae.cfg.sparsity_setting
        extra["sae_max_steps"] = int(info.get("max_steps", info.get("steps", 0)))
        if "live_match" in info and all(m is not info["live_match"] for m in live):  # one SAE may serve both sides
            live.append(info["live_match"])
    if live:
        extra["sae_live_target"] = sum(m["target"] for m in live)
        extra["sae_live_within"] = float(all(m["within"] for m in live))
    return extra
