"""Sparse AND alive? Every lever of the lite pair with the dictionary's health on the training inputs next to L0.

The sparsity levers (``examples/sparsity_levers``) reached ~1% L0 by letting most features die. This sweep
counts, for every setting, the share of features active (fire > 0.001 on >= 2 inputs) and dead (never fire) on the
training inputs (:func:`sparseclip.eval.health.training_health`: all cached training pairs, or a seeded sample
of ``data.num_health``), per modality and on both, next to L0 and accuracy on two splits that share no image
(the splits, presets and evaluation are those of ``examples/sparsity_levers/run.py``):

- controls: the dense head and ``linear_wide`` over the same learning-rate grid as the ReLU head
  (1e-3, 3e-3, 1e-2, 3e-2), each with the preset's temperature treatment;
- the paper's recipe: the ReLU head over the learning-rate grid (normal init), data-aware initialisation
  (``model.head.init=data``: each unit aimed at one training pair in both heads, firing on
  ``model.head.init_rate`` of the inputs) over rates and learning rates, and NCL's RepReLU;
- departures: dead-unit resampling (``train.resample_every``), with and without the data-aware start; an
  auxiliary loss that pushes units dead on the batch up where they are closest to firing (``loss.dead_aux``).

The rule (select split, seed 0): the best dense head over the grid by mean(zero-shot, t2i R@1, i2t R@1) is the
bar (and the best ``linear_wide`` its wide control); among the ReLU settings whose zero-shot and both R@1 reach
the bar, the sparsest (max of image and text L0) whose training-set active share is >= 85% on both modalities
("alive"); if none is alive, the sparsest that reaches the bar; if none reaches it, the one nearest the bar
within 2 points of mean accuracy; per pool (paper recipe; departures). The picks and both controls are trained
with seeds 1 and 2 too; the test split gives the mean and a 95% t-interval. Writes ``OUT/health_<dataset>.json``
and renders ``.md`` / ``.png`` from it::

    python examples/dictionary_health/run.py world --out docs/sparsity
    python examples/dictionary_health/run.py emoji --emoji-dir data/emoji --out docs/sparsity
    python examples/dictionary_health/run.py world --out docs/sparsity --render-only
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("sparsity_levers", HERE.parent / "sparsity_levers" / "run.py")
levers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(levers)

SEEDS = (0, 1, 2)
ALIVE = 85.0  # % of features active on the training inputs, both modalities (the paper: 85-89%)
LRS = ("1e-3", "3e-3", "1e-2", "3e-2")
PICKS = ("paper", "departure", "dense", "wide")  # the keys of choose()'s picks
METRICS = ("zs", "t2i", "i2t", "image_L0_pct", "text_L0_pct", "image_active_train", "text_active_train",
           "image_dead_train", "text_dead_train", "active_both_train")

# (lever, label, kind, overrides); kind: paper | departure | dense | wide. Overrides apply on the preset of the
# kind (lite_sparse / lite_dense / lite_wide on the world, the emoji presets on the emoji set) at lr 1e-3.
SETTINGS: list[tuple[str, str, str, list[str]]] = [
    *[("dense head", f"dense, lr {lr}", "dense", [f"train.lr={lr}"]) for lr in LRS],
    *[("linear_wide", f"wide, lr {lr}", "wide", [f"train.lr={lr}"]) for lr in LRS],
    *[("lr (normal init)", f"relu, lr {lr}", "paper", [f"train.lr={lr}"]) for lr in LRS],
    *[("data-aware init, rate 1%", f"data init 1%, lr {lr}", "paper",
       ["model.head.init=data", "model.head.init_rate=0.01", f"train.lr={lr}"]) for lr in LRS[:3]],
    *[("data-aware init, lr 3e-3", f"data init {r}, lr 3e-3", "paper",
       ["model.head.init=data", f"model.head.init_rate={r}", "train.lr=3e-3"]) for r in ("0.003", "0.03")],
    # the paper's sparsity develops over long training: 4x the steps at the rate that kept the dictionary alive
    ("data-aware init, 4x steps", "data init 0.03, lr 3e-3, 1200 steps", "paper",
     ["model.head.init=data", "model.head.init_rate=0.03", "train.lr=3e-3", "train.steps=1200"]),
    # NCL's RepReLU (ReLU forward, GELU gradient: a dead unit near its threshold still gets a gradient)
    ("RepReLU", "RepReLU, lr 1e-2", "paper", ["model.head.rep_relu=true", "train.lr=1e-2"]),
    *[("resampling (departure)", f"resample, lr {lr}", "departure",
       ["train.resample_every=25", "train.resample_until=0.7", f"train.lr={lr}"]) for lr in ("1e-2", "3e-2")],
    ("resampling (departure)", "resample 0.5% to 90%, lr 1e-2", "departure",
     ["train.resample_every=25", "train.resample_until=0.9", "model.head.init_rate=0.005", "train.lr=1e-2"]),
    ("resampling + data init (departure)", "resample + data init 1%, lr 1e-2", "departure",
     ["model.head.init=data", "model.head.init_rate=0.01", "train.resample_every=25", "train.resample_until=0.7",
      "train.lr=1e-2"]),
    # an auxiliary loss that gives dead units a gradient (loss.dead_aux: units silent on the batch are pushed up
    # on the 1% of its inputs where they are closest to firing)
    ("dead-unit push (departure)", "dead push, lr 1e-2", "departure", ["loss.dead_aux=1", "train.lr=1e-2"]),
]


def _base(dataset: str, kind: str) -> tuple[str, list[str]]:
    return levers._preset(dataset, {"paper": "sparse", "departure": "sparse"}.get(kind, kind))


def run_one(out: Path, dataset: str, entry: tuple, seed: int, splits: dict) -> dict:
    """Train one setting (skipped when its row is on disk), evaluate it on both splits and count its dictionary on
    the training inputs."""
    from sparseclip.config import load_config
    from sparseclip.eval import evaluate
    from sparseclip.eval.health import training_health
    from sparseclip.eval.run import evaluate_run
    from sparseclip.files.atomic import write_json_atomic
    from sparseclip.model.checkpoint import load_model
    from sparseclip.train import train

    lever, label, kind, overrides = entry
    slug = "".join(c if c.isalnum() else "_" for c in label).strip("_") + f"_s{seed}"
    run = out / "runs" / f"health_{dataset}" / slug
    row_path = run / "row.json"
    if row_path.is_file():
        return json.loads(row_path.read_text())
    data = [f"data.train_data={splits['fit']}"] if dataset == "emoji" else []
    preset, kind_overrides = _base(dataset, kind)
    cfg = load_config(preset, [f"train.output_dir={run}", "train.progress=false", "train.tensorboard=false",
                               "train.ckpt_fractions=[]", *data, *kind_overrides, *overrides, f"train.seed={seed}"])
    shared = out / "runs" / f"health_{dataset}" / "features.safetensors"  # one feature cache for every run
    run.mkdir(parents=True, exist_ok=True)
    if shared.is_file() and not (run / "features.safetensors").exists():
        os.link(shared, run / "features.safetensors")
    t0 = time.time()
    train(cfg, overwrite=True)
    seconds = time.time() - t0
    if not shared.is_file():
        os.link(run / "features.safetensors", shared)
    model, cfg = load_model(run)
    levers._memoise_towers(model)
    row = {"lever": lever, "label": label, "kind": kind, "overrides": overrides, "seed": seed,
           "logit_scale": float(model.logit_scale.detach().exp()), "train_seconds": seconds}
    for split in ("select", "test"):
        if dataset == "world":
            cfg.data.val_seed = levers.SELECT_SEED if split == "select" else 1
            res = evaluate(model, cfg, progress=False, probe=False)
        else:
            templates = (HERE.parent / "pretrained_emoji" / "templates.txt").read_text().splitlines()
            res = evaluate_run(run, data=splits[split], label_key="group", templates=templates, probe=False,
                               progress=False, model=(model, cfg))
        row[split] = levers._metrics(res)
    add_health(row, training_health(model, cfg, run))
    write_json_atomic(row_path, row)
    print(json.dumps({"label": label, "seed": seed, **{k: round(v, 4) for k, v in row["test"].items()
                                                        if k in METRICS}}), flush=True)
    return row


def add_health(row: dict, health: dict) -> None:
    """Put a model's dictionary health on its training inputs into its row, and its shares into both splits'
    metrics (the rule and the tables read them there)."""
    row["train_health"] = health
    for split in ("select", "test"):
        row[split] |= {f"{side}_{k}_train": health[side][f"{k}_pct"] for side in ("image", "text")
                       for k in ("active", "dead")} | {"active_both_train": health["active_both_pct"]}


def _alive(m: dict) -> bool:
    return m["image_active_train"] >= ALIVE and m["text_active_train"] >= ALIVE


def _l0(m: dict) -> float:
    return max(m["image_L0_pct"], m["text_L0_pct"])


def choose(rows: list[dict]) -> dict:
    """The rule of the module docstring, on the select split of the seed-0 rows."""
    pool = [r for r in rows if r["seed"] == 0]
    score = levers._score
    best = {k: max((r for r in pool if r["kind"] == k), key=lambda r: score(r["select"]))["label"]
            if any(r["kind"] == k for r in pool) else None for k in ("dense", "wide")}
    bar = next(r for r in pool if r["label"] == best["dense"])["select"]
    chosen: dict = {"dense": best["dense"], "wide": best["wide"]}
    for kind in ("paper", "departure"):
        mine = [r for r in pool if r["kind"] == kind]
        level = [r for r in mine if all(r["select"][m] >= bar[m] for m in ("zs", "t2i", "i2t"))]
        alive = [r for r in level if _alive(r["select"])]
        near = [r for r in mine if score(r["select"]) >= score(bar) - levers.NEAR]
        for rule, cands in (("level and alive", alive), ("level", level), ("near", near)):
            if cands:
                chosen[kind] = min(cands, key=lambda r: _l0(r["select"]))["label"]
                chosen[f"{kind}_rule"] = rule
                break
        else:
            chosen[kind], chosen[f"{kind}_rule"] = None, "none near"
    return chosen


def tables(rows: list[dict], chosen: dict, settings: list[tuple], missing_intro: str) -> str:
    """Markdown: the seed-0 rows (test split; `*` marks the picks), the settings not run, the picks and their rule,
    and, where a pick has every seed, its mean ± 95% t-interval and its paired differences with the controls."""
    fmt = {m: ("{:.3f}" if m in ("zs", "t2i", "i2t") else "{:.2f}" if m.endswith("L0_pct") else "{:.1f}")
           for m in METRICS}
    head = {"zs": "zero-shot", "t2i": "t2i R@1", "i2t": "i2t R@1", "image_L0_pct": "image L0 %",
            "text_L0_pct": "text L0 %", "image_active_train": "image active % (train)",
            "text_active_train": "text active % (train)", "image_dead_train": "image dead % (train)",
            "text_dead_train": "text dead % (train)", "active_both_train": "active on both % (train)"}
    picked = {chosen.get(k) for k in PICKS} - {None}
    lines = ["| lever | setting | kind | select mean acc | " + " | ".join(head[m] for m in METRICS) + " |",
             "|---|---|---|---|" + "---|" * len(METRICS)]
    for r in (r for r in rows if r["seed"] == 0):
        star = " *" if r["label"] in picked else ""
        cells = " | ".join(fmt[m].format(r["test"][m]) for m in METRICS)
        lines.append(f"| {r['lever']} | {r['label']}{star} | {r['kind']} | {levers._score(r['select']):.3f} | "
                     f"{cells} |")
    missing = [e[1] for e in settings if e[1] not in {r["label"] for r in rows}]
    if missing:
        lines += ["", missing_intro + "; ".join(missing) + "."]
    lines += ["", f"Chosen on the select split: dense control **{chosen['dense']}**, linear_wide **{chosen['wide']}**; "
              + "; ".join(f"{k} **{chosen[k]}** (rule: {chosen[f'{k}_rule']})" for k in ("paper", "departure"))
              + f". Alive = >= {ALIVE:g}% of features active on the training inputs of both modalities.", ""]
    by: dict = {}
    for r in rows:
        by.setdefault(r["label"], {})[r["seed"]] = r
    seeded = [k for k in PICKS if chosen.get(k) and len(by.get(chosen[k], {})) == len(SEEDS)]
    if seeded:
        lines += [f"Test split, seeds {list(SEEDS)}: mean ± 95% t-interval half-width.", "",
                  "| row | setting | " + " | ".join(head[m] for m in METRICS) + " |",
                  "|---|---|" + "---|" * len(METRICS)]
        for k in seeded:
            cells = []
            for m in METRICS:
                mean, half = levers._interval([by[chosen[k]][s]["test"][m] for s in SEEDS])
                cells.append(f"{fmt[m].format(mean)} ± {fmt[m].format(half)}")
            lines.append(f"| {k} | {chosen[k]} | " + " | ".join(cells) + " |")
        lines.append("")
        for mine in ("paper", "departure"):
            if mine not in seeded:
                continue
            for other in ("dense", "wide"):
                if other not in seeded:
                    continue
                for m in ("zs", "t2i", "i2t"):
                    d = [100 * (by[chosen[mine]][s]["test"][m] - by[chosen[other]][s]["test"][m]) for s in SEEDS]
                    mean, half = levers._interval(d)
                    lines.append(f"- {chosen[mine]} - {chosen[other]}, {m}: {mean:+.1f} ± {half:.1f} points "
                                 f"(paired by seed: {', '.join(f'{x:+.1f}' for x in d)})")
        lines.append("")
    return "\n".join(lines)


def render(out: Path, dataset: str) -> str:
    """``OUT/health_<dataset>.md`` and ``.png`` from ``OUT/health_<dataset>.json``; returns the Markdown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter

    name = f"health_{dataset}"
    data = json.loads((out / f"{name}.json").read_text())
    rows, chosen = data["rows"], data["chosen"]
    cmd = f"python examples/dictionary_health/run.py {dataset} --out {out} --render-only"
    intro = (f"**{dataset}**, seed 0: accuracy and L0 on the test split; active / dead on the training inputs "
             f"({_sample(rows)}); `*` = chosen on the select split.")
    lines = [f"<!-- generated by `{cmd}` from {name}.json; do not edit -->", "", intro, "",
             tables(rows, chosen, SETTINGS, f"Settings of the script not run on {dataset}: ")]
    md = "\n".join(lines) + "\n"
    from sparseclip.files.atomic import write_text_atomic

    write_text_atomic(out / f"{name}.md", md)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    seed0 = [r for r in rows if r["seed"] == 0 and r["kind"] in ("paper", "departure")]
    for lever in dict.fromkeys(r["lever"] for r in seed0):
        pts = sorted((r for r in seed0 if r["lever"] == lever), key=lambda r: _l0(r["test"]))
        style = "x--" if pts[0]["kind"] == "departure" else "o-"
        axes[0].plot([_l0(r["test"]) for r in pts],
                     [min(r["test"]["image_active_train"], r["test"]["text_active_train"]) for r in pts],
                     style, label=lever)
        axes[1].plot([_l0(r["test"]) for r in pts], [r["test"]["zs"] for r in pts], style, label=lever)
    dense = next(r for r in rows if r["seed"] == 0 and r["label"] == chosen["dense"])
    axes[1].axhline(dense["test"]["zs"], color="k", lw=0.8, ls="--", label=f"best dense ({chosen['dense']})")
    axes[0].axhline(ALIVE, color="grey", lw=0.8, ls=":", label=f"alive ({ALIVE:g}% active)")
    for ax, ylabel in zip(axes, ("min(image, text) % features active on the training inputs",
                                 "zero-shot (test split)"), strict=True):
        ax.axvline(1.0, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.set_xlabel("max(image, text) L0, % of dims (test split)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[0].set_title("is the dictionary alive?", fontsize=10)
    axes[1].set_title("does accuracy hold?", fontsize=10)
    fig.suptitle(f"{dataset}: L0 x dictionary health x accuracy, every lever (seed 0)")
    fig.tight_layout()
    fig.savefig(out / f"{name}.png", dpi=110)
    plt.close(fig)
    return md


def _sample(rows: list[dict]) -> str:
    """What the health columns were counted on; rows counted on different sample sizes say so, with which."""
    samples = [r["train_health"]["sample"] for r in rows if "train_health" in r]
    s = samples[0] if samples else {}
    if not s.get("of"):
        sizes: dict[int, list[str]] = {}
        for r in rows:
            if "train_health" in r:
                sizes.setdefault(r["train_health"]["sample"]["n"], []).append(f"{r['label']} (seed {r['seed']})")
        if len(sizes) <= 1:
            return f"{next(iter(sizes)):,} inputs of the training stream" if sizes else "training inputs"
        first, *rest = sorted(sizes, key=lambda n: -len(sizes[n]))
        return (f"{first:,} inputs of the training stream; " + "; ".join(
            f"{n:,} for {', '.join(sizes[n])}" for n in rest) + ": a larger sample counts a rare feature as active "
            "more often")
    return f"all {s['n']:,} training pairs" if s["n"] == s["of"] else f"a sample of {s['n']:,} of {s['of']:,} pairs"


def disk_rows(folder: Path, settings: list[tuple]) -> list[dict]:
    """The rows of ``settings`` found in ``folder/*/row.json``, by seed, then in the order of ``settings``."""
    order = {e[1]: i for i, e in enumerate(settings)}
    found = [json.loads(f.read_text()) for f in folder.glob("*/row.json")]
    return sorted((r for r in found if r["label"] in order), key=lambda r: (r["seed"], order[r["label"]]))


def _disk_rows(out: Path, dataset: str) -> list[dict]:
    return disk_rows(out / "runs" / f"health_{dataset}", SETTINGS)


def sweep(settings: list[tuple], run: Callable[[tuple, int], dict], rows: Callable[[], list[dict]], only: str,
          seeds: bool, error: Callable[[str], None]) -> None:
    """Run every setting (or those named in ``only``, separated by ';') with seed 0, then, with ``seeds``, the
    rule's picks with the other seeds; ``rows()`` reads the rows on disk, ``error`` refuses an unknown name."""
    names = {s.strip() for s in only.split(";") if s.strip()}
    if names - {e[1] for e in settings}:
        error(f"--only: no such setting {sorted(names - {e[1] for e in settings})}")
    for e in settings:
        if not names or e[1] in names:
            run(e, 0)
    if seeds:
        chosen = choose(rows())
        for label in dict.fromkeys(chosen[k] for k in PICKS if chosen.get(k)):
            entry = next(e for e in settings if e[1] == label)
            for seed in SEEDS[1:]:
                run(entry, seed)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", choices=("world", "emoji"))
    p.add_argument("--out", type=Path, default=Path("runs/dictionary_health"))
    p.add_argument("--emoji-dir", type=Path, default=Path("data/emoji"))
    p.add_argument("--only", default="", help="labels to run, separated by ';' (default: every setting)")
    p.add_argument("--no-seeds", action="store_true", help="skip seeds 1 and 2 of the picks")
    p.add_argument("--render-only", action="store_true")
    a = p.parse_args(argv)
    if not a.render_only:
        splits = levers._split_emoji(a.emoji_dir) if a.dataset == "emoji" else {}
        print(f"load average before: {os.getloadavg()}", flush=True)
        sweep(SETTINGS, lambda e, seed: run_one(a.out, a.dataset, e, seed, splits),
              lambda: _disk_rows(a.out, a.dataset), a.only, not a.no_seeds, p.error)
        print(f"load average after: {os.getloadavg()}", flush=True)
        from sparseclip.files.atomic import write_json_atomic

        rows = _disk_rows(a.out, a.dataset)
        write_json_atomic(a.out / f"health_{a.dataset}.json",
                          {"command": " ".join(sys.argv), "dataset": a.dataset, "alive_pct": ALIVE,
                           "select_seed": levers.SELECT_SEED, "chosen": choose(rows), "rows": rows})
    print(render(a.out, a.dataset))
    return 0


if __name__ == "__main__":
    sys.exit(main())
