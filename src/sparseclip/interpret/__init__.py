"""Interpretability of sparse codes: sparsity statistics, clarity, modality, naming, ground-truth alignment,
training dynamics and region attribution, plus :func:`analyze` which writes them all for a run.

Array-level functions take (N, D) numpy arrays or torch tensors of codes and are model-agnostic: they
apply equally to Sparse CLIP codes, dense CLIP embeddings and SAE codes.
"""

from .alignment import Alignment, alignment, concept_matrix, concept_terms, name_match_rate, name_matches, name_mentions
from .analysis import ModelAnalysis, Options, select_features, summarize
from .analyze import AnalysisError, AnalyzeConfig, analyze, markdown_table, run_dir_of
from .attribution import heatmap_overlay, occlusion_heatmap, save_heatmap
from .clarity import clarity, feature_clarity, random_clarity
from .dynamics import list_checkpoints, training_dynamics
from .inputs import AnalysisData, CodeSet, build_analysis_data, derived_codes, encode_model, training_captions
from .modality import Modality, modality, modality_histogram, multimodal_fraction
from .naming import (
                        build_vocabulary,
                        caption_ngrams,
                        common_words,
                        name_features,
                        name_quality,
                        term_scores,
                        top_terms,
                        wordnet_lemmas,
)
from .stats import (
                        N_MIN,
                        TAU,
                        active_fraction,
                        active_mask,
                        class_consistency,
                        dead_mask,
                        effective_rank,
                        fire_counts,
                        firing_frequency,
                        frequency_histogram,
                        l0,
                        sparsity_summary,
)

__all__ = [
    "N_MIN", "TAU", "Alignment", "AnalysisData", "AnalysisError", "AnalyzeConfig", "CodeSet", "Modality",
    "ModelAnalysis", "Options", "active_fraction", "active_mask", "alignment", "analyze", "build_analysis_data",
    "markdown_table",
    "build_vocabulary", "caption_ngrams", "clarity", "class_consistency", "common_words", "concept_matrix",
    "concept_terms", "dead_mask", "derived_codes", "effective_rank", "encode_model", "feature_clarity",
    "fire_counts", "firing_frequency", "frequency_histogram", "heatmap_overlay", "l0", "list_checkpoints",
    "modality", "modality_histogram", "multimodal_fraction", "name_features", "name_match_rate",
    "name_matches", "name_mentions", "name_quality", "occlusion_heatmap", "random_clarity", "run_dir_of",
    "save_heatmap",
    "select_features", "sparsity_summary", "summarize", "term_scores", "top_terms", "training_captions",
    "training_dynamics", "wordnet_lemmas",
]
