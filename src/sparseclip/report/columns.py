"""The one catalogue of metric columns: each column's key, its plain-language label, what it means and the doc that
explains it. The Markdown tables (:mod:`sparseclip.report.tables`) and the HTML report (:mod:`sparseclip.report.html`)
both read it; a new metric's column is one entry here (and, to show it in the analysis table, its key in
:data:`TABLE_COLUMNS`)."""

from __future__ import annotations

from typing import NamedTuple

INTERPRET_DOC = "docs/interpret.md"
EVAL_DOC = "docs/evaluation.md"
SPARSITY_DOC = "docs/sparsity.md"


class Column(NamedTuple):
    header: str
    tip: str
    doc: str = INTERPRET_DOC


def _c(header: str, tip: str, doc: str = INTERPRET_DOC) -> Column:
    return Column(header, tip, doc)


#: what "converged" meant: summaries since issue 36 item 3 train until the held-out FVU is flat; older ones
CONVERGED_TIP = ("1 when the held-out FVU was flat before the step cap (sae.train.StopRule); in summaries written "
                 "before that rule, when the FVU fell by < 0.005 over the last 10% of steps")


#: column key -> (label, definition, doc), in display order (the HTML report shows these first, in this order)
COLUMNS: dict[str, Column] = {
    # sparsity: the analysis' own sample
    "L0_image": _c("non-zeros per image (L0)", "mean number of non-zero code entries per image", SPARSITY_DOC),
    "L0_text": _c("non-zeros per text (L0)", "mean number of non-zero code entries per text", SPARSITY_DOC),
    "code_dim": _c("code size (dims)", "number of entries (features) in the code", SPARSITY_DOC),
    "active_pct": _c("active features %", "% of features firing (> tau) on at least n_min inputs, images and "
                     "texts together", SPARSITY_DOC),
    "active_pct_image": _c("active on images %", "% of features firing (> tau) on at least n_min images",
                           SPARSITY_DOC),
    "active_pct_text": _c("active on texts %", "% of features firing (> tau) on at least n_min texts", SPARSITY_DOC),
    "dead_pct": _c("dead features %", "% of features that never fire (> tau) on any input", SPARSITY_DOC),
    "live_features": _c("live features", "features that fire (> tau) on at least one analysed input (the "
                        "complement of dead_pct, as a count)", SPARSITY_DOC),
    "live_selective_frac": _c("live and selective", "share of all features that are live and fire on under 20% "
                              "of inputs"),
    "effective_rank_image": _c("effective rank (images)", "exp of the entropy of the normalised singular values of "
                               "the centred image codes: how many directions the codes really use"),
    # clarity
    "clarity": _c("clarity", "mean pairwise cosine similarity (reference encoder) of the inputs a feature fires on, "
                  "averaged over features; higher = more coherent features"),
    "clarity_all": _c("clarity, dead counted as 0", "clarity over all features, a feature that never fires "
                      "counting as 0"),
    "clarity_random": _c("clarity of random inputs", "clarity of random sets of inputs of the same sizes: the "
                         "level a feature gets for nothing"),
    "clarity_text": _c("clarity on texts", "clarity of the texts a feature fires on (reference text encoder)"),
    "clarity_text_random": _c("clarity of random texts", "clarity on texts of random sets of the same sizes"),
    "label_clarity": _c("label clarity", "clarity with the ground-truth labels as the reference space"),
    "label_clarity_random": _c("label clarity of random inputs", "label clarity of random sets of the same sizes"),
    "pixel_clarity": _c("pixel clarity", "clarity with 8 x 8 RGB thumbnails as the reference space"),
    "pixel_clarity_random": _c("pixel clarity of random inputs", "pixel clarity of random sets of the same sizes"),
    "clarity_lite1": _c("clarity (Lite1)", "clarity with a second image network (EfficientNet-Lite1, not the heads' "
                        "towers) as the reference space"),
    "ms_lite1": _c("monosemanticity score (MS)", "Pach et al.'s MS under EfficientNet-Lite1: per feature, the "
                   "activation-weighted mean pairwise similarity of the images, activations min-max scaled"),
    "lite1_random": _c("Lite1 similarity of random inputs", "mean pairwise cosine of all images under "
                       "EfficientNet-Lite1: the clarity and MS a feature gets for nothing"),
    "ksparse_auroc_1": _c("1-sparse probe AUROC", "SAEBench k-sparse probing, k = 1: held-out AUROC of a probe on "
                          "the feature that best separates a concept, mean over concepts (0.5 = chance)"),
    "ksparse_auroc_5": _c("5-sparse probe AUROC", "SAEBench k-sparse probing, k = 5: held-out AUROC of a probe on "
                          "the five features that best separate a concept, mean over concepts"),
    "ksparse_bacc_1": _c("1-sparse probe balanced accuracy", "held-out balanced accuracy of the k = 1 probe"),
    "ksparse_bacc_5": _c("5-sparse probe balanced accuracy", "held-out balanced accuracy of the k = 5 probe"),
    # modality
    "multimodal_frac": _c("multimodal", "fraction of live features whose image share of activation mass is inside "
                          "the multimodal band"),
    "multimodal_selective_frac": _c("multimodal & selective", "share of all features that are live, selective and "
                                    "multimodal"),
    "crossmodal_f1": _c("cross-modal agreement (F1)", "mean F1 of a feature firing on an image and on its own "
                        "caption"),
    "crossmodal_f1_chance": _c("cross-modal agreement by chance", "the F1 a feature with the same firing rates "
                               "gets by chance"),
    "crossmodal_adj": _c("cross-modal agreement (chance-corrected)", "mean chance-corrected agreement of a feature "
                         "on an image and on its own caption"),
    "crossmodal_frac": _c("cross-modal", "share of live features whose image and text firing agree on their "
                          "concept"),
    # ground truth
    "mean_best_auroc": _c("mean best AUROC", "mean over ground-truth concepts of the best single feature's AUROC at "
                          "detecting it"),
    "mean_best_auroc_heldout": _c("best AUROC (held-out)", "mean best AUROC with each concept's feature chosen on "
                                  "other inputs"),
    "monosemantic_frac": _c("monosemantic", "fraction of live features whose best concept AUROC >= 0.9"),
    "monosemantic_strict_frac": _c("monosemantic (held-out)", "concept chosen on half the inputs, AUROC >= 0.9 on "
                                   "the other half"),
    "monosemantic_strict_pixel_frac": _c("monosemantic for a pixel concept", "strictly monosemantic for a "
                                         "pixel-level concept (background, brightness)"),
    "f1_frac": _c("F1 >= 0.5", "share of live features whose held-out, chance-corrected F1 with their concept is "
                  ">= 0.5"),
    "precision_frac": _c("precision >= 0.8", "share of live features whose held-out, chance-corrected precision "
                         "is >= 0.8"),
    "concept_covered_frac": _c("concepts covered", "share of ground-truth concepts that some feature passing the F1 "
                               "bar detects"),
    "concept_f1": _c("concept F1", "mean over concepts of the best feature's held-out F1"),
    "concept_f1_adj": _c("concept F1 (chance-corrected)", "concept F1 minus what chance gives, scaled to 1"),
    "conjunction_frac": _c("conjunction detectors", "share of live features passing the F1 bar for a conjunction "
                           "of two concepts"),
    "pixel_frac": _c("pixel-concept features", "share of live features whose best concept is a pixel-level one"),
    "pixel_f1": _c("pixel-concept F1", "mean held-out F1 of those features with their pixel concept"),
    "purity_f1": _c("purity F1", "held-out F1 of a feature's firing set with its concept, mean over live features"),
    "purity_f1_chance": _c("purity F1 by chance", "the F1 a firing set of the same size gets by chance"),
    "purity_f1_adj": _c("purity F1 (adj.)", "chance-corrected held-out F1 of a feature with its concept, mean over "
                        "live features"),
    "purity_precision": _c("purity precision", "held-out share of a feature's firing set that shows its concept"),
    "purity_precision_chance": _c("purity precision by chance", "the concept's base rate"),
    "purity_precision_adj": _c("purity precision (adj.)", "chance-corrected purity precision"),
    "purity_topn": _c("purity top-n", "share of a feature's top inputs that show its concept"),
    "purity_topn_chance": _c("purity top-n by chance", "the concept's base rate"),
    "purity_topn_adj": _c("purity top-n (adj.)", "chance-corrected share of a feature's top inputs that show its "
                          "concept"),
    "class_consistency": _c("class consistency", "for each active feature, the share of its inputs in their most "
                            "frequent class, averaged over features and zero-shot tasks"),
    # naming
    "name_score": _c("name score", "how well a feature's name alone finds its top images (AUROC; 0.5 = chance)"),
    "name_match_rate": _c("names = best concept", "share of named features whose name is their best concept"),
    "name_mention_rate": _c("names mention best concept", "share of named features whose name mentions their "
                            "best concept"),
    "name_purity": _c("name purity", "share of a named feature's top images that show the named concept"),
    "name_purity_chance": _c("name purity by chance", "the named concept's base rate"),
    "name_purity_adj": _c("name purity (adj.)", "chance-corrected name purity"),
    "name_grounded_frac": _c("names grounded", "share of named features whose name names a ground-truth concept"),
    "name_true_frac": _c("names true", "share of features whose text-side name is true of the images they fire on"),
    # SAE rows
    "fvu_image": _c("SAE unexplained variance (images)", "held-out fraction of variance the SAE leaves unexplained",
                    "docs/sae.md"),
    "fvu_text": _c("SAE unexplained variance (texts)", "held-out fraction of variance the SAE leaves unexplained",
                   "docs/sae.md"),
    "sae_converged_image": _c("SAE converged (images)", CONVERGED_TIP, "docs/sae.md"),
    "sae_converged_text": _c("SAE converged (texts)", CONVERGED_TIP, "docs/sae.md"),
    "fvu_train_image": _c("SAE unexplained variance, training rows (images)", "the FVU on the SAE's own training "
                          "rows", "docs/sae.md"),
    "fvu_train_text": _c("SAE unexplained variance, training rows (texts)", "the FVU on the SAE's own training rows",
                         "docs/sae.md"),
    "sae_steps_image": _c("SAE steps (images)", "training steps the SAE ran (until flat, or the cap)", "docs/sae.md"),
    "sae_steps_text": _c("SAE steps (texts)", "training steps the SAE ran (until flat, or the cap)", "docs/sae.md"),
    "sae_max_steps": _c("SAE step cap", "the most steps an SAE could run (--sae-steps)", "docs/sae.md"),
    "sae_live_target": _c("SAE live-feature target", "the analysed model's live features, which a live-matched SAE "
                          "is trained to have", "docs/sae.md"),
    "sae_live_within": _c("SAE live target met", "1 when the live-matched SAE's live features are within 10% of the "
                          "target", "docs/sae.md"),
    "sae_fvu_drop_image": _c("SAE FVU drop (images)", "how much the FVU fell over the last 10% of steps",
                             "docs/sae.md"),
    "sae_fvu_drop_text": _c("SAE FVU drop (texts)", "how much the FVU fell over the last 10% of steps", "docs/sae.md"),
    "sae_k_or_l1": _c("SAE k or L1", "the SAE's sparsity setting: k for TopK, the L1 coefficient for ReLU",
                      "docs/sae.md"),
}

#: the demo's and evaluation's columns (``results.json`` rows): key -> (label, definition, doc)
EVAL_COLUMNS: dict[str, Column] = {
    "name": _c("what it is", "towers, head, width and training budget", EVAL_DOC),
    "head": _c("head", "the projection head kind (relu: Sparse CLIP; dense; linear_wide: wide linear)", EVAL_DOC),
    "code_dim": _c("code size (dims)", "number of entries in the code", EVAL_DOC),
    "zs_mean": _c("zero-shot accuracy", "top-1 accuracy of zero-shot classification, mean over the world's tasks "
                  "(held-out images)", EVAL_DOC),
    "t2i_R@1": _c("text-to-image R@1", "share of captions whose own image is the top retrieved image (held-out)",
                  EVAL_DOC),
    "i2t_R@1": _c("image-to-text R@1", "share of images whose own caption is the top retrieved caption (held-out)",
                  EVAL_DOC),
    "t2i_R@5": _c("text-to-image R@5", "share of captions whose own image is in the top 5", EVAL_DOC),
    "i2t_R@5": _c("image-to-text R@5", "share of images whose own caption is in the top 5", EVAL_DOC),
    "probe_mean": _c("linear probe accuracy", "accuracy of a logistic regression on the image codes, mean over "
                     "tasks", EVAL_DOC),
    "image_L0": _c("non-zeros per image (L0)", "mean number of non-zero code entries per held-out image",
                   SPARSITY_DOC),
    "image_L0_pct": _c("image L0 % of dims", "L0 per held-out image as a % of the code size", SPARSITY_DOC),
    "text_L0": _c("non-zeros per text (L0)", "mean number of non-zero code entries per held-out caption",
                  SPARSITY_DOC),
    "text_L0_pct": _c("text L0 % of dims", "L0 per held-out caption as a % of the code size", SPARSITY_DOC),
    "image_active_pct": _c("active on held-out images %", "% of dims firing (> 0.001) on at least 2 held-out "
                           "images", SPARSITY_DOC),
    "text_active_pct": _c("active on held-out texts %", "% of dims firing (> 0.001) on at least 2 held-out "
                          "captions", SPARSITY_DOC),
    "image_active_train_pct": _c("active on training images %", "% of dims firing on at least 2 training images",
                                 SPARSITY_DOC),
    "text_active_train_pct": _c("active on training texts %", "% of dims firing on at least 2 training captions",
                                SPARSITY_DOC),
    "image_dead_train_pct": _c("dead on training images %", "% of dims firing on no training image", SPARSITY_DOC),
    "text_dead_train_pct": _c("dead on training texts %", "% of dims firing on no training caption", SPARSITY_DOC),
    "active_both_train_pct": _c("active on both modalities %", "% of dims active on the training images and on the "
                                "training captions", SPARSITY_DOC),
    "train_seconds": _c("training time (s)", "wall-clock seconds of training", EVAL_DOC),
}
for _task in ("color", "shape", "size", "position", "count"):
    EVAL_COLUMNS[f"zs_{_task}"] = _c(f"zero-shot: {_task}", f"zero-shot top-1 accuracy on the {_task} task "
                                     "(held-out images)", EVAL_DOC)
    EVAL_COLUMNS[f"probe_{_task}"] = _c(f"linear probe: {_task}", f"linear-probe accuracy on the {_task} task",
                                        EVAL_DOC)


def column(key: str) -> Column | None:
    """The catalogue entry of ``key`` (analysis or evaluation column), None when unknown."""
    return COLUMNS.get(key) or EVAL_COLUMNS.get(key)


#: the analysis table's columns (Markdown): sparsity, clarity (live features; all features, dead = 0), modality
#: (over live features; the share of all features that are live, selective and multimodal), ground truth
#: (in-sample and held-out best AUROC; AUROC-only and strict monosemantic fractions), naming
TABLE_COLUMNS = ("L0_image", "active_pct", "f1_frac", "precision_frac", "concept_covered_frac",
                 "monosemantic_strict_frac", "purity_f1_adj", "purity_topn_adj", "label_clarity", "clarity",
                 "pixel_clarity", "clarity_lite1", "ms_lite1", "ksparse_auroc_1", "ksparse_auroc_5",
                 "crossmodal_frac", "name_true_frac", "multimodal_selective_frac", "mean_best_auroc_heldout")
assert set(TABLE_COLUMNS) <= set(COLUMNS), "every Markdown column is in the catalogue"
