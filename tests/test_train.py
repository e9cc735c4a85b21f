import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from sparseclip import load_config
from sparseclip.cli import main
from sparseclip.eval import evaluate
from sparseclip.model.checkpoint import CheckpointError, load_model
from sparseclip.train import train
from sparseclip.train.logger import read_log


def _cfg(tmp_path, name, *extra):
    return load_config("micro", [f"train.output_dir={tmp_path / name}", "train.tensorboard=false",
                                 "train.progress=false", "train.steps=6", "train.log_every=1",
                                 "train.ckpt_every=3", "train.batch_size=16", *extra])


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """A run of :func:`_cfg`'s settings, read by the tests below."""
    return train(_cfg(tmp_path_factory.mktemp("full"), "full"))


def test_train_resume_continues_exactly(tmp_path, full):
    ref = [r["loss"] for r in read_log(full)]
    assert len(ref) == 6 and all(r == r for r in ref)

    # A run that "crashed" after step 3: only the step-3 checkpoint survives.
    crashed = train(_cfg(tmp_path, "crashed"))
    shutil.rmtree(crashed / "final")
    for d in (crashed / "checkpoints").iterdir():
        if d.name != "step_000003":
            shutil.rmtree(d)
    train(_cfg(tmp_path, "crashed"), resume="latest")
    resumed = [r["loss"] for r in read_log(crashed)]
    assert resumed == ref  # identical losses, including steps 4-6 after the resume
    a = load_file(str(full / "final" / "model.safetensors"))
    b = load_file(str(crashed / "final" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_logit_scale_max_holds_during_training(tmp_path):
    run = train(_cfg(tmp_path, "cap", "model.logit_scale_max=5.0", "train.lr=0.05"))
    logs = read_log(run)
    assert max(r["logit_scale"] for r in logs) <= 5.0 + 1e-4
    model, _ = load_model(run)
    assert float(model.logit_scale.detach().exp()) <= 5.0 + 1e-4


def test_log_has_sparsity_and_speed(full):
    run = full
    rec = read_log(run)[-1]
    for key in ("loss", "lr", "logit_scale", "image_l0", "text_l0", "image_l0_pct", "image_alive_pct",
                "samples_per_s"):
        assert key in rec
    assert 0 < rec["image_l0"] <= 8 * 64  # relu head: micro code dim is 8 * 64
    assert json.loads((run / "data_stats.json").read_text())["seen"] == 6 * 16


def test_eval_end_to_end_and_cli(tmp_path, capsys):
    cfg = _cfg(tmp_path, "ev", "data.num_val=24", "data.num_probe_train=24")
    run = train(cfg)
    model, loaded_cfg = load_model(run)
    res = evaluate(model, loaded_cfg, progress=False)
    assert set(res["zeroshot"]) == {"color", "shape", "size", "position", "count"}
    for v in res["zeroshot"].values():
        assert 0.0 <= v["acc1"] <= 1.0
    assert res["sparsity"]["image"]["dim"] == 512
    assert (res["sparsity"]["image"]["L0"] >= 0) and res["retrieval"]["text_to_image_R@10"] >= 0
    out = tmp_path / "eval.json"
    assert main(["eval", str(run), "--out", str(out), "--no-progress", "--no-probe"]) == 0
    assert json.loads(out.read_text())["head"] == "relu"


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoints"):
        train(_cfg(tmp_path, "none"), resume="latest")


def test_foreign_checkpoint_rejected(tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes(b"\x80\x04not safetensors, maybe a pickle")
    (bad / "config.json").write_text(json.dumps({"name": "x"}))
    assert main(["eval", str(bad), "--no-progress"]) == 2
    assert "not a readable safetensors file" in capsys.readouterr().err
