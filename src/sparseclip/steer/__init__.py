"""Steering: an adapter VLM on (sparse) codes, interventions on named features, and a steering benchmark.

- :mod:`.interventions` edit codes: suppress/boost a concept's top-K text-tower features, strength absolute or
  relative to each feature's reference percentile; steered zero-shot classification and retrieval.
- :mod:`.vlm` the adapter VLM (code -> 2-layer MLP -> prefix of a Hugging Face causal LM); :mod:`.fit` trains it.
- :mod:`.bench` the steering sweep; :mod:`.scoring` success and grammar of answers; :mod:`.judge` judges that do
  not read the edited codes (a separate text model's zero-shot on the answer, faithfulness to the image in the
  attributes not steered, side effects); :mod:`.report` tables and generated prose; :mod:`.pipeline` whole tasks
  (steer one image, train a VLM, run the sweep) for the CLI.

``transformers`` is needed for the VLM only (the ``steer`` extra); interventions work without it.
"""

from .interventions import (
                            FeatureReference,
                            Intervention,
                            apply_intervention,
                            boost_values,
                            changed_features,
                            concept_intervention,
                            dense_shift,
                            steered_retrieval,
                            steered_zero_shot,
                            text_direction,
)
from .judge import TextJudge, attributes, side_effects, unfaithful
from .scoring import score, well_formed
from .text import QUESTIONS, SteerError, WordTokenizer

__all__ = ["FeatureReference", "Intervention", "QUESTIONS", "SteerError", "TextJudge", "WordTokenizer",
           "apply_intervention", "attributes", "boost_values", "changed_features", "concept_intervention",
           "dense_shift", "score", "side_effects", "steered_retrieval", "steered_zero_shot", "text_direction",
           "unfaithful", "well_formed"]
