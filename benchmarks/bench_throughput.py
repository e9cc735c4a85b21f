"""Training throughput of ``sparseclip train`` against OpenCLIP's own trainer (``open_clip_train``).

    python benchmarks/bench_throughput.py                          # the documented table (a few minutes on CPU)
    python benchmarks/bench_throughput.py --batch-size 2 --steps 1  # seconds: checks that everything runs

What is measured: training samples per second (forward + backward + optimiser step, data loading included) of
three runs on the same towers (one named OpenCLIP model config, ``--model``), the same batch size, precision,
device and thread count, one process each, one after the other:

  1. OpenCLIP: ``python -m open_clip_train.main --dataset-type synthetic --model NAME ...`` (installed with
     ``open_clip_torch``): the CLIP model with its usual dense projection to ``embed_dim``. Its samples/s are
     read from its ``Train Epoch: ... Batch (t): ..., N/s`` log lines (``--log-every-n-steps 1``, so each line
     is one step: batch size / that step's wall time, data loading included).
  2. ``sparseclip train`` with ``model.openclip_name=NAME`` and a dense head (the same projection to
     ``embed_dim``): its ``samples_per_s`` per record of ``RUN/log.jsonl`` (``train.log_every=1``: one step
     each, data loading included).
  3. the same with the wide non-negative head: ``model.head.kind=relu model.head.placement=append
     model.head.expansion=32`` (a ``embed_dim -> 32 * embed_dim`` linear + ReLU after the projection).

The first ``--warmup-steps`` steps of each run are discarded. A run's throughput is the total samples of the
measured steps divided by the sum of their step times (the median per-step rate is printed too). Ratios:
ours / OpenCLIP (samples/s; >= 1.0 means ours is at least as fast) and the ReLU head's step time over our
dense head's step time (<= 1.15 is the target).

The data differ, and the table says so: OpenCLIP's ``synthetic`` dataset is one constant image and one fixed
caption pushed through its training transform (random resized crop to the model's size, normalisation) and
tokenizer; ours is the built-in procedural world (coloured shapes and their captions) rendered at
``data.image_size`` px. Checkpoint saving, TensorBoard and evaluation are off or outside the timed steps in
both (OpenCLIP runs with ``--logs none``: console log only, no checkpoint). Everything runs offline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sparseclip.experiments.bench_tables import throughput_report
from sparseclip.files.atomic import write_json_atomic

# "Train Epoch: 0 [ 64/416 (15%)] Data (t): 0.012 Batch (t): 5.123, 6.24634/s, 6.24634/s/gpu LR: ..."
_OPENCLIP_LINE = re.compile(r"Train Epoch: \d+ \[\s*(\d+)/\s*\d+ .*?Batch \(t\): [0-9.]+, ([0-9.eE+-]+)/s,")
_PRECISION = {"fp32": "fp32", "bf16": "amp_bf16", "fp16": "amp"}  # ours -> open_clip_train's --precision


@dataclass
class Result:
    """Throughput of one run."""

    system: str
    head: str
    rates: list[float]  # samples/s of each measured step
    batch_size: int
    wall_s: float

    @property
    def samples_per_s(self) -> float:
        """Total measured samples over the total time of the measured steps."""
        return len(self.rates) * self.batch_size / sum(self.batch_size / r for r in self.rates)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def _run(cmd: list[str], log: Path, timeout: float, cwd: Path | None = None) -> float:
    """Run ``cmd`` with stdout+stderr to ``log``; return the wall time; raise with the log's tail on failure."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.time()
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout,
                              check=False, cwd=cwd)
    wall = time.time() - t0
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    return wall


def run_openclip(args: argparse.Namespace, work: Path) -> Result:
    """One epoch of ``open_clip_train`` on synthetic data; per-step samples/s from its log lines."""
    total = args.warmup_steps + args.steps
    cmd = [sys.executable, "-m", "open_clip_train.main", "--dataset-type", "synthetic", "--model", args.model,
           "--batch-size", str(args.batch_size), "--epochs", "1",
           "--train-num-samples", str(total * args.batch_size), "--workers", "0", "--device", args.device,
           "--precision", _PRECISION[args.precision], "--log-every-n-steps", "1", "--save-frequency", "0",
           "--zeroshot-frequency", "0", "--val-frequency", "0", "--lr", "5e-4", "--wd", "0.2",
           "--warmup", "1", "--grad-clip-norm", "1.0", "--seed", "0",
           "--logs", "none", "--name", "bench"]  # logs "none": no log file, no end-of-epoch checkpoint
    log = work / "openclip.log"
    wall = _run(cmd, log, args.timeout, cwd=work)  # it makes ./none/bench/params.txt
    rates = [float(m.group(2)) for m in _OPENCLIP_LINE.finditer(log.read_text(errors="replace"))]
    if len(rates) != total:
        raise RuntimeError(f"expected {total} 'Train Epoch' lines in {log}, found {len(rates)}")
    return Result("OpenCLIP open_clip_train", "dense", rates[args.warmup_steps:], args.batch_size, wall)


def run_ours(args: argparse.Namespace, work: Path, embed_dim: int, kind: str) -> Result:
    """``sparseclip train`` on the same towers with head ``kind`` (dense or relu); samples/s from log.jsonl."""
    total = args.warmup_steps + args.steps
    out = work / f"ours_{kind}"
    overrides = [
        f"model.openclip_name={args.model}", f"model.embed_dim={embed_dim}", f"model.head.kind={kind}",
        "model.head.placement=append", f"model.head.expansion={args.expansion}",
        "model.logit_scale_max=100",  # OpenCLIP's clamp (ln 100)
        f"data.image_size={args.image_size}", f"data.context_length={args.context_length}",
        f"train.steps={total}", f"train.batch_size={args.batch_size}", "train.warmup=1", "train.lr=5e-4",
        "train.weight_decay=0.2", "train.grad_clip=1.0", "train.log_every=1", "train.ckpt_fractions=[1.0]",
        "train.keep_last=1", "train.tensorboard=false", "train.progress=false", f"train.device={args.device}",
        f"train.precision={args.precision}", f"train.output_dir={out}",
    ]
    cmd = [sys.executable, "-m", "sparseclip", "train", args.base_config, *overrides, "--no-progress"]
    wall = _run(cmd, work / f"ours_{kind}.log", args.timeout)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    rates = [float(r["samples_per_s"]) for r in records if "samples_per_s" in r]
    if len(rates) != total:
        raise RuntimeError(f"expected {total} records with samples_per_s in {out / 'log.jsonl'}, found {len(rates)}")
    head = "dense" if kind == "dense" else f"relu {args.expansion}x ({args.expansion * embed_dim})"
    return Result("sparseclip train", head, rates[args.warmup_steps:], args.batch_size, wall)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ViT-S-32", help="OpenCLIP model config name (both trainers)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=12, help="measured steps per run (after the warm-up)")
    p.add_argument("--warmup-steps", type=int, default=1, help="first steps of each run not measured")
    p.add_argument("--expansion", type=int, default=32, help="ReLU head width = expansion * embed_dim")
    p.add_argument("--precision", choices=sorted(_PRECISION), default="fp32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--image-size", type=int, default=224, help="our data.image_size (match the model's)")
    p.add_argument("--context-length", type=int, default=77, help="our data.context_length (match the model's)")
    p.add_argument("--base-config", default="vit_b32_32x", help="sparseclip preset the overrides apply to")
    p.add_argument("--workdir", help="where runs and logs go (default: a temporary directory, removed)")
    p.add_argument("--timeout", type=float, default=900, help="seconds allowed per run")
    p.add_argument("--json", help="also write the setup and every run's per-step rates here (docs render it)")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup_steps < 0 or args.batch_size < 2:
        p.error("need --steps >= 1, --warmup-steps >= 0, --batch-size >= 2")

    import open_clip
    import torch

    model_cfg = open_clip.get_model_config(args.model)
    if model_cfg is None:
        p.error(f"unknown OpenCLIP model config {args.model!r}")
    embed_dim = int(model_cfg["embed_dim"])
    setup = {"model": args.model, "embed_dim": embed_dim, "batch_size": args.batch_size,
             "precision": args.precision, "device": args.device, "threads": torch.get_num_threads(),
             "steps": args.steps, "warmup_steps": args.warmup_steps, "expansion": args.expansion,
             "image_size": args.image_size, "context_length": args.context_length,
             "machine": f"{platform.machine()} ({platform.processor() or 'cpu'})", "cpus": os.cpu_count(),
             "torch": torch.__version__, "open_clip": getattr(open_clip, "__version__", "?"),
             "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    print(f"load average before: {setup['load_before']}", file=sys.stderr, flush=True)

    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="bench_throughput_")
    work = Path(args.workdir or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    try:
        results = []
        for name, fn in (("OpenCLIP", lambda: run_openclip(args, work)),
                         ("sparseclip dense", lambda: run_ours(args, work, embed_dim, "dense")),
                         ("sparseclip relu", lambda: run_ours(args, work, embed_dim, "relu"))):
            print(f"running {name} ...", file=sys.stderr, flush=True)
            results.append(fn())
            print(f"  done in {results[-1].wall_s:.0f} s: {results[-1].samples_per_s:.3f} samples/s",
                  file=sys.stderr, flush=True)
        setup["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        data = {"setup": setup, "runs": [asdict(r) for r in results]}
        print(throughput_report(data))
        if args.json:
            write_json_atomic(args.json, data)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
