"""The dictionary's health (eval.health): active / dead / rare shares per modality and on both, on hand-made codes
whose answer is known, and counted on a run's training inputs by evaluation and in the training log."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sparseclip.eval.health import dictionary_health, health_line, sample_rows
from sparseclip.eval.sparsity import FiringWindow


def test_all_dead_codes_have_no_active_feature():
    h = dictionary_health(np.zeros((50, 8)), np.zeros((50, 8)))
    for side in ("image", "text"):
        assert h[side]["dead_pct"] == 100.0 and h[side]["active_pct"] == 0.0 and h[side]["L0"] == 0.0
    assert h["active_both_pct"] == 0.0 and h["dead_both_pct"] == 100.0


def test_one_always_on_feature():
    img = np.zeros((40, 10))
    img[:, 3] = 1.0
    h = dictionary_health(img)
    assert h["image"]["active_pct"] == pytest.approx(10.0)
    assert h["image"]["dead_pct"] == pytest.approx(90.0)
    assert h["image"]["L0"] == 1.0 and h["image"]["n"] == 40
    assert "text" not in h and "active_both_pct" not in h


def test_known_rates_rare_and_both():
    # 1000 inputs, 8 features: feature j fires on exactly rate[j] * 1000 inputs; feature 6 fires once (rare),
    # feature 7 never (dead)
    n, rates = 1000, [0.5, 0.2, 0.1, 0.05, 0.01, 0.002]
    img = np.zeros((n, 8))
    for j, r in enumerate(rates):
        img[: int(r * n), j] = 0.5
    img[0, 6] = 0.5
    txt = np.zeros((n, 8))
    txt[:10, [0, 1, 7]] = 2.0  # text: features 0, 1 and 7 active
    txt[:, 5] = 0.0005  # below tau: not firing
    h = dictionary_health(img, txt)
    assert h["image"]["L0"] == pytest.approx(sum(rates) + 1 / n)
    assert h["image"]["active_pct"] == pytest.approx(100 * 6 / 8)
    assert h["image"]["rare_pct"] == pytest.approx(100 * 1 / 8)
    assert h["image"]["dead_pct"] == pytest.approx(100 * 1 / 8)
    assert h["text"]["active_pct"] == pytest.approx(100 * 3 / 8)
    assert h["text"]["dead_pct"] == pytest.approx(100 * 5 / 8)  # feature 5 sits below tau: dead
    assert h["active_both_pct"] == pytest.approx(100 * 2 / 8)  # 0 and 1; 7 is dead on images
    assert h["active_either_pct"] == pytest.approx(100 * 7 / 8)  # all but 5
    assert h["dead_both_pct"] == 0.0  # 7 dead on images fires on texts; 2-6 dead on texts fire on images
    line = health_line({"sample": {"n": 1000, "source": "training pairs", "of": 5000}, **h})
    assert line.startswith("dictionary on a sample of 1,000 of 5,000 training pairs: image L0 10.79%, active 75.0%, "
                           "dead 12.5%; text L0") and line.endswith("active on both 25.0%")
    assert health_line({"sample": {"n": 7, "source": "training pairs", "of": 7}, **h}).startswith(
        "dictionary on all 7 training pairs:")


def test_widths_must_agree():
    with pytest.raises(ValueError, match="widths differ"):
        dictionary_health(np.ones((3, 4)), np.ones((3, 5)))


def test_sample_rows_whole_or_seeded_distinct():
    assert sample_rows(10, 0).tolist() == list(range(10))
    assert sample_rows(10, 20).tolist() == list(range(10))
    rows = sample_rows(1000, 100, seed=0)
    assert len(set(rows.tolist())) == 100 and (np.diff(rows) > 0).all()
    assert rows.tolist() == sample_rows(1000, 100, seed=0).tolist()
    assert rows.tolist() != sample_rows(1000, 100, seed=1).tolist()


def test_firing_window_counts_features_unfired_since_last_take():
    w = FiringWindow()
    assert w.take() == {}
    a = torch.zeros(4, 5)
    a[0, 0] = 1.0
    b = torch.zeros(3, 5)
    b[2, 3] = 0.01
    b[1, 4] = 0.0005  # below tau
    w.add(a)
    w.add(b)
    assert w.take() == {"unfired_pct": pytest.approx(60.0), "window_inputs": 7}
    w.add(torch.zeros(2, 5))
    assert w.take() == {"unfired_pct": 100.0, "window_inputs": 2}


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    from sparseclip.config import load_config
    from sparseclip.train.loop import train

    run = tmp_path_factory.mktemp("health") / "run"
    train(load_config("micro", [f"train.output_dir={run}", "train.tensorboard=false", "train.progress=false",
                                "train.steps=10", "data.num_health=96"]))
    return run


def test_evaluation_and_training_log_carry_the_health(micro_run):
    from sparseclip.eval.health import training_codes
    from sparseclip.eval.run import evaluate_run
    from sparseclip.model.checkpoint import load_model

    run = micro_run
    res = evaluate_run(run, progress=False, probe=False)
    h = res["dictionary"]
    model, cfg = load_model(run)
    img, txt, sample = training_codes(model, cfg, cfg.data.num_health)
    # the stream's first num_health inputs, counted independently
    assert sample["n"] == cfg.data.num_health == img.shape[0]
    assert h["image"]["active_pct"] == pytest.approx(100 * float(((img > 1e-3).sum(0) >= 2).float().mean()))
    assert h["text"]["dead_pct"] == pytest.approx(100 * float(((txt > 1e-3).sum(0) == 0).float().mean()))
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert all("image_unfired_pct" in r and "text_window_inputs" in r for r in records)
    assert (run / "plots" / "training.png").is_file()


def test_eval_cli_prints_the_health_line(micro_run, tmp_path, capsys):
    from sparseclip.cli import main

    assert main(["eval", str(micro_run), "--out", str(tmp_path / "e.json"), "--no-probe", "--no-progress"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("dictionary on "))
    saved = json.loads((tmp_path / "e.json").read_text())["dictionary"]
    assert line.startswith("dictionary on the first 96 inputs of the training stream: image L0 ")
    assert f"active {saved['image']['active_pct']:.1f}%, dead {saved['image']['dead_pct']:.1f}%" in line
