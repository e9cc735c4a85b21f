"""The paper's ViT-B/32 32x recipe on one GPU for a fixed wall time: samples/s, peak memory, MFU and the L0 / active
curve, written to JSON (issue 35, item 3).

    python benchmarks/gpu_recipe.py --out runs/gpu_recipe                       # one GPU, the procedural world
    python benchmarks/gpu_recipe.py --out runs/gpu_recipe --data 'shards/{00000..00099}.tar'   # webdataset
    python benchmarks/gpu_recipe.py --dry-run --out /tmp/gpu_recipe_dry         # CPU, micro model, seconds

What it runs, all through ``sparseclip.train.train`` (no second training loop):

1. The config: preset ``vit_b32_32x`` (OpenCLIP's ViT-B-32 towers, a 512 -> 16,384 ReLU head after each, the
   logit-scale cap 50, AdamW lr 5e-4, weight decay 0.2) with ``train.precision=bf16`` and
   ``loss.memory_efficient=true`` (ChunkedClipLoss), trained from scratch; data: the built-in procedural world
   rendered at 224 px, or the webdataset shards given as ``--data``. ``--set key=value`` overrides anything.
2. The largest batch that fits (GPU only; ``--batch`` skips it): 2-step training runs at ``--batch-start``,
   doubling up to ``--batch-max`` (the paper's global batch) until one runs out of CUDA memory or peaks above
   ``--memory-fraction`` of the GPU, then ``--refine`` bisection steps between the last fit and the first miss
   (multiples of ``--batch-start``). Each probe is its own ``train`` call, so it allocates what training does.
3. The steps for the wall time: a ``--probe-steps`` run at that batch, its rate (the first step dropped: start-up)
   times ``--wall-s`` gives the steps of the measured run (``--max-steps`` caps them).
4. The measured run: ``train.log_every=--log-every``; from its ``log.jsonl``: samples/s (data loading included,
   the first log interval dropped as warm-up), the L0 (% of the 16,384 dims non-zero per input) and the active
   shares (``alive_pct``: non-zero on any input of the logged batch; ``unfired_pct``: fired on no input of the log
   window) of both modalities at every logged step; peak memory: ``torch.cuda.max_memory_allocated`` over it.

MFU = model FLOPs per sample x samples/s / the GPU's dense bf16 peak (a table of known devices below; another
device gets ``mfu: null`` and the reason). Model FLOPs per sample: the towers and wide heads' forward + backward,
counted by ``torch.utils.flop_counter.FlopCounterMode`` on one training forward + backward at batch 2 (attention
forced to the math kernel so its matmuls are counted on every device), plus the contrastive loss's
``6 x batch x code_dim`` (the batch x batch logits matmul forward and its two backward matmuls); recomputation
(gradient checkpointing, the chunked loss's second pass) is not model FLOPs and is not counted.

The JSON (``OUT/gpu_recipe.json``, written atomically) also holds the device, torch / CUDA versions, the config,
the batch search's trials, one process's data rate (world images rendered and transformed per second, to tell a
data-bound run) and the load average before and after. ``ran_on`` is ``"gpu"`` or ``"cpu dry run"``: a dry run
(``micro`` preset, CPU, fixed batch, a few steps) checks the script and says nothing about the recipe's speed.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

#: dense bf16 peak FLOP/s by device name (the first pattern found in ``torch.cuda.get_device_name()``, lower case)
PEAK_BF16 = (("h100 pcie", 756e12), ("h100 nvl", 835e12), ("h100", 989e12), ("h200", 989e12), ("gh200", 989e12),
             ("a100", 312e12), ("l40s", 362e12), ("a10g", 70e12), ("a10", 125e12), ("l4", 121e12))
JSON_NAME = "gpu_recipe.json"


class Refused(ValueError):
    """Bad input or a missing GPU, said in one line (exit 2)."""


def peak_bf16_flops(device_name: str) -> tuple[float | None, str]:
    """``(dense bf16 FLOP/s, where it came from)`` for a CUDA device name; ``(None, why)`` when unknown."""
    low = device_name.lower()
    for pattern, flops in PEAK_BF16:
        if pattern in low:
            return flops, f"table entry {pattern!r} (dense bf16, no sparsity)"
    return None, f"no dense bf16 peak known for {device_name!r} (table: {', '.join(p for p, _ in PEAK_BF16)})"


def model_flops_per_sample(cfg, device, batch: int) -> dict:
    """Forward + backward FLOPs per training sample at global batch ``batch``: towers and heads counted on a batch
    of 2, plus the loss's ``6 x batch x code_dim`` (see the module docstring)."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from sparseclip.model import create_model

    model = create_model(cfg.model).to(device).train()
    n = 2
    images = torch.randn(n, 3, cfg.data.image_size, cfg.data.image_size, device=device)
    tokens = torch.randint(1, 1000, (n, cfg.data.context_length), device=device)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        out = model(images, tokens)
        (out["image_features"].sum() + out["text_features"].sum()).backward()
    towers_heads = counter.get_total_flops() / n
    code_dim = int(model.code_dim)
    loss = 6 * batch * code_dim
    del model, out
    return {"per_sample": towers_heads + loss, "towers_and_heads": towers_heads, "loss": loss,
            "code_dim": code_dim,
            "method": "FlopCounterMode on one forward + backward at batch 2 (math attention), per sample; "
                      "+ 6 x batch x code_dim for the contrastive loss"}


def largest_batch(fits: Callable[[int], tuple[bool, dict]], start: int, limit: int, refine: int) -> tuple[int, list]:
    """The largest batch for which ``fits(batch)`` holds: doubling from ``start`` up to ``limit``, then ``refine``
    bisection steps (multiples of ``start``) between the last fit and the first miss. ``(batch, trials)``; raises
    :class:`Refused` when even ``start`` does not fit."""
    trials: list[dict] = []

    def attempt(b: int) -> bool:
        ok, info = fits(b)
        trials.append({"batch": b, "fits": ok, **info})
        return ok

    if not attempt(start):
        raise Refused(f"--batch-start {start} does not fit ({trials[-1].get('why', '')}); give a smaller one")
    lo, hi = start, None
    while lo * 2 <= limit:
        if not attempt(lo * 2):
            hi = lo * 2
            break
        lo *= 2
    for _ in range(refine if hi else 0):
        mid = (lo + hi) // 2 // start * start
        if mid <= lo:
            break
        if attempt(mid):
            lo = mid
        else:
            hi = mid
    return lo, trials


def steady_rate(records: list[dict], batch: int) -> tuple[float, int]:
    """``(samples/s, steps measured)`` over the log records' intervals, the first dropped when there are more."""
    intervals, prev = [], 0
    for r in records:
        if "samples_per_s" in r and r["samples_per_s"] > 0:
            n = (r["step"] - prev) * batch
            intervals.append((r["step"] - prev, n, n / r["samples_per_s"]))
        prev = r["step"]
    if len(intervals) > 1:
        intervals = intervals[1:]
    if not intervals:
        raise RuntimeError("the run logged no samples_per_s")
    return sum(i[1] for i in intervals) / sum(i[2] for i in intervals), sum(i[0] for i in intervals)


CURVE_KEYS = ("loss", "logit_scale", "image_l0_pct", "text_l0_pct", "image_alive_pct", "text_alive_pct",
              "image_unfired_pct", "text_unfired_pct")


def curve(records: list[dict], batch: int) -> list[dict]:
    """The L0 / active curve: per logged step, the samples seen and :data:`CURVE_KEYS`."""
    return [{"step": r["step"], "samples": r["step"] * batch, **{k: r.get(k) for k in CURVE_KEYS}} for r in records]


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help=f"folder for {JSON_NAME} and the measured run (OUT/run)")
    p.add_argument("--dry-run", action="store_true", help="CPU, micro preset, fixed batch, a few steps (a test)")
    p.add_argument("--data", help="webdataset shards (a pattern as data.train_data takes); default: the world")
    p.add_argument("--wall-s", type=float, help="wall time of the measured run (default 240; dry run 2)")
    p.add_argument("--batch", type=int, help="skip the search and use this batch (default on a dry run: 16)")
    p.add_argument("--batch-start", type=int, default=256)
    p.add_argument("--batch-max", type=int, default=32768, help="the paper's global batch")
    p.add_argument("--refine", type=int, default=2, help="bisection steps after the doubling")
    p.add_argument("--memory-fraction", type=float, default=0.92, help="a probe peaking above this share of the "
                   "GPU's memory does not fit")
    p.add_argument("--probe-steps", type=int, help="steps of the timed probe (default 6; dry run 2)")
    p.add_argument("--max-steps", type=int, help="cap on the measured run's steps (default none; dry run 6)")
    p.add_argument("--log-every", type=int, help="log interval of the measured run (default 10; dry run 1)")
    p.add_argument("--workers", type=int, help="data.workers (default: CPUs - 2, fewer when RAM would not hold "
                   "their prefetched batches; dry run 0)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, applied last")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in OUT/run")
    p.add_argument("--keep-probes", action="store_true", help="keep the probe runs (OUT/probes)")
    args = p.parse_args(argv)
    dry = args.dry_run
    for name, full, short in (("wall_s", 240.0, 2.0), ("probe_steps", 6, 2), ("log_every", 10, 1)):
        if getattr(args, name) is None:
            setattr(args, name, short if dry else full)
    if args.batch is None and dry:
        args.batch = 16
    if args.max_steps is None and dry:
        args.max_steps = 6
    if args.wall_s <= 0 or args.probe_steps < 2 or args.log_every < 1 or args.batch_start < 2:
        p.error("need --wall-s > 0, --probe-steps >= 2, --log-every >= 1, --batch-start >= 2")
    return args


def check_inputs(args: argparse.Namespace) -> None:
    """Refuse, in one line, a GPU run without CUDA and a ``--data`` that names no shard."""
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        raise Refused("no CUDA device here: this run needs one GPU (--dry-run checks the script on CPU)")
    if args.data:
        from sparseclip.data.wds import expand_urls

        urls = expand_urls(args.data)
        local = [u for u in urls if "://" not in u and not u.startswith("pipe:")]
        if local and not any(Path(u).is_file() for u in local):
            raise Refused(f"--data: no shard found ({len(local)} named, first: {local[0]})")


def make_config(args: argparse.Namespace, batch: int, steps: int, warmup: int, log_every: int, out: Path,
                workers: int):
    from sparseclip.config import load_config

    overrides = ["train.precision=bf16", "loss.memory_efficient=true",
                 f"train.device={'cpu' if args.dry_run else 'cuda'}", "train.ckpt_fractions=[1.0]",
                 "train.keep_last=1", "train.tensorboard=false", "train.progress=false", f"train.batch_size={batch}",
                 f"train.steps={steps}", f"train.warmup={warmup}", f"train.log_every={log_every}",
                 f"train.output_dir={out}", f"data.workers={workers}"]
    if args.data:
        overrides += ["data.kind=wds", f"data.train_data={args.data}"]
    return load_config("micro" if args.dry_run else "vit_b32_32x", overrides + list(args.set))


def auto_workers(args: argparse.Namespace, batch: int) -> int:
    """``--workers``, or CPUs - 2 capped so that their prefetched batches (4 each) stay within half the RAM."""
    if args.workers is not None:
        return args.workers
    if args.dry_run:
        return 0
    from sparseclip.train.memory import batch_bytes, machine_ram

    per_worker = 4 * batch_bytes(make_config(args, batch, 1, 1, 1, Path(args.out), 0))
    ram_cap = int(machine_ram() / 2 // per_worker) if machine_ram() else 1
    return max(0, min((os.cpu_count() or 2) - 2, ram_cap))


class Runner:
    """``train`` calls at a given batch, with their log, wall time and CUDA peak."""

    def __init__(self, args: argparse.Namespace):
        import torch

        self.args, self.torch = args, torch
        self.cuda = not args.dry_run

    def run(self, batch: int, steps: int, warmup: int, log_every: int, out: Path, overwrite: bool) -> dict:
        from sparseclip.train import train
        from sparseclip.train.logger import read_log

        torch = self.torch
        workers = auto_workers(self.args, batch)
        cfg = make_config(self.args, batch, steps, warmup, log_every, out, workers)
        if self.cuda:
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        train(cfg, progress=False, overwrite=overwrite)
        wall = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() if self.cuda else None
        return {"cfg": cfg, "records": read_log(out), "wall_s": wall, "peak_bytes": peak, "workers": workers}

    def fits(self, batch: int) -> tuple[bool, dict]:
        """Whether 2 training steps at ``batch`` run within ``--memory-fraction`` of the GPU's memory."""
        from sparseclip.train.memory import TooLarge

        out = Path(self.args.out) / "probes" / f"batch_{batch}"
        try:
            res = self.run(batch, 2, 1, 1, out, overwrite=True)
        except TooLarge as e:
            return False, {"why": str(e)[:300]}
        finally:
            gc.collect()
            self.torch.cuda.empty_cache()
        total = self.torch.cuda.get_device_properties(0).total_memory
        ok = res["peak_bytes"] <= self.args.memory_fraction * total
        return ok, {"peak_bytes": res["peak_bytes"], "wall_s": round(res["wall_s"], 2),
                    **({} if ok else {"why": f"peak above {self.args.memory_fraction} of {total} bytes"})}


def data_rate(cfg, n: int) -> float | None:
    """World images rendered, transformed and tokenised per second by one process (None for webdataset)."""
    if cfg.data.kind != "world":
        return None
    from sparseclip.data.sources import build_train_source
    from sparseclip.model import get_tokenizer, image_transform

    source = build_train_source(cfg, get_tokenizer(cfg.model, cfg.data.context_length),
                                image_transform(cfg.data.image_size, train=False, cfg=cfg.model))
    source.make_batch(0, 2)
    t0 = time.perf_counter()
    source.make_batch(1, n)
    return n / (time.perf_counter() - t0)


def environment(dry: bool) -> dict:
    import torch

    env = {"torch": torch.__version__, "cuda_build": torch.version.cuda, "python": platform.python_version(),
           "cpus": os.cpu_count()}
    if dry:
        return {**env, "device": f"cpu ({platform.machine()})", "gpu_memory_bytes": None}
    props = torch.cuda.get_device_properties(0)
    return {**env, "device": torch.cuda.get_device_name(0), "gpu_memory_bytes": props.total_memory,
            "cudnn": torch.backends.cudnn.version(), "capability": f"{props.major}.{props.minor}"}


def measure(args: argparse.Namespace, command: str) -> dict:
    """Search, probe and the measured run (see the module docstring); the JSON's content."""
    out = Path(args.out)
    result: dict = {"ran_on": "cpu dry run" if args.dry_run else "gpu", **environment(args.dry_run),
                    "command": command, "load_before": load()}
    runner = Runner(args)
    if args.batch:
        batch, trials = args.batch, []
    else:
        batch, trials = largest_batch(runner.fits, args.batch_start, args.batch_max, args.refine)
    if not args.keep_probes:
        shutil.rmtree(out / "probes", ignore_errors=True)
    probe = runner.run(batch, args.probe_steps, 1, 1, out / "probes" / "timed", overwrite=True)
    probe_rate, _ = steady_rate(probe["records"], batch)
    steps = max(2, round(args.wall_s * probe_rate / batch))
    steps = min(steps, args.max_steps) if args.max_steps else steps
    if not args.keep_probes:
        shutil.rmtree(out / "probes", ignore_errors=True)
    warmup = min(make_config(args, batch, steps, 1, 1, out / "run", 0).train.warmup, max(1, steps // 10))
    main = runner.run(batch, steps, warmup, min(args.log_every, steps), out / "run", overwrite=args.overwrite)
    rate, measured = steady_rate(main["records"], batch)
    cfg = main["cfg"]
    flops = model_flops_per_sample(cfg, "cpu" if args.dry_run else "cuda", batch)
    peak, peak_src = (None, "CPU dry run: no GPU peak") if args.dry_run else peak_bf16_flops(result["device"])
    result.update({
        "config": cfg.to_dict(), "batch": batch, "batch_search": trials, "workers": main["workers"],
        "data_images_per_s_one_process": data_rate(cfg, 8 if args.dry_run else 64),
        "probe": {"steps": args.probe_steps, "samples_per_s": probe_rate, "wall_s": probe["wall_s"]},
        "wall_s_target": args.wall_s, "steps": steps, "warmup": warmup, "train_wall_s": main["wall_s"],
        "samples_per_s": rate, "samples_per_s_steps": measured,
        "peak_memory_bytes": main["peak_bytes"],
        "peak_memory_note": "CPU dry run: torch.cuda.max_memory_allocated is GPU only" if args.dry_run
        else "torch.cuda.max_memory_allocated over the measured run",
        "flops": flops, "peak_bf16_flops": peak, "peak_flops_source": peak_src,
        "mfu": flops["per_sample"] * rate / peak if peak else None,
        "mfu_note": "model FLOPs x samples/s / dense bf16 peak" if peak else f"mfu null: {peak_src}",
        "curve": curve(main["records"], batch), "load_after": load(),
    })
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from sparseclip.config import ConfigError
    from sparseclip.files.atomic import write_json_atomic

    try:
        check_inputs(args)
        command = " ".join(["python benchmarks/gpu_recipe.py", *(sys.argv[1:] if argv is None else argv)])
        result = measure(args, command)
    except (Refused, ConfigError, ValueError) as e:
        print(f"gpu_recipe: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    path = write_json_atomic(Path(args.out) / JSON_NAME, result)
    mfu = f"{result['mfu']:.3f}" if result["mfu"] is not None else "null"
    print(f"{result['ran_on']}: {result['device']}, batch {result['batch']}, {result['steps']} steps, "
          f"{result['samples_per_s']:.1f} samples/s, peak memory {result['peak_memory_bytes']}, MFU {mfu}, "
          f"last L0 image {result['curve'][-1]['image_l0_pct']:.2f}% text {result['curve'][-1]['text_l0_pct']:.2f}%"
          f"; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
