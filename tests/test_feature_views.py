"""The feature sets the analysis writes for the report's browser (features.json ``views``)."""

from types import SimpleNamespace

import numpy as np

from sparseclip.interpret.pipeline import feature_views


def test_views_are_live_features_ranked_as_named():
    live = np.array([True, True, False, True, True, True])
    freq = np.array([0.5, 0.1, 0.9, 0.3, 0.2, 0.05])  # feature 2 is the most frequent but not live on images
    auc = {0: 0.6, 1: 0.99, 2: 1.0, 3: 0.7, 4: 0.5}
    a = SimpleNamespace(live_image=live, freq=freq, align=SimpleNamespace(feature_best_auroc=auc),
                        modality=SimpleNamespace(density=freq))
    v = feature_views(a, 3, chosen=[4, 1])
    assert v["chosen"] == [4, 1]
    assert v["most active"] == [0, 3, 4]
    assert v["most selective"] == [1, 3, 0]  # 2 is dead on images; 5 has no AUROC (counts as 0.5, after 0)
    assert len(v["random live"]) == 3 and set(v["random live"]) <= {0, 1, 3, 4, 5}
    assert v["random live"] == feature_views(a, 3, chosen=[4, 1])["random live"]  # seeded
    empty = SimpleNamespace(live_image=np.zeros(3, bool), freq=np.zeros(3),
                            align=SimpleNamespace(feature_best_auroc={}), modality=SimpleNamespace(density=np.zeros(3)))
    assert feature_views(empty, 3, chosen=[])["random live"] == []
