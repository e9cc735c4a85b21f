"""The trainer under torchrun (2 CPU processes, gloo) and with gradient accumulation matches one process."""

import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from sparseclip import load_config
from sparseclip.train import train
from sparseclip.train.logger import read_log

COMMON = ["train.tensorboard=false", "train.progress=false", "train.steps=3", "train.log_every=1",
          "train.batch_size=16", "train.ckpt_fractions=[1.0]", "train.threads=1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(run):
    return [r["loss"] for r in read_log(run)]


def _weights(run) -> dict:
    return load_file(str(run / "final/model.safetensors"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One process, float32, no accumulation: the losses and final weights every other way of training must give,
    and the initial weights (the trainer's seed, then the model) for comparing updates."""
    from sparseclip.model import create_model
    from sparseclip.train.loop import seed_everything

    cfg = load_config("micro", [f"train.output_dir={tmp_path_factory.mktemp('ref') / 'run'}", *COMMON])
    run = train(cfg)
    seed_everything(cfg.train.seed)
    return _losses(run), _weights(run), create_model(cfg.model).state_dict()


def _update(weights: dict, init: dict) -> torch.Tensor:
    return torch.cat([(weights[k].float() - init[k].float()).flatten() for k in init])


def test_gradient_accumulation_keeps_the_full_batch_loss(tmp_path, reference):
    losses, weights, _ = reference
    acc = train(load_config("micro", [f"train.output_dir={tmp_path / 'acc'}", "train.accum_steps=4", *COMMON]))
    assert _losses(acc) == pytest.approx(losses, rel=1e-4)
    b = _weights(acc)
    assert all(torch.allclose(weights[k], b[k], atol=1e-5) for k in weights)


@pytest.mark.parametrize("memory_efficient", [False, True])
def test_torchrun_two_ranks_equal_one_process(tmp_path, reference, memory_efficient):
    """2 gloo ranks of 8 on the same global batch of 16 give the single process's losses and weights (the
    memory-efficient loss is exact: its run is compared with the naive single-process one too)."""
    losses, weights, _ = reference
    extra = [f"loss.memory_efficient={str(memory_efficient).lower()}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "sparseclip", "train", "micro",
           f"train.output_dir={tmp_path / 'ddp'}", *COMMON, *extra, "train.device=cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ddp = tmp_path / "ddp"
    assert _losses(ddp) == pytest.approx(losses, rel=1e-4)
    b = _weights(ddp)
    assert all(torch.allclose(weights[k], b[k], atol=1e-5) for k in weights)


def test_gradient_checkpointing_changes_nothing(tmp_path, reference):
    losses, weights, _ = reference
    run = train(load_config("micro", [f"train.output_dir={tmp_path / 'r'}", *COMMON,
                                      "train.grad_checkpointing=true"]))
    assert _losses(run) == pytest.approx(losses, rel=1e-6)
    b = _weights(run)
    assert all(torch.allclose(weights[k], b[k], atol=1e-6) for k in weights)


@pytest.mark.parametrize("extra", [["train.precision=bf16"], ["train.precision=bf16", "train.accum_steps=2"]])
def test_bf16_on_cpu_follows_the_float32_run(tmp_path, reference, extra):
    """bf16 autocast is in effect (the losses differ from float32's by more than rounding) and close to it: losses
    within 0.3% (measured: 0.17% at most), and the weights moved the way float32's did (cosine of the two updates
    over all parameters 0.982 measured; a step that ignored or broke the gradients would not be)."""
    losses, weights, init = reference
    run = train(load_config("micro", [f"train.output_dir={tmp_path / 'r'}", *COMMON, *extra]))
    got = _losses(run)
    assert got == pytest.approx(losses, rel=3e-3)
    assert max(abs(a / b - 1) for a, b in zip(got, losses, strict=True)) > 1e-4  # not float32's rounding (1e-7)
    ours, theirs = _update(_weights(run), init), _update(weights, init)
    assert float(torch.nn.functional.cosine_similarity(ours, theirs, dim=0)) > 0.95
    assert 0.8 < float(ours.norm() / theirs.norm()) < 1.25
