"""Issue 26: the README's "your own OpenCLIP model" line runs as written, on a real (randomly initialised)
OpenCLIP ViT-B-32 saved to safetensors, and the route after it works from the CLI."""

import csv
import re
from pathlib import Path

import pytest
import torch

from sparseclip.cli import main
from sparseclip.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def b32(tmp_path_factory):
    """A ViT-B-32 (random weights, ~600 MB) written to safetensors, and a 64-pair CSV of world images."""
    import open_clip
    from safetensors.torch import save_file

    from sparseclip.data.world import World

    root = tmp_path_factory.mktemp("b32")
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    weights = root / "vitb32.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    world = World(seed=3, image_size=64)
    (root / "img").mkdir()
    rows = []
    for i in range(64):
        image, caption, labels = world.sample(i)
        image.save(root / "img" / f"{i}.png")
        shape = next(x.split(":")[1] for x in labels if x.startswith("shape:"))
        rows.append({"filepath": f"img/{i}.png", "title": caption, "shape": shape})
    with (root / "my.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["filepath", "title", "shape"])
        w.writeheader()
        w.writerows(rows)
    return root, weights, model.state_dict()


def _readme_line() -> str:
    text = (ROOT / "README.md").read_text()
    line = next(ln for ln in text.splitlines() if "model.openclip_name=ViT-B-32" in ln)
    line = line.split("#")[0].rstrip().rstrip("\\").strip()
    nxt = text.splitlines()[text.splitlines().index(next(ln for ln in text.splitlines() if ln.startswith(line[:40])))
                            + 1]
    return line + " " + nxt.split("#")[0].strip()


def test_readme_vit_b32_line_trains_heads_only(b32, capsys, caplog):
    root, weights, state = b32
    words = _readme_line().split()
    assert words[:2] == ["sparseclip", "train"]
    args = [w.replace("vitb32.safetensors", str(weights)).replace("data.train_data=my.csv",
                                                                   f"data.train_data={root / 'my.csv'}")
            .replace("runs/b32", str(root / "runs" / "b32")) for w in words[1:]]
    assert main(args) == 0
    out = capsys.readouterr()
    assert re.search(r"\[train\] tower weights: .*vitb32\.safetensors \(sha256 [0-9a-f]{12}\)", out.out)
    assert "initialized randomly" not in caplog.text and "initialized randomly" not in out.err
    final = root / "runs" / "b32" / "final" / "model.safetensors"
    assert final.is_file() and final.stat().st_size < 20e6  # heads only: the frozen towers are a reference

    from sparseclip.model.checkpoint import load_model

    model, cfg = load_model(root / "runs" / "b32")
    assert cfg.data.image_size == 224 and cfg.data.context_length == 77  # from ViT-B-32, not micro's 32 / 32
    loaded = model.towers.state_dict()
    for key in ("visual.conv1.weight", "visual.transformer.resblocks.11.mlp.c_fc.weight", "token_embedding.weight"):
        assert torch.equal(loaded[key], state[key])  # the tower is the file's tensors


def test_route_after_training(b32, capsys):
    root, _, _ = b32
    run = root / "runs" / "b32"
    if not (run / "final").is_dir():
        pytest.skip("needs the trained run of the previous test")
    data = str(root / "my.csv")
    assert main(["eval", str(run), "--data", data, "--label-key", "shape", "--out", str(root / "e.json")]) == 0
    import json

    res = json.loads((root / "e.json").read_text())
    assert 0 <= res["retrieval"]["text_to_image_R@1"] <= 1 and "shape" in res["zeroshot"]
    assert res["sparsity"]["image"]["dim"] == 8 * 64  # micro's head: 8 x embed_dim 64
    assert main(["index", "build", str(run), "--data", data, "--out", str(root / "index")]) == 0
    assert main(["index", "search", str(root / "index"), "--text", "a red circle", "-k", "3"]) == 0
    hits = [ln for ln in capsys.readouterr().out.splitlines() if re.match(r"^\s+[123]\s+\d\.\d+\s+img/\d+\.png", ln)]
    assert len(hits) == 3  # three ranked hits from the CSV's images


def test_an_override_the_model_cannot_take_is_one_line():
    with pytest.raises(ConfigError, match=r"data.image_size=32: ViT-B-32 needs 224"):
        load_config("micro", ["model.openclip_name=ViT-B-32", "data.image_size=32"])
    with pytest.raises(ConfigError, match=r"data.context_length=32: ViT-B-32 needs 77"):
        load_config("micro", ["model.openclip_name=ViT-B-32", "data.context_length=32"])
    with pytest.raises(ConfigError, match="unknown OpenCLIP model"):
        load_config("micro", ["model.openclip_name=ViT-Nope"])
    cfg = load_config("openclip_sparse", ["data.train_data=x.csv"])
    assert (cfg.data.image_size, cfg.data.context_length) == (224, 77)
    assert cfg.model.freeze_image and cfg.model.freeze_text and cfg.model.init_at_cap
