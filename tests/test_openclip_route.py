"""Issue 26: your own OpenCLIP model. The README's ViT-B-32 line runs as written on a real (randomly initialised)
ViT-B-32 saved to safetensors; docs/openclip.md's console session (train -> eval -> analyze -> report -> index ->
steer-train) runs command by command on a small OpenCLIP architecture registered here (ViT-B-32 takes minutes
for the whole route on a 2-core CPU); a pretrained tag is read from a temporary Hugging Face cache."""

from __future__ import annotations

import csv
import json
import re
import shlex
from pathlib import Path

import pytest
import torch

from sparseclip.cli import main
from sparseclip.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
TINY = "sparseclip-test-vit"  # a small OpenCLIP architecture, registered by the fixture below


def _save_random(name: str, path: Path) -> dict[str, torch.Tensor]:
    """A randomly initialised OpenCLIP ``name`` written to safetensors; its state dict."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(0)
    state = open_clip.create_model(name, pretrained=None).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return state


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    """Register a ViT of 2 blocks, width 64, 32 px (and a 2-block text transformer) with OpenCLIP."""
    import open_clip

    path = tmp_path_factory.mktemp("arch") / f"{TINY}.json"
    path.write_text(json.dumps({
        "embed_dim": 64,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}))
    open_clip.add_model_config(path)
    return TINY


@pytest.fixture(scope="module")
def b32(tmp_path_factory):
    """A ViT-B-32 (random weights, ~600 MB) written to safetensors, and a CSV of world images: one micro batch
    (32 pairs; the towers' features of each pair are computed once, at 224 px / 77 tokens)."""
    from sparseclip.data.world import World

    root = tmp_path_factory.mktemp("b32")
    weights = root / "vitb32.safetensors"
    state = _save_random("ViT-B-32", weights)
    world = World(seed=3, image_size=64)
    (root / "img").mkdir()
    rows = []
    for i in range(32):
        image, caption, _ = world.sample(i)
        image.save(root / "img" / f"{i}.png")
        rows.append({"filepath": f"img/{i}.png", "title": caption})
    with (root / "my.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["filepath", "title"])
        w.writeheader()
        w.writerows(rows)
    return root, weights, state


def _readme_command() -> list[str]:
    """The README's "your CLIP" command (two lines joined, comments dropped), as words."""
    lines = (ROOT / "README.md").read_text().splitlines()
    i = next(i for i, ln in enumerate(lines) if "model.openclip_name=ViT-B-32" in ln)
    first, second = lines[i].split("#")[0].rstrip(), lines[i + 1].split("#")[0].strip()
    assert first.endswith("\\"), "the README's command is expected on two lines"
    return shlex.split(first.rstrip("\\") + " " + second)


def test_readme_vit_b32_line_trains_heads_only(b32, capsys, caplog):
    root, weights, state = b32
    words = _readme_command()
    assert words[:2] == ["sparseclip", "train"]
    paths = {"model.pretrained=vitb32.safetensors": f"model.pretrained={weights}",
             "data.train_data=my.csv": f"data.train_data={root / 'my.csv'}", "runs/b32": str(root / "runs" / "b32")}
    args = [paths.get(w, w) for w in words[1:]]
    assert len([w for w in words if w in paths]) == 3  # only the paths change
    assert main(args) == 0
    out = capsys.readouterr()
    assert re.search(rf"\[train\] tower weights: {re.escape(str(weights))} \(sha256 [0-9a-f]{{12}}\)", out.out)
    assert "initialized randomly" not in caplog.text + out.err
    final = root / "runs" / "b32" / "final" / "model.safetensors"
    assert final.is_file() and final.stat().st_size < 20e6  # heads only: the towers (~600 MB) are a reference

    from sparseclip.model.checkpoint import load_model

    model, cfg = load_model(root / "runs" / "b32")
    assert cfg.data.image_size == 224 and cfg.data.context_length == 77  # from ViT-B-32, not micro's 32 / 32
    loaded = model.towers.state_dict()
    assert len(loaded) > 150
    for key, value in loaded.items():  # the towers are the file's tensors (the replaced projections aside)
        assert torch.equal(value, state[key]), key


def _console_session(path: Path) -> list[tuple[str, list[str]]]:
    """The first ```console block: [(command, documented output lines)]."""
    block = re.findall(r"```console\n(.*?)```", path.read_text(), flags=re.S)[0]
    steps: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    return steps


def _shape(line: str) -> str:
    """A printed line with its numbers and hash masked (another model prints other figures)."""
    return re.sub(r"-?\d+(?:\.\d+)?", "#", re.sub(r"sha256 [0-9a-f]{12}", "sha256 H", line))


def test_doc_session_runs_on_an_openclip_model(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _save_random(tiny, tmp_path / "vitb32.safetensors")
    session = _console_session(ROOT / "docs" / "openclip.md")
    commands = [" ".join(shlex.split(c)[1:3]) for c, _ in session]
    assert [c.split()[0] for c in commands] == ["import-world", "train", "eval", "analyze", "report", "index",
                                                "index", "steer-train"]
    for command, documented in session:
        argv = shlex.split(command)
        assert argv[0] == "sparseclip"
        if argv[1] == "train":  # the small architecture in place of the preset's ViT-B-32
            argv.append(f"model.openclip_name={tiny}")
        capsys.readouterr()
        assert main(argv[1:]) == 0, command
        got = {_shape(ln) for ln in capsys.readouterr().out.splitlines() if ln and not ln[0].isspace()}
        for want in (ln for ln in documented if ln and not ln[0].isspace()):
            assert _shape(want) in got, f"{command}\nthe doc shows: {want}\nprinted: {sorted(got)}"
    run = tmp_path / "runs" / "b32"
    cfg = json.loads((run / "final" / "config.json").read_text())
    assert cfg["model"]["openclip_name"] == tiny and cfg["data"]["image_size"] == 32  # the model's, not 224
    assert (run / "report" / "index.html").is_file() and any((run / "vlm").iterdir())


def test_pretrained_tag_from_the_local_cache(tiny, tmp_path, monkeypatch):
    import huggingface_hub.constants
    import open_clip.pretrained

    from sparseclip.model import create_model
    from sparseclip.model.towers import TowerError, weights_summary

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--sparseclip-test--tiny"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    state = _save_random(tiny, repo / "snapshots" / commit / "open_clip_model.safetensors")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, tiny, {
        "cached": {"hf_hub": "sparseclip-test/tiny/", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
        "absent": {"hf_hub": "sparseclip-test/absent/"}})
    base = ["data.train_data=x.csv", f"model.openclip_name={tiny}"]
    cfg = load_config("openclip_sparse", [*base, "model.pretrained=cached"])
    assert cfg.model.image_mean == [0.5] * 3 and cfg.model.image_std == [0.5] * 3  # the tag's normalisation
    assert (cfg.data.image_size, cfg.data.context_length) == (32, 77)
    loaded = create_model(cfg.model).towers.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in loaded.items())
    assert re.fullmatch(r"OpenCLIP 'cached': .*/open_clip_model\.safetensors \(sha256 [0-9a-f]{12}\)",
                        weights_summary(cfg.model))
    with pytest.raises(TowerError, match=r"^model.pretrained=absent: .* not in the local .*nothing is downloaded"):
        create_model(load_config("openclip_sparse", [*base, "model.pretrained=absent"]).model)
    with pytest.raises(TowerError, match="not an OpenCLIP pretrained tag"):
        create_model(load_config("openclip_sparse", [*base, "model.pretrained=nosuchtag"]).model)


def test_what_the_model_fixes_is_refused_only_when_the_user_set_it(tmp_path):
    with pytest.raises(ConfigError, match=r"^data.image_size=32: ViT-B-32 needs 224 \(its positional embedding"):
        load_config("micro", ["model.openclip_name=ViT-B-32", "data.image_size=32"])
    with pytest.raises(ConfigError, match=r"^data.context_length=32: ViT-B-32 needs 77"):
        load_config("micro", ["model.openclip_name=ViT-B-32", "data.context_length=32"])
    with pytest.raises(ConfigError, match="unknown OpenCLIP model 'ViT-Nope'"):
        load_config("micro", ["model.openclip_name=ViT-Nope"])
    mine = tmp_path / "mine.yaml"  # the user's own file: its values are the user's, micro's (extended) are not
    mine.write_text("extends: micro\ntrain: {steps: 3}\n")
    cfg = load_config(str(mine), ["model.openclip_name=ViT-B-32"])
    assert (cfg.data.image_size, cfg.data.context_length, cfg.train.steps) == (224, 77, 3)
    mine.write_text("extends: micro\ndata: {image_size: 64}\n")
    with pytest.raises(ConfigError, match=r"^data.image_size=64: ViT-B-32 needs 224"):
        load_config(str(mine), ["model.openclip_name=ViT-B-32"])
    cfg = load_config("openclip_sparse", ["data.train_data=x.csv"])
    assert (cfg.data.image_size, cfg.data.context_length) == (224, 77)
    assert cfg.model.freeze_image and cfg.model.freeze_text and cfg.model.init_at_cap
    assert cfg.model.logit_scale_max == 20 and cfg.model.head.kind == "relu" and cfg.train.feature_cache
