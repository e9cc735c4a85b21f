"""Tables of the benchmarks in ``benchmarks/`` rendered from their JSON, shared by the scripts (which print them)
and the docs' generated blocks (:mod:`.doc_blocks`), so that a doc's figures are the JSON's.

A throughput JSON (``benchmarks/bench_throughput.py --json``) holds ``setup`` (model, batch, precision, device,
threads, steps, versions, machine, loads before and after) and ``runs`` (per trainer: system, head, per-step
samples/s, batch size, wall seconds).
"""

from __future__ import annotations

import statistics

#: the targets of the throughput benchmark: ours dense >= this x OpenCLIP; ours ReLU step time <= this x ours dense
DENSE_VS_OPENCLIP = 1.0
RELU_STEP_TIME = 1.15
#: the chunked loss's targets against OpenCLIP's exact loss on several ranks: memory ratio and time ratio
LOSS_MEMORY_TARGET = 4.0
LOSS_TIME_TARGET = 1.2


def samples_per_s(run: dict) -> float:
    """Total measured samples over the total time of the measured steps."""
    rates = run["rates"]
    return len(rates) * run["batch_size"] / sum(run["batch_size"] / r for r in rates)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def throughput_report(data: dict) -> str:
    """The benchmark's printed report: setup, one row per trainer, the ratios and the target verdicts."""
    s = data["setup"]
    oc, dense, relu = data["runs"]
    lines = [
        f"model {s['model']} (embed_dim {s['embed_dim']}), batch {s['batch_size']}, precision {s['precision']}, "
        f"device {s['device']}, torch threads {s['threads']}, {s['steps']} measured steps after "
        f"{s['warmup_steps']} warm-up step(s), workers 0",
        f"machine: {s['machine']}, {s['cpus']} CPUs, load average before: {s['load_before']}, after: "
        f"{s.get('load_after', '?')}; torch {s['torch']}, open_clip_torch {s['open_clip']}",
        "data: OpenCLIP --dataset-type synthetic (one constant image + fixed caption through its train "
        f"transform); sparseclip: built-in procedural world rendered at {s['image_size']} px "
        f"(context length {s['context_length']})",
        "",
        f"{'trainer':<26}{'head':<22}{'samples/s':>11}{'median/s':>10}{'ours/OpenCLIP':>15}{'run wall s':>12}",
    ]
    base = samples_per_s(oc)
    for r in (oc, dense, relu):
        ratio = "" if r is oc else f"{samples_per_s(r) / base:.3f}x"
        lines.append(f"{r['system']:<26}{r['head']:<22}{samples_per_s(r):>11.3f}{statistics.median(r['rates']):>10.3f}"
                     f"{ratio:>15}{r['wall_s']:>12.1f}")
    speed = samples_per_s(dense) / base
    relu_time = samples_per_s(dense) / samples_per_s(relu)
    lines += [
        "",
        f"relu/dense throughput ratio (ours): {1 / relu_time:.3f}x; relu/dense step-time ratio: {relu_time:.3f}x",
        f"target ours dense >= {DENSE_VS_OPENCLIP:.2f}x OpenCLIP samples/s: {speed:.3f}x  "
        f"{_verdict(speed >= DENSE_VS_OPENCLIP)}",
        f"target ours relu {s['expansion']}x step time <= {RELU_STEP_TIME:.2f}x ours dense: {relu_time:.3f}x  "
        f"{_verdict(relu_time <= RELU_STEP_TIME)}",
    ]
    return "\n".join(lines)


def _mib(x) -> str:
    return "n/a" if x is None else f"{x / 2**20:,.0f}"


def _ratio(a, b) -> str:
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


LOSS_MEMORY_HEADER = ("| B | D | ranks | naive s | chunked s | time chunked/naive | naive peak alloc MiB | "
                      "chunked peak alloc MiB | memory naive/chunked | naive peak RSS MiB | chunked peak RSS MiB | "
                      "grads MiB |")


def loss_memory_row(r: dict) -> str:
    """One case of ``benchmarks/bench_loss_memory.py`` as a Markdown table row."""
    return (f"| {r['batch']} | {r['width']:,} | {r['ranks']} | {r['naive_time']:.2f} | {r['chunked_time']:.2f} | "
            f"{_ratio(r['chunked_time'], r['naive_time'])} | {_mib(r['naive_alloc'])} | {_mib(r['chunked_alloc'])} | "
            f"{_ratio(r['naive_alloc'], r['chunked_alloc'])} | {_mib(r['naive_rss'])} | {_mib(r['chunked_rss'])} | "
            f"{_mib(r['grads_bytes'])} |")


def loss_memory_table(data: dict) -> str:
    """The loss-memory benchmark's table and its setup line, from its ``--json``."""
    s = data["setup"]
    lines = [LOSS_MEMORY_HEADER, "|" + "---|" * (LOSS_MEMORY_HEADER.count("|") - 1)]
    lines += [loss_memory_row(r) for r in data["rows"]]
    multi = [r for r in data["rows"] if r["ranks"] > 1 and r["naive_alloc"] and r["chunked_alloc"]]
    if multi:
        r = max(multi, key=lambda r: r["batch"] * r["width"])
        mem, time = r["naive_alloc"] / r["chunked_alloc"], r["chunked_time"] / r["naive_time"]
        ok = mem >= LOSS_MEMORY_TARGET and time <= LOSS_TIME_TARGET
        lines += ["", f"Target (largest multi-rank case, B {r['batch']} x D {r['width']:,} on {r['ranks']} ranks): "
                  f">= {LOSS_MEMORY_TARGET:g}x less peak memory per rank than the naive loss at <= "
                  f"{LOSS_TIME_TARGET:g}x its time: {mem:.2f}x at {time:.2f}x, {_verdict(ok)}."]
    lines += ["", f"({s['cpus']} CPUs, code density {s['density']}, float32, load average before {s['load_before']}"
              f", after {s['load_after']}; per rank: peak above the inputs; grads = the 2 (b, D) feature gradients "
              "every implementation returns.)"]
    return "\n".join(lines)
