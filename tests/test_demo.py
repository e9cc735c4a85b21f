import json

from sparseclip.cli import main


def test_demo_writes_table_plots_and_reuses_runs(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--steps", "2", "--no-analysis", "--no-progress",
            "data.num_val=16", "data.num_probe_train=16", "data.num_train=32", "train.tensorboard=false",
            "train.batch_size=8"]
    assert main(args) == 0
    rows = {r["model"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert list(rows) == ["dense", "sparse", "lite_dense", "lite_sparse", "lite_wide"]
    assert rows["dense"]["code_dim"] == 128 and rows["sparse"]["code_dim"] == 4096
    assert rows["sparse"]["image_L0"] <= 4096 and rows["dense"]["image_L0_pct"] == 100.0
    assert "from-scratch ViT" in rows["sparse"]["name"] and "16 samples" in rows["sparse"]["name"]
    assert "EfficientNet-Lite0" in rows["lite_sparse"]["name"] and "ReLU head 4096-d" in rows["lite_sparse"]["name"]
    assert rows["lite_wide"]["code_dim"] == 4096 and rows["lite_wide"]["image_L0_pct"] == 100.0
    for r in rows.values():
        for key in ("zs_mean", "t2i_R@1", "i2t_R@1", "image_L0_pct", "text_L0_pct", "image_active_pct"):
            assert isinstance(r[key], float), key
    md = (out / "results.md").read_text()
    assert "| zs_mean |" in md and "- lite_sparse - lite_dense: zero-shot mean" in md
    for png in ("loss.png", "l0.png", "accuracy.png"):
        assert (out / "plots" / png).stat().st_size > 1000
    mtime = (out / "sparse" / "final" / "model.safetensors").stat().st_mtime
    capsys.readouterr()
    assert main(args) == 0  # a second run reuses the finished runs
    printed = capsys.readouterr().out
    assert printed.count("already trained") == 5
    assert (out / "sparse" / "final" / "model.safetensors").stat().st_mtime == mtime
