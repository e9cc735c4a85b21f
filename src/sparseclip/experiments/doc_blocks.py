"""The generators of the docs' experiment figures, and the command that checks or rewrites every generated block.

``python -m sparseclip.experiments.doc_blocks --check`` (``make docs-check``) regenerates every
``<!-- generated: ... -->`` block of README.md and docs/*.md from its committed JSON and fails on any difference;
without ``--check`` it rewrites the blocks. The mechanism is :mod:`sparseclip.report.generated`; this module adds
the generators that need the experiments (ablation verdicts, the demo's rows) and imports every module listed in
:data:`PROVIDERS`, so their ``@generator`` functions are registered before the docs are read.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
from pathlib import Path

from ..report.generated import GeneratedError, check, generator, iter_report, read_json, update
from .ablate_summary import CHANCE, aggregate, verdicts
from .grids import resolve_grids

#: modules whose ``@generator`` functions the check needs besides this one (add yours here)
PROVIDERS: tuple[str, ...] = ("sparseclip.report.generated", "sparseclip.experiments.ship",
                               "sparseclip.experiments.mutants")

ROOT = Path(__file__).resolve().parents[3]
TASKS = ("color", "shape", "size", "position", "count")


# ------------------------------------------------------------------------------------------------ ablations


@generator("ablate-verdicts")
def ablate_verdicts(root: Path, args: list[str]) -> str:
    """``ablate-verdicts SUMMARY.json``: the verdicts the current code draws from a sweep's per-run rows."""
    data = read_json(root, args[0])
    grids = resolve_grids(",".join(data["grids"]))
    aggs = {g.name: aggregate(data["rows"], g) for g in grids}
    runs = len({r["run"] for r in data["rows"]})
    head = (f"{runs} distinct runs, seeds {', '.join(map(str, range(data['seeds'])))}; chance level of the mean "
            f"zero-shot accuracy over the world's tasks: {100 * CHANCE:.1f}%.")
    return head + "\n\n" + "\n".join(f"- {v}" for v in verdicts(aggs))


@generator("search-explanations")
def search_explanations(root: Path, args: list[str]) -> str:
    """``search-explanations EXPLANATIONS.json``: the share of a top hit's score its explanation shows
    (``examples/search_explanations/run.py``)."""
    data = read_json(root, args[0])
    lines = [f"Command: `{data['command']}`", "",
             "| model | items | mean active features | features with a concept | top-3 concept groups' share "
             "(mean; quartiles) | top-3 single features' share (mean; quartiles) |", "|---|---|---|---|---|---|"]
    for r in data["rows"]:
        gq = ", ".join(f"{100 * v:.0f}%" for v in r["group_share_quartiles"])
        fq = ", ".join(f"{100 * v:.0f}%" for v in r["feature_share_quartiles"])
        lines.append(f"| {r['run']} | {r['items']:,} | {r['mean_active']:.0f} | {r['assigned_features']:,} | "
                     f"{100 * r['top_groups_share']:.1f}% ({gq}) | {100 * r['top_features_share']:.1f}% ({fq}) |")
    return "\n".join(lines)


@generator("search-bench")
def search_bench(root: Path, args: list[str]) -> str:
    """``search-bench BENCH.json``: a ``benchmarks/bench_search.py --json`` run, rendered by the benchmark's own
    ``render`` (loaded from its file: the benchmarks are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_search", root / "benchmarks" / "bench_search.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench.render(read_json(root, args[0]))


@generator("search-headline")
def search_headline(root: Path, args: list[str]) -> str:
    """``search-headline BENCH.json``: per item set of a ``bench_search.py`` run, exact sparse search against the
    tuned faiss flat row (batch and single), the fastest approximate sparse row with recall@10 >= 0.95 and the
    HNSW row, as ratios: the sentences the search doc would otherwise type."""
    data = read_json(root, args[0])
    sets: dict = {}
    for r in data["rows"]:
        sets.setdefault((r["set"], r["n"]), []).append(r)
    lines = []
    for (name, n), rows in sets.items():
        flat = next((r for r in rows if r.get("tuned")), None)
        exact = next((r for r in rows if r["method"].startswith("sparse exact (numba")), None)
        if flat is None or exact is None:
            continue
        words = (f"- {n:,} {name} items: exact sparse search is **{exact['batch_qps'] / flat['batch_qps']:.1f}x** "
                 f"tuned faiss flat in batches of {data['queries']} ({exact['batch_qps']:,.0f} vs "
                 f"{flat['batch_qps']:,.0f} queries/s) and **{exact['single_qps'] / flat['single_qps']:.1f}x** for "
                 f"single queries ({exact['single_qps']:,.0f} vs {flat['single_qps']:,.0f})")
        approx = [r for r in rows if r["method"].startswith("sparse approx") and r["recall"] >= 0.95]
        if approx:
            a = max(approx, key=lambda r: r["single_qps"])
            setting = a["method"][len("sparse approx ("):-1]
            words += (f"; the fastest own approximate setting with recall@10 >= 0.95 ({setting}) reaches "
                      f"{a['recall']:.3f} at {a['single_qps'] / exact['single_qps']:.1f}x exact sparse "
                      f"single-query speed ({a['single_qps'] / flat['single_qps']:.1f}x flat)")
        else:
            words += "; no own approximate setting reached recall@10 0.95"
        hnsw = next((r for r in rows if "HNSW" in r["method"]), None)
        if hnsw is not None:
            words += (f"; HNSW ({hnsw['method'].split('(', 1)[1].rstrip(')')}) recall@10 {hnsw['recall']:.3f} at "
                      f"{hnsw['single_qps'] / flat['single_qps']:.1f}x flat single, "
                      f"{hnsw['batch_qps'] / flat['batch_qps']:.1f}x batch, built in {hnsw['build_s']:.0f} s")
        lines.append(words + ".")
    return "\n".join(lines)


@generator("ablate-sizes")
def ablate_sizes(root: Path, args: list[str]) -> str:
    """``ablate-sizes NAME=SUMMARY.json ...``: training time of each sweep, from its rows (distinct runs)."""
    lines = ["| sweep | distinct runs | training s, all runs | per run s: min / median / max |", "|---|---|---|---|"]
    for arg in args:
        name, _, rel = arg.partition("=")
        seconds = {r["run"]: r["train_seconds"] for r in read_json(root, rel)["rows"]}.values()
        lines.append(f"| {name} | {len(seconds)} | {sum(seconds):,.0f} | {min(seconds):.0f} / "
                     f"{statistics.median(seconds):.0f} / {max(seconds):.0f} |")
    return "\n".join(lines)


@generator("train-log")
def train_log(root: Path, args: list[str]) -> str:
    """``train-log LABEL=LOG.jsonl ...``: training-batch image L0 % at six evenly spaced logged steps and the
    logit scale at the first and last log, one line per run."""
    out = []
    for arg in args:
        label, _, rel = arg.partition("=")
        try:
            rows = [json.loads(ln) for ln in (root / rel).read_text(encoding="utf-8").splitlines() if ln.strip()]
        except (OSError, json.JSONDecodeError) as e:
            raise GeneratedError(f"{rel}: not a readable log.jsonl ({type(e).__name__})") from None
        rows = [r for r in rows if "image_l0_pct" in r]
        picks = sorted({round(i * (len(rows) - 1) / 5) for i in range(6)})
        l0 = ", ".join(f"{rows[i]['image_l0_pct']:.1f}% (step {rows[i]['step']:,})" for i in picks)
        out.append(f"- {label}: training-batch image L0 {l0}; logit scale {rows[0]['logit_scale']:.1f} -> "
                   f"{rows[-1]['logit_scale']:.1f}.")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------ evaluation rows


def world_row(root: Path, arg: str) -> dict:
    """One model's world metrics, from ``LABEL=`` (optional) and an ``eval.json`` or ``results.json#model``."""
    label, _, ref = arg.rpartition("=")
    rel, _, model = ref.partition("#")
    data = read_json(root, rel)
    if model:
        rows = [r for r in data["rows"] if r["model"] == model]
        if not rows:
            raise GeneratedError(f"{rel}: no row for model {model!r}")
        return {"label": label or model, **rows[0]}
    path, zs, sp = Path(rel), data["zeroshot"], data["sparsity"]
    row = {"label": label or (path.parent.name if path.name == "eval.json" else path.stem),
           "code_dim": sp["image"]["dim"], "zs_mean": data["zeroshot_mean_acc1"],
           "probe_mean": data["linear_probe_mean_acc1"], "image_L0_pct": sp["image"]["L0_pct"],
           "text_L0_pct": sp["text"]["L0_pct"], "t2i_R@1": data["retrieval"]["text_to_image_R@1"],
           "i2t_R@1": data["retrieval"]["image_to_text_R@1"]}
    return row | {f"zs_{t}": zs[t]["acc1"] for t in TASKS if t in zs}


@generator("world-table")
def world_table(root: Path, args: list[str]) -> str:
    """``world-table [LABEL=]SRC ...`` (SRC: an ``eval.json`` or ``results.json#model``): zero-shot mean and per
    task, R@1 both ways, linear probe and L0 of each model on the procedural world."""
    lines = ["| model | code dim | zero-shot mean | " + " / ".join(TASKS) + " | t2i / i2t R@1 | linear probe | "
             "image / text L0 % |", "|---|---|---|---|---|---|---|"]
    for r in (world_row(root, a) for a in args):
        tasks = " / ".join(f"{r[f'zs_{t}']:.3f}" if f"zs_{t}" in r else "-" for t in TASKS)
        lines.append(f"| {r['label']} | {r['code_dim']} | {r['zs_mean']:.3f} | {tasks} | {r['t2i_R@1']:.3f} / "
                     f"{r['i2t_R@1']:.3f} | {r['probe_mean']:.3f} | {r['image_L0_pct']:.1f} / "
                     f"{r['text_L0_pct']:.1f} |")
    return "\n".join(lines)


def _pts(x: float) -> str:
    """A signed difference in points, one decimal ("+0.0", never "-0.0")."""
    text = f"{x:+.1f}"
    return "+0.0" if text == "-0.0" else text


@generator("world-gaps")
def world_gaps(root: Path, args: list[str]) -> str:
    """``world-gaps BASE OTHER ...``: each OTHER minus BASE in points (zero-shot mean and per task, R@1, probe)."""
    base, *others = (world_row(root, a) for a in args)
    out = []
    for r in others:
        gap = {k: 100 * (r[k] - base[k]) for k in r if k in base and (k.startswith(("zs_", "probe_")) or "R@" in k)}
        tasks = ", ".join(f"{t} {_pts(gap[f'zs_{t}'])}" for t in TASKS if f"zs_{t}" in gap)
        out.append(f"- {r['label']} minus {base['label']}, points: zero-shot mean {_pts(gap['zs_mean'])} ({tasks}); "
                   f"t2i R@1 {_pts(gap['t2i_R@1'])}, i2t R@1 {_pts(gap['i2t_R@1'])}; linear probe "
                   f"{_pts(gap['probe_mean'])}.")
    return "\n".join(out)


@generator("seed-pairs")
def seed_pairs(root: Path, args: list[str]) -> str:
    """``seed-pairs DENSE_SRC,SPARSE_SRC ...``: one (dense, sparse) pair per seed; the paired zero-shot
    difference per seed and its mean ± std over seeds, and whether the sign is the same in every seed."""
    lines = ["| seed run | dense zero-shot | sparse zero-shot | sparse - dense, points | sparse image L0 % |",
             "|---|---|---|---|---|"]
    diffs = []
    for pair in args:
        dense, sparse = (world_row(root, a) for a in pair.split(","))
        diffs.append(100 * (sparse["zs_mean"] - dense["zs_mean"]))
        lines.append(f"| {sparse['label']} | {dense['zs_mean']:.3f} | {sparse['zs_mean']:.3f} | {_pts(diffs[-1])} | "
                     f"{sparse['image_L0_pct']:.1f} |")
    std = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
    sign = ("behind in every seed" if all(d < 0 for d in diffs) else "ahead in every seed" if all(d > 0 for d in diffs)
            else "the sign changes between seeds")
    return "\n".join(lines) + (f"\n\nPaired difference over {len(diffs)} seeds: {_pts(statistics.mean(diffs))} ± "
                               f"{std:.1f} points (mean ± std); the sparse model is {sign}.")


#: the demo's pretrained-towers trio and the keys of their rows in a sparsity sweep's ``chosen``
DEMO_TRIO = (("lite_sparse", "sparse_demo"), ("lite_dense", "dense_demo"), ("lite_wide", "wide_demo"))
#: (sweep key, demo results key, words) of the accuracy metrics the headline rests on
SEED_METRICS = (("zs", "zs_mean", "zero-shot mean"), ("t2i", "t2i_R@1", "t2i R@1"), ("i2t", "i2t_R@1", "i2t R@1"))


def _seed_cells(sweep: dict) -> dict[str, dict]:
    """Per demo model: {metric: {"mean", "by_seed"}} over the seeds of its row in a sparsity sweep's JSON."""
    cells = {}
    for model, key in DEMO_TRIO:
        label = sweep["chosen"][key]
        runs = {r["seed"]: r["test"] for r in sweep["rows"] if r["label"] == label}
        cells[model] = {"label": label, **{
            m: {"mean": statistics.mean(t[m] for t in runs.values()), "by_seed": {s: t[m] for s, t in runs.items()}}
            for m in ("zs", "t2i", "i2t", "image_L0_pct", "text_L0_pct")}}
    return cells


@generator("demo-seeds")
def demo_seeds(root: Path, args: list[str]) -> str:
    """``demo-seeds SWEEP.json RESULTS.json``: the demo's pretrained-towers trio over the seeds of the sparsity
    sweep that chose its presets (its ``*_demo`` rows): means with 95% t-intervals, the paired gaps of the sparse
    head against each control with a word each (level: the interval includes 0), and whether the sweep's seed-0
    rows are this demo run's rows (same presets, same code, same machine: identical)."""
    from .ablate_summary import difference_interval

    sweep, demo = read_json(root, args[0]), {r["model"]: r for r in read_json(root, args[1])["rows"]}
    cells = _seed_cells(sweep)
    seeds = sorted(cells["lite_sparse"]["zs"]["by_seed"])
    lines = [f"Seeds {', '.join(map(str, seeds))} of each preset (test split, `{args[0]}`): mean ± 95% t-interval "
             "half-width.", "", "| model | sweep row | zero-shot mean | t2i R@1 | i2t R@1 | image / text L0 % |",
             "|---|---|---|---|---|---|"]

    def ci(cell: dict, m: str, fmt: str = "{:.3f}") -> str:
        from scipy.stats import t

        v = list(cell[m]["by_seed"].values())
        half = t.ppf(0.975, len(v) - 1) * statistics.stdev(v) / len(v) ** 0.5 if len(v) > 1 else float("nan")
        return f"{fmt.format(cell[m]['mean'])} ± {fmt.format(half)}"

    for model, _ in DEMO_TRIO:
        c = cells[model]
        lines.append(f"| {model} | {c['label']} | {ci(c, 'zs')} | {ci(c, 't2i')} | {ci(c, 'i2t')} | "
                     f"{ci(c, 'image_L0_pct', fmt='{:.2f}')} / {ci(c, 'text_L0_pct', fmt='{:.2f}')} |")
    lines.append("")
    for control in ("lite_dense", "lite_wide"):
        parts = []
        for m, _, words in SEED_METRICS:
            d = 100 * (cells["lite_sparse"][m]["mean"] - cells[control][m]["mean"])
            lo, hi = difference_interval(cells["lite_sparse"], cells[control], m, 100.0)
            word = "ahead" if lo > 0 else "behind" if hi < 0 else "interval includes 0"
            parts.append(f"{words} {_pts(d)} [{_pts(lo)}, {_pts(hi)}] ({word})")
        lines.append(f"- lite_sparse minus {control}, points, paired by seed (95% interval): " + "; ".join(parts) + ".")
    same = [model for model, _ in DEMO_TRIO if model in demo and all(
        round(cells[model][m]["by_seed"].get(0, float("nan")), 4) == round(demo[model][k], 4)
        for m, k, _ in SEED_METRICS)]
    lines += ["", (f"The sweep's seed-0 rows are this demo run's rows ({', '.join(same)}: identical accuracy)."
                   if len(same) == len(DEMO_TRIO) else
                   f"The sweep's seed-0 rows differ from this demo run's rows for "
                   f"{', '.join(m for m, _ in DEMO_TRIO if m not in same)} (another machine or code): the single "
                   "run above is one draw of the spread the intervals show.")]
    return "\n".join(lines)


@generator("kernel-drift")
def kernel_drift(root: Path, args: list[str]) -> str:
    """``kernel-drift KERNELS.json``: ``examples/kernel_drift/run.py``'s runs, one row per preset and kernel
    variant (accuracy, L0, how far its weights are from the default kernels' run), and per preset the spread of
    each accuracy metric over the variants, in points."""
    data = read_json(root, args[0])
    health = all("image_active_train_pct" in r for r in data["rows"])  # the dictionary next to L0, when counted
    caps = ", ".join(dict.fromkeys(f"{r['variant']}: {r['cpu_capability']}" for r in data["rows"]
                                   if "cpu_capability" in r))
    lines = [f"Command: `{data['command']}` (CPU: {data['machine']}; torch {data['torch']}, BLAS {data['blas']}; "
             f"PyTorch's CPU kernels: {caps or 'not recorded'}).",
             "", "| preset | kernels | zero-shot mean | t2i R@1 | i2t R@1 | image / text L0 % | max weight difference "
             "from `this CPU` |" + (" image / text active % (train) | image / text dead % (train) |" if health else ""),
             "|---|---|---|---|---|---|---|" + ("---|---|" if health else "")]
    for r in data["rows"]:
        cells = (f" {r['image_active_train_pct']:.1f} / {r['text_active_train_pct']:.1f} | "
                 f"{r['image_dead_train_pct']:.1f} / {r['text_dead_train_pct']:.1f} |" if health else "")
        lines.append(f"| {r['preset']} | {r['variant']} | {r['zs']:.3f} | {r['t2i']:.3f} | {r['i2t']:.3f} | "
                     f"{r['image_L0_pct']:.2f} / {r['text_L0_pct']:.2f} | {r['max_weight_gap']:.1e} |" + cells)
    lines.append("")
    for preset in dict.fromkeys(r["preset"] for r in data["rows"]):
        rows = [r for r in data["rows"] if r["preset"] == preset]
        spread = {words: 100 * (max(r[m] for r in rows) - min(r[m] for r in rows)) for m, _, words in SEED_METRICS}
        same = sum(r["max_weight_gap"] == 0 for r in rows[1:])
        lines.append(f"- {preset}: over the {len(rows)} kernel variants, the spread (max - min) is "
                     + ", ".join(f"{w} {v:.1f}" for w, v in spread.items())
                     + f" points; {same} of the {len(rows) - 1} other variants give the very same weights.")
    return "\n".join(lines)


#: the demo's wall-time budget on 2 cores (issue 38)
DEMO_BUDGET_S = 600


@generator("demo-time")
def demo_time(root: Path, args: list[str]) -> str:
    """``demo-time RESULTS.json``: the demo run's wall time per stage, as recorded in its ``stage_seconds``."""
    stages = read_json(root, args[0])["stage_seconds"]
    parts = ", ".join(f"{k} {v:,.0f}" for k, v in stages.items() if k != "total")
    total = stages.get("total", sum(stages.values()))
    verdict = "within" if total <= DEMO_BUDGET_S else "over"
    load = read_json(root, args[0]).get("load_average") or {}
    said = (f" Load average (1 minute) {load['start']:.2f} at the start, {load['end']:.2f} at the end."
            if load.get("start") is not None and load.get("end") is not None else " Load average not recorded.")
    return (f"Recorded wall time: {total:,.0f} s in all ({parts}; seconds): {verdict} the demo's budget of "
            f"{DEMO_BUDGET_S // 60} minutes.{said}")


@generator("throughput")
def throughput(root: Path, args: list[str]) -> str:
    """``throughput BENCH.json``: ``benchmarks/bench_throughput.py``'s report, rendered from its ``--json``."""
    from .bench_tables import throughput_report

    return "```\n" + throughput_report(read_json(root, args[0])) + "\n```"


@generator("loss-memory")
def loss_memory(root: Path, args: list[str]) -> str:
    """``loss-memory BENCH.json``: ``benchmarks/bench_loss_memory.py``'s table, rendered from its ``--json``."""
    from .bench_tables import loss_memory_table

    return loss_memory_table(read_json(root, args[0]))


# ------------------------------------------------------------------------------------------------ the command


def load_providers() -> None:
    """Import every module of :data:`PROVIDERS` (their generators register themselves)."""
    for name in PROVIDERS:
        importlib.import_module(name)


def main(argv: list[str] | None = None) -> int:
    """Check (``--check``) or rewrite every generated block; returns the exit code."""
    p = argparse.ArgumentParser(prog="python -m sparseclip.experiments.doc_blocks", description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="fail on any block that differs; write nothing")
    p.add_argument("--root", type=Path, default=ROOT, help="the repository root (default: this checkout)")
    p.add_argument("files", nargs="*", type=Path, help="Markdown files (default: README.md and docs/*.md)")
    args = p.parse_args(argv)
    load_providers()
    files = [f if f.is_absolute() else args.root / f for f in args.files] or None
    report = (check if args.check else update)(args.root, files)
    for line in iter_report(report):
        print(line)
    if not args.check and report.differing:
        print("rewritten: " + ", ".join(sorted({d.split(":")[0] for d in report.differing})))
        return 1 if report.errors else 0
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
