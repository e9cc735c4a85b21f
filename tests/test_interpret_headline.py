"""Every metric against every row, three separate verdicts (SAEs at matched L0, the dense head, the random
controls), and docs/interpret.md's headline generated from them: an SAE row that beats the model changes it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sparseclip.interpret.headline import HeadlineError, headline, paper_ordering, tally
from sparseclip.interpret.verdicts import render_verdicts, verdicts

ROOT = Path(__file__).resolve().parents[1]


class _Row:  # what the verdicts read of a ModelAnalysis: the name, the per-unit values and the summary row
    def __init__(self, name: str, units: dict, l0: float = 10.0, dead: float = 5.0):
        self.codes = type("C", (), {"name": name})()
        self.units = units
        self.row = {"model": name, "L0_image": l0, "dead_pct": dead}


def _rows(seed: int = 0, sae_shift: float = -0.2, sae_l0: float = 10.0):
    rng = np.random.default_rng(seed)

    def units(shift: float) -> dict:
        return {"clarity": rng.normal(0.6 + shift, 0.02, 200), "ms_lite1": rng.normal(0.5 + shift, 0.02, 200),
                "ksparse_auroc_1": np.clip(rng.normal(0.8 + shift, 0.02, 30), 0, 1)}

    model = _Row("sparse (x)", units(0.0))
    others = [_Row("dense (d)", units(-0.2)), _Row("SAE topk on dense embeddings", units(sae_shift), sae_l0),
              _Row("baseline: random dictionary (rate-matched)", units(-0.3)),
              _Row("baseline: shuffled concept labels", units(-0.3))]
    return model, others


def _summary(model, others) -> dict:
    return {"rows": [model.row] + [o.row for o in others], "verdicts": verdicts(model, others, n_boot=200)}


def test_every_metric_is_compared_with_every_row_and_gets_three_verdicts():
    model, others = _rows()
    out = {v["metric"]: v for v in verdicts(model, others, n_boot=200)}
    # clarity must beat only the random controls, but it is compared with the dense head and the SAE too
    assert [a["kind"] for a in out["clarity"]["against"]] == ["random dictionary"]
    assert [r["kind"] for r in out["clarity"]["rows"]] == ["dense", "SAE", "random dictionary"]  # label-free
    assert [r["kind"] for r in out["ksparse_auroc_1"]["rows"]] == ["dense", "SAE", "random dictionary",
                                                                  "shuffled labels"]
    assert all(v["beats"] == {"SAE": True, "dense": True, "controls": True} for v in out.values())
    text = render_verdicts(_summary(model, others))
    assert "beats every SAE at matched L0 | beats the dense head | beats the random controls" in text


def test_an_sae_row_that_beats_the_model_changes_the_headline():
    model, others = _rows()
    before = headline([("the world", _summary(model, others), "x")])
    assert "on `3` of the `3` metrics compared" in before and "It does not on" not in before
    assert "ordering (above every SAE on a majority of the `3` metrics) holds" in before
    planted = _Row("SAE relu on dense embeddings", {k: v + 0.3 for k, v in model.units.items()})
    after_summary = _summary(model, others + [planted])
    after = headline([("the world", after_summary, "x")])
    assert after != before
    assert "on `0` of the `3` metrics compared" in after and "below SAE relu on dense embeddings" in after
    assert "does not hold" in after and "on none of these sets" in after
    t = tally(after_summary)
    assert t["SAE"]["won"] == [] and set(t["SAE"]["lost"]) == {"clarity", "ms_lite1", "ksparse_auroc_1"}
    assert t["dense"]["won"] == ["clarity", "ms_lite1", "ksparse_auroc_1"]  # the other verdicts are unchanged


def test_an_sae_row_far_from_the_model_l0_does_not_count_and_a_dead_dictionary_fails():
    model, others = _rows(sae_shift=0.3, sae_l0=40.0)  # beats the model, at 4x its L0
    s = _summary(model, others)
    assert all(v["beats"]["SAE"] is None for v in s["verdicts"])  # no SAE at matched L0
    assert "not matched" in s["verdicts"][0]["text"]
    assert "Not at its L0, so not counted: SAE topk on dense embeddings" in headline([("w", s, "x")])
    model, others = _rows()
    model.row["dead_pct"] = 70.0
    s = _summary(model, others)
    assert paper_ordering(tally(s)) == {"won": 3, "tested": 3, "majority": True, "alive": False}
    assert "not alive" in headline([("w", s, "x")])


def test_a_summary_without_per_row_verdicts_gets_no_claim():
    old = {"rows": [{}], "verdicts": [{"metric": "clarity", "against": []}]}
    with pytest.raises(HeadlineError, match="re-run"):
        tally(old)
    model, others = _rows()
    text = headline([("the world", _summary(model, others), "x"), ("the emoji", old, "e.json")])
    assert "**On the emoji**: no claim (e.json: verdicts written before" in text
    assert text.endswith("on the world; not yet measured on the emoji.")
