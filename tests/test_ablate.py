import json
import shutil

import pytest
import torch

from sparseclip.cli import main
from sparseclip.experiments import ablate
from sparseclip.experiments.ablate import execute, plan, run_ablation
from sparseclip.experiments.ablate_summary import compare, verdicts
from sparseclip.experiments.grids import AblateError, load_grid, resolve_grids

# A microscopic base: the micro preset, 2 steps of 8 pairs, a tiny evaluation.
# One thread: on a busy shared machine two spinning threads per run are many times slower.
TINY = ["train.steps=2", "train.batch_size=8", "train.warmup=1", "train.log_every=1", "data.num_val=16",
        "data.num_probe_train=16", "model.head.expansion=2", "train.threads=1"]


@pytest.fixture(autouse=True)
def _restore_threads():
    """train.threads sets torch's thread count for the process; give the other test files theirs back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _grid(tmp_path, name, text):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return str(path)


def test_sweep_writes_table_dedupes_and_skips_finished_runs(tmp_path, monkeypatch):
    a = _grid(tmp_path, "ga", "title: A\nproduct: {model.head.expansion: [1, 2]}\n")
    b = _grid(tmp_path, "gb", "title: B\ncells: [{model.head.expansion: 2}]\n")  # shares a cell with A
    out = tmp_path / "out"
    calls = []
    real_train = ablate.train
    monkeypatch.setattr(ablate, "train", lambda cfg, **kw: calls.append(cfg) or real_train(cfg, **kw))
    run_ablation(f"{a},{b}", seeds=2, out=out, config="micro", overrides=TINY, progress=False)
    assert len(calls) == 4  # 2 cells x 2 seeds; grid B's cell reuses grid A's runs
    assert len(list((out / "runs").iterdir())) == 4

    summary = json.loads((out / "summary.json").read_text())
    cells = summary["grids"]["ga"]["cells"]
    assert [c["cell"] for c in cells] == ["expansion=1", "expansion=2"]
    assert all(c["n"] == 2 and c["seeds"] == [0, 1] for c in cells)
    assert [c["code_dim"] for c in cells] == [64, 128]
    assert 0 <= cells[0]["zs_mean"]["min"] <= cells[0]["zs_mean"]["mean"] <= cells[0]["zs_mean"]["max"] <= 1
    assert summary["grids"]["gb"]["cells"][0]["zs_mean"] == cells[1]["zs_mean"]
    md = (out / "summary.md").read_text()
    assert "| expansion=1 | 64 | 2 |" in md and "| expansion=2 | 128 | 2 |" in md and "±" in md
    for name in ("ga_bars.png", "ga_l0_training.png", "gb_bars.png"):
        assert (out / "plots" / name).stat().st_size > 1000
    # every finished run has its final model and eval, and no leftover checkpoints
    run = next((out / "runs").iterdir())
    assert (run / "final" / "model.safetensors").is_file() and (run / "eval.json").is_file()
    assert not (run / "checkpoints").exists()

    mtimes = {p: (p / "final" / "model.safetensors").stat().st_mtime_ns for p in (out / "runs").iterdir()}
    calls.clear()
    run_ablation(a, seeds=2, out=out, config="micro", overrides=TINY, progress=False)
    assert calls == []  # nothing retrained
    assert {p: (p / "final" / "model.safetensors").stat().st_mtime_ns for p in mtimes} == mtimes


def test_crashed_run_resumes_from_its_checkpoint(tmp_path):
    grid = load_grid(_grid(tmp_path, "g", "cells: [{model.head.kind: relu}]\n"))
    (run,) = plan([grid], ablate.base_dict("micro", overrides=TINY), [0], tmp_path / "out")
    assert run.cfg.train.ckpt_every == 1
    ablate.train(run.cfg)  # a run that stopped before its evaluation, final model lost
    shutil.rmtree(run.dir / "final")
    assert (run.dir / "checkpoints").is_dir()
    row, status = execute(run)
    assert status == "resumed"
    assert row["seed"] == 0 and row["code_dim"] == 128 and len(row["l0_curve"]) == 2
    assert execute(run)[1] == "reused"


def test_unknown_grid_and_bad_grid_files_are_clear_errors(tmp_path, capsys):
    with pytest.raises(AblateError, match="unknown grid 'nope'; known: expansion, sparsifier, cap, placement"):
        resolve_grids("nope")
    with pytest.raises(AblateError, match="unknown grid keys"):
        load_grid(_grid(tmp_path, "bad", "cellz: []\n"))
    with pytest.raises(AblateError, match="no cells"):
        load_grid(_grid(tmp_path, "empty", "title: x\n"))
    bad_key = load_grid(_grid(tmp_path, "badkey", "cells: [{model.head.kind: sigmoid}]\n"))
    with pytest.raises(AblateError, match="cell kind=sigmoid: model.head.kind: must be one of"):
        plan([bad_key], ablate.base_dict("micro", overrides=TINY), [0], tmp_path / "o")
    assert main(["ablate", "--grid", "nope", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sparseclip: error: unknown grid 'nope'") and len(err.strip().splitlines()) == 1
    assert main(["ablate", "--seeds", "0", "--out", str(tmp_path / "o")]) == 2


def test_shipped_grids_cover_the_issue():
    grids = {g.name: g for g in resolve_grids("all")}
    assert list(grids) == ["expansion", "sparsifier", "cap", "placement"]
    exp = grids["expansion"]
    assert {c.get("model.head.expansion") for c in exp.cells} == {None, 1, 2, 4, 8, 16, 32}
    assert {c.get("model.head.kind") for c in exp.cells} == {"dense", "relu", "linear_wide"}
    assert {c.get("model.logit_scale_max") for c in grids["cap"].cells} == {20, 40, 50, 100}
    assert len(grids["placement"].cells) == 4


def _entry(mean, std, n=3):
    return {"n": n, "zs_mean": {"mean": mean, "std": std}}


def test_compare_separates_signal_from_noise():
    assert compare(_entry(0.5, 0.01), _entry(0.4, 0.01), "zs_mean", 100)[1] == "higher"
    assert compare(_entry(0.4, 0.01), _entry(0.5, 0.01), "zs_mean")[1] == "lower"
    d, word = compare(_entry(0.5, 0.2), _entry(0.4, 0.2), "zs_mean", 100)
    assert word == "within noise" and d == pytest.approx(10.0)
    assert compare(_entry(0.9, 0.0, n=1), _entry(0.1, 0.0, n=1), "zs_mean")[1] == "within noise"


def _cell(mean, std=0.01, dim=64, **settings):
    return {**_entry(mean, std), "code_dim": dim, "cell": str(settings), "settings": settings}


def test_sweet_spot_needs_an_interior_maximum_beyond_noise():
    caps = [_cell(m, **{"model.logit_scale_max": c}) for m, c in [(0.40, 20), (0.60, 40), (0.55, 50), (0.45, 100)]]
    (line,) = verdicts({"cap": [{**c, "image_L0_pct": {"mean": 10.0, "std": 0.0}} for c in caps]})[-1:]
    assert "sweet spot**: reproduced" in line and "cap 40" in line
    ends = [{**c, "image_L0_pct": {"mean": 10.0, "std": 0.0}} for c in caps]
    ends[-1]["zs_mean"] = {"mean": 0.7, "std": 0.01}  # the highest cap is best: no sweet spot
    assert "sweet spot**: not reproduced" in verdicts({"cap": ends})[-1]
    noisy = [{**c, "zs_mean": {"mean": c["zs_mean"]["mean"], "std": 0.3}} for c in ends[:3]]
    assert "inconclusive" in verdicts({"cap": noisy})[-1]


def test_parameter_matched_control_verdict():
    def exp_grid(relu_acc, lin_acc):
        cells = [_cell(0.5, dim=64, **{"model.head.kind": "dense"})]
        for k, dim in [(1, 64), (8, 512)]:
            cells += [_cell(relu_acc, dim=dim, **{"model.head.kind": "relu", "model.head.expansion": k}),
                      _cell(lin_acc, dim=dim, **{"model.head.kind": "linear_wide", "model.head.expansion": k})]
        return {"expansion": [{**c, "image_L0_pct": {"mean": 50.0, "std": 1.0}} for c in cells]}

    said = " ".join(verdicts(exp_grid(0.6, 0.5)))
    assert "sparsity or from extra parameters** (the control the paper lacked): the ReLU" in said
    assert "512: +10.0 (higher)" in said
    assert "not from sparsity" in " ".join(verdicts(exp_grid(0.5, 0.6)))


def test_control_verdict_reads_every_width_not_only_the_widest():
    """The widest pair is level, a narrower one is lower: the verdict must say so, not 'inconclusive'."""
    cells = [_cell(0.5, dim=64, **{"model.head.kind": "dense"})]
    for k, dim, relu_acc in [(1, 64, 0.40), (8, 512, 0.50)]:
        cells += [_cell(relu_acc, dim=dim, **{"model.head.kind": "relu", "model.head.expansion": k}),
                  _cell(0.5, dim=dim, **{"model.head.kind": "linear_wide", "model.head.expansion": k})]
    said = [v for v in verdicts({"expansion": [{**c, "image_L0_pct": {"mean": 50.0, "std": 1.0}} for c in cells]})
            if "extra parameters" in v][0]
    assert "not from sparsity" in said and "lower at 64 dims of 2 widths" in said


def test_sparsifier_verdict_does_not_count_a_win_over_a_collapsed_one():
    from sparseclip.experiments.ablate_summary import CHANCE

    def grid(l1_acc):
        cells = [_cell(0.45, **{"model.head.kind": "relu"}),
                 _cell(l1_acc, **{"model.head.kind": "relu", "loss.l1_coef": 0.01}),
                 _cell(CHANCE, **{"model.head.kind": "topk", "model.head.topk": 16})]  # at chance: collapsed
        return {"sparsifier": [{**c, "train_l0_start_pct": {"mean": 50.0}, "train_l0_end_pct": {"mean": 40.0}}
                               for c in cells]}

    level = [v for v in verdicts(grid(0.45)) if "ReLU beats" in v][0]
    assert "not shown at this scale" in level and "partly" not in level and "collapsed to chance" in level
    assert "reproduced against the 1 sparsifier that learn" in [v for v in verdicts(grid(0.35)) if "ReLU beats" in v][0]
    assert "not reproduced" in [v for v in verdicts(grid(0.55)) if "ReLU beats" in v][0]
