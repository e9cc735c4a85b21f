"""Interpretability of sparse codes: clarity, modality, naming, ground-truth alignment,
training dynamics and region attribution, plus :func:`analyze` which writes them all for a run.

Array-level functions take (N, D) numpy arrays or torch tensors of codes and are model-agnostic: they
apply equally to Sparse CLIP codes, dense CLIP embeddings and SAE codes. L0, active and dead features are
counted by :mod:`sparseclip.eval.sparsity` (one definition for training, evaluation and analysis).
"""

from .alignment import Alignment, alignment, concept_matrix, concept_terms, name_match_rate, name_matches, name_mentions
from .attribution import heatmap_overlay, occlusion_drops, occlusion_heatmap, save_heatmap
from .clarity import clarity, feature_clarity, random_clarity
from .dynamics import training_dynamics
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
from .pipeline import AnalysisError, AnalyzeConfig, analyze, markdown_table
from .stats import class_consistency, effective_rank, frequency_histogram
from .summary import ModelAnalysis, Options, select_features, summarize

__all__ = [
    "Alignment", "AnalysisData", "AnalysisError", "AnalyzeConfig", "CodeSet", "Modality", "ModelAnalysis",
    "Options", "alignment", "analyze", "build_analysis_data", "build_vocabulary", "caption_ngrams", "clarity",
    "class_consistency", "common_words", "concept_matrix", "concept_terms", "derived_codes", "effective_rank",
    "encode_model", "feature_clarity", "frequency_histogram", "heatmap_overlay",
    "markdown_table", "modality", "modality_histogram", "multimodal_fraction", "name_features",
    "name_match_rate", "name_matches", "name_mentions", "name_quality", "occlusion_drops", "occlusion_heatmap",
    "random_clarity",
    "save_heatmap", "select_features", "summarize", "term_scores",
    "top_terms", "training_captions", "training_dynamics", "wordnet_lemmas",
]
