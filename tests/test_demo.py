import json

from sparseclip.cli import main


def test_demo_writes_table_plots_and_reuses_runs(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--steps", "2", "--no-analysis", "--no-progress",
            "data.num_val=16", "data.num_probe_train=16", "train.tensorboard=false", "train.batch_size=8"]
    assert main(args) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["dense", "sparse"]
    assert rows[0]["code_dim"] == 128 and rows[1]["code_dim"] == 4096
    assert rows[1]["image_L0"] <= rows[1]["code_dim"] and rows[0]["image_L0_pct"] == 100.0
    md = (out / "results.md").read_text()
    assert "| zs_mean |" in md and "Sparse - dense mean zero-shot accuracy" in md
    for png in ("loss.png", "l0.png", "accuracy.png"):
        assert (out / "plots" / png).stat().st_size > 1000
    mtime = (out / "sparse" / "final" / "model.safetensors").stat().st_mtime
    capsys.readouterr()
    assert main(args) == 0  # a second run reuses the finished runs
    assert "already trained" in capsys.readouterr().out
    assert (out / "sparse" / "final" / "model.safetensors").stat().st_mtime == mtime
