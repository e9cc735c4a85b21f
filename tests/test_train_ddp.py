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


def test_gradient_accumulation_keeps_the_full_batch_loss(tmp_path):
    one = train(load_config("micro", [f"train.output_dir={tmp_path / 'one'}", *COMMON]))
    acc = train(load_config("micro", [f"train.output_dir={tmp_path / 'acc'}", "train.accum_steps=4", *COMMON]))
    assert _losses(acc) == pytest.approx(_losses(one), rel=1e-4)
    a, b = load_file(str(one / "final/model.safetensors")), load_file(str(acc / "final/model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


@pytest.mark.parametrize("memory_efficient", [False, True])
def test_torchrun_two_ranks_equal_one_process(tmp_path, memory_efficient):
    extra = [f"loss.memory_efficient={str(memory_efficient).lower()}"]
    single = train(load_config("micro", [f"train.output_dir={tmp_path / 'single'}", *COMMON, *extra]))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "sparseclip", "train", "micro",
           f"train.output_dir={tmp_path / 'ddp'}", *COMMON, *extra, "train.device=cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ddp = tmp_path / "ddp"
    assert _losses(ddp) == pytest.approx(_losses(single), rel=1e-4)
    a, b = load_file(str(single / "final/model.safetensors")), load_file(str(ddp / "final/model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


@pytest.mark.parametrize("extra", [["train.precision=bf16"], ["train.grad_checkpointing=true"],
                                   ["train.precision=bf16", "train.accum_steps=2"]])
def test_amp_and_checkpointing_run_on_cpu(tmp_path, extra):
    run = train(load_config("micro", [f"train.output_dir={tmp_path / 'r'}", *COMMON, *extra]))
    losses = _losses(run)
    assert len(losses) == 3 and all(0 < v < 10 for v in losses)
