"""Peak memory and time of the contrastive loss (forward + backward): naive ClipLoss vs ChunkedClipLoss.

    python benchmarks/bench_loss_memory.py                     # the documented table (several minutes)
    python benchmarks/bench_loss_memory.py --quick             # small sizes, seconds

What runs: the loss on L2-normalised non-negative sparse codes (a ReLU head's output; ``--density`` of the
entries active), (b, D) per modality and rank with ``requires_grad``, and the backward pass to those features
and to the logit scale. Cases with ``ranks`` > 1 are real torch.distributed jobs (gloo, one CPU process per
rank, global batch B = ranks * b): there the naive loss is OpenCLIP's exact setting
``ClipLoss(local_loss=True, gather_with_grad=True)``, which all-gathers both modalities with gradient.

How memory is measured: every (case, loss) runs in fresh processes; after a tiny warm-up, the first loss
forward + backward of the process is the measured one:
  * peak alloc: the highest total of bytes the loss held through PyTorch's allocator during forward +
    backward, above what existed before (the inputs), from the allocation/free events of ``torch.profiler``
    (``profile_memory=True``). Exact for tensor memory and independent of the C allocator. It includes the
    two (b, D) feature gradients, which any implementation must return (the "grads" column).
  * peak RSS: the process's resident-set high-water mark (``VmHWM``, reset through
    ``/proc/self/clear_refs`` just before the loss) minus its RSS before, with glibc told to return every
    block over 64 KiB to the OS (``MALLOC_MMAP_THRESHOLD_``); a whole-process cross-check that also sees
    memory outside PyTorch's allocator (gloo buffers, the profiler itself).
Per rank; for several ranks the largest rank.

How time is measured: wall-clock of forward + backward. After its memory run, each process times both losses
in ``--rounds`` alternating rounds (naive first, then chunked first, ...), so both see the same load on a
shared machine; the time is the median of those samples (slowest rank per sample). The largest case
(B * D >= 2048 * 65,536) runs once: its times are those of the two memory runs. Threads = CPUs / ranks.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

from sparseclip.experiments.bench_tables import LOSS_MEMORY_HEADER, loss_memory_row
from sparseclip.files.atomic import write_json_atomic

IMPLS = ("naive", "chunked")
LARGEST = 2048 * 65536  # cases this big (B * D) run once
DEFAULT_SIZES = "1x512x8192,1x1024x16384,1x2048x32768,4x1024x16384,1x2048x65536,4x2048x65536"
QUICK_SIZES = "1x256x2048,1x512x4096,2x512x4096"


# -- worker: one process (one rank) of one case ---------------------------------------------------------------

def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") - _status_kib("VmRSS") < 1024


def _alloc_peak(prof) -> int | None:
    """Peak of the running sum of allocator events recorded by the profiler (bytes), or None."""
    try:
        events = [(e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                  if e.name() == "[memory]" and int(e.device_type()) == 0]  # 0: CPU
    except AttributeError:
        return None
    cur = peak = 0
    for _, nbytes in sorted(events):
        cur += nbytes
        peak = max(peak, cur)
    return peak


def _codes(n: int, d: int, density: float, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g)
    x.sub_(1 - density).clamp_min_(0)  # non-negative, `density` of the entries active
    x.div_(x.norm(dim=1, keepdim=True).clamp_min(1e-12))
    return x.requires_grad_(True)


def worker(args) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    from sparseclip.loss import ChunkedClipLoss, ClipLoss
    from sparseclip.train.distributed import barrier, cleanup, init_distributed

    torch.set_num_threads(args.threads)
    info = init_distributed(device="cpu")
    losses = {"naive": ClipLoss(local_loss=info.distributed, gather_with_grad=info.distributed, rank=info.rank,
                                world_size=info.world_size),
              "chunked": ChunkedClipLoss(rank=info.rank, world_size=info.world_size)}
    log_scale = torch.tensor(50.0).log().requires_grad_(True)
    warm_i, warm_t = _codes(8, 64, 0.5, 1), _codes(8, 64, 0.5, 2)  # libraries, thread pools, gloo pairs
    for loss_fn in losses.values():
        loss_fn(warm_i, warm_t, log_scale.exp()).backward()
    image = _codes(args.batch, args.width, args.density, 10 + info.rank)
    text = _codes(args.batch, args.width, args.density, 1000 + info.rank)

    def step(loss_fn) -> float:
        image.grad = text.grad = log_scale.grad = None
        barrier()
        t0 = time.perf_counter()
        loss_fn(image, text, log_scale.exp()).backward()
        return time.perf_counter() - t0

    # 1. Memory (and time) of the loss this process measures, first thing after the warm-up.
    rss_ok = _reset_peak_rss()
    rss0 = _status_kib("VmRSS")
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        mem_time = step(losses[args.impl])
    rss = (_status_kib("VmHWM") - rss0) * 1024 if rss_ok else None
    alloc = _alloc_peak(prof)
    del prof
    # 2. Timing rounds: both losses, alternating, so that both see the same load on a shared machine.
    times = {name: [] for name in IMPLS}
    for r in range(args.rounds):
        for name in (IMPLS if r % 2 == 0 else IMPLS[::-1]):
            times[name].append(step(losses[name]))
    print("RESULT " + json.dumps({"rank": info.rank, "alloc": alloc, "rss": rss, "mem_time": mem_time,
                                  "times": times}), flush=True)
    cleanup()


# -- parent: launch the cases side by side and print the table ------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_case(impl: str, ranks: int, batch: int, width: int, rounds: int, args) -> dict:
    """Run the processes of one case whose memory is measured for ``impl``; per-rank results."""
    local = batch // ranks
    threads = max(1, (os.cpu_count() or 1) // ranks)
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS=str(threads))
    if ranks > 1:
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE=str(ranks))
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--impl", impl, "--batch", str(local),
           "--width", str(width), "--density", str(args.density), "--threads", str(threads),
           "--rounds", str(rounds)]
    procs = []
    for r in range(ranks):
        penv = dict(env, RANK=str(r), LOCAL_RANK=str(r)) if ranks > 1 else env
        procs.append(subprocess.Popen(cmd, env=penv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        out, err = p.communicate()
        lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
        if p.returncode != 0 or not lines:
            raise SystemExit(f"{impl} ranks={ranks} B={batch} D={width} failed (exit {p.returncode}):\n{err[-3000:]}")
        results.append(json.loads(lines[-1][7:]))
    return results


def measure(ranks: int, batch: int, width: int, args) -> dict:
    """Memory of each loss from its own fresh processes; time = median over the alternating timing rounds of
    both runs (slowest rank per round), or, when there are none, the memory run's time."""
    rounds = 0 if batch * width >= LARGEST else args.rounds
    runs = {impl: run_case(impl, ranks, batch, width, rounds, args) for impl in IMPLS}
    res = {}
    for impl in IMPLS:
        peaks = [r["alloc"] for r in runs[impl]]
        rss = [r["rss"] for r in runs[impl]]
        samples = [max(r["times"][impl][i] for r in run) for run in runs.values() for i in range(rounds)]
        res[impl] = {"alloc": None if None in peaks else max(peaks), "rss": None if None in rss else max(rss),
                     "time": statistics.median(samples) if samples else max(r["mem_time"] for r in runs[impl]),
                     "time_samples": len(samples) or 1}
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default=None, help=f"comma list of RANKSxBATCHxWIDTH (B is global); default "
                                                  f"{DEFAULT_SIZES}")
    ap.add_argument("--quick", action="store_true", help=f"small sizes ({QUICK_SIZES})")
    ap.add_argument("--density", type=float, default=0.01, help="fraction of active code entries (0.01)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating timing rounds per process (the largest "
                    "case: none, its time is that of the single memory run)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--impl", choices=IMPLS, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--width", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return

    spec = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    cases = []
    for item in spec.split(","):
        ranks, batch, width = (int(v) for v in item.lower().split("x"))
        if batch % ranks:
            raise SystemExit(f"batch {batch} is not divisible by ranks {ranks}")
        cases.append((ranks, batch, width))
    setup = {"cpus": os.cpu_count(), "density": args.density,
             "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    print(f"# {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"# {os.cpu_count()} CPUs, code density {args.density}, float32, load average before "
          f"{setup['load_before']}; per rank: peak above the inputs; grads = the 2 (b, D) feature gradients every "
          "implementation returns\n")
    print(LOSS_MEMORY_HEADER)
    print("|" + "---|" * (LOSS_MEMORY_HEADER.count("|") - 1))
    rows = []
    for ranks, batch, width in cases:
        res = measure(ranks, batch, width, args)
        rows.append({"ranks": ranks, "batch": batch, "width": width, "grads_bytes": 2 * (batch // ranks) * width * 4,
                     **{f"{impl}_{k}": v for impl in IMPLS for k, v in res[impl].items()}})
        print(loss_memory_row(rows[-1]), flush=True)
    setup["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"# load average after: {setup['load_after']}")
    if args.json:
        write_json_atomic(args.json, {"setup": setup, "rows": rows})


if __name__ == "__main__":
    main()
