"""The one catalogue of metric columns: each column's key, its header and what it means. The Markdown tables
(:mod:`sparseclip.report.tables`) and the HTML report (:mod:`sparseclip.report.html`) both read it; a new metric's
column is one entry here (and, to show it in the analysis table, its key in :data:`TABLE_COLUMNS`)."""

from __future__ import annotations

from typing import NamedTuple


class Column(NamedTuple):
    header: str
    tip: str


#: column key -> (header, tooltip), in display order (the HTML report shows these first, in this order)
COLUMNS: dict[str, Column] = {
    "L0_image": Column("L0 image", "mean number of non-zero code entries per image"),
    "L0_text": Column("L0 text", "mean number of non-zero code entries per text"),
    "active_pct": Column("active %", "% of features firing (> tau) on at least n_min inputs"),
    "clarity": Column("clarity", "mean pairwise cosine similarity (reference encoder) of the inputs a feature "
                      "fires on, averaged over features; higher = more coherent features"),
    "multimodal_frac": Column("multimodal", "fraction of live features whose image share of activation mass is "
                              "inside the multimodal band"),
    "mean_best_auroc": Column("mean best AUROC", "mean over ground-truth concepts of the best single feature's "
                              "AUROC at detecting it"),
    "monosemantic_frac": Column("monosemantic", "fraction of live features whose best concept AUROC >= 0.9"),
    "f1_frac": Column("F1 >= 0.5", "share of live features whose held-out, chance-corrected F1 with their "
                      "concept is >= 0.5"),
    "precision_frac": Column("precision >= 0.8", "share of live features whose held-out, chance-corrected "
                             "precision is >= 0.8"),
    "concept_covered_frac": Column("concepts covered", "share of ground-truth concepts that some feature passing "
                                   "the F1 bar detects"),
    "monosemantic_strict_frac": Column("monosemantic (held-out)", "concept chosen on half the inputs, AUROC >= "
                                       "0.9 on the other half"),
    "purity_f1_adj": Column("purity F1 (adj.)", "chance-corrected held-out F1 of a feature with its concept, "
                            "mean over live features"),
    "purity_topn_adj": Column("purity top-n (adj.)", "chance-corrected share of a feature's top inputs that show "
                              "its concept"),
    "label_clarity": Column("label clarity", "clarity with the ground-truth labels as the reference space"),
    "pixel_clarity": Column("pixel clarity", "clarity with 8 x 8 RGB thumbnails as the reference space"),
    "crossmodal_frac": Column("cross-modal", "share of live features whose image and text firing agree on "
                              "their concept"),
    "name_true_frac": Column("names true", "share of features whose text-side name is true of the images they "
                             "fire on"),
    "multimodal_selective_frac": Column("multimodal & selective", "share of all features that are live, "
                                        "selective and multimodal"),
    "mean_best_auroc_heldout": Column("best AUROC (held-out)", "mean best AUROC with each concept's feature "
                                      "chosen on other inputs"),
}

#: the analysis table's columns (Markdown): sparsity, clarity (live features; all features, dead = 0), modality
#: (over live features; the share of all features that are live, selective and multimodal), ground truth
#: (in-sample and held-out best AUROC; AUROC-only and strict monosemantic fractions), naming
TABLE_COLUMNS = ("L0_image", "active_pct", "f1_frac", "precision_frac", "concept_covered_frac",
                 "monosemantic_strict_frac", "purity_f1_adj", "purity_topn_adj", "label_clarity", "clarity",
                 "pixel_clarity", "crossmodal_frac", "name_true_frac", "multimodal_selective_frac",
                 "mean_best_auroc_heldout")
assert set(TABLE_COLUMNS) <= set(COLUMNS), "every Markdown column is in the catalogue"
