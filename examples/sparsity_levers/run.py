"""Sparse as the paper? Every sparsity lever of the lite pair on one frontier, chosen on one split, reported on another.

Frozen EfficientNet-Lite0 + MiniLM (``model.towers=lite``), head-only training on cached tower features. Each lever
is a series of settings (``LEVERS``); every run is trained once (seed 0) and evaluated on two splits that share no
image: the **select** split (settings are chosen on it) and the **test** split (figures are reported on it):

- ``world``: trained on the preset's 15,000 scenes; select = world validation scenes of seed 101, test = the
  standard validation scenes (``data.val_seed=1``, what ``sparseclip eval`` reports).
- ``emoji``: ``sparseclip import-emoji DIR --format csv`` split by emoji: 4/5 of the training emoji train (``fit``),
  the other 1/5 select (first view), ``test.csv`` (emoji never seen in training) is the test split; zero-shot over
  the ``group`` column with ``examples/pretrained_emoji/templates.txt``.

The rule (applied to select-split figures only): the controls (dense head, ``linear_wide``) get the same
temperature treatment as the ReLU head (learned from OpenCLIP's start, or started at each cap) and the best of
each by mean(zero-shot, t2i R@1, i2t R@1) is their row; the chosen sparse setting is the one with the lowest
max(image L0, text L0) among the paper-recipe settings whose zero-shot and both R@1 are >= the best dense head's.
Then the chosen setting and both controls are trained with seeds 1 and 2 too; the test split gives the mean and
a 95% t-interval over the 3 seeds, and paired differences. Writes ``OUT/<dataset>.json`` and renders
``OUT/<dataset>.md`` and ``OUT/<dataset>.png`` from it (``--render-only``)::

    python examples/sparsity_levers/run.py world --out docs/sparsity
    python examples/sparsity_levers/run.py emoji --emoji-dir data/emoji --out docs/sparsity
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SELECT_SEED = 101  # world: validation scenes for choosing settings (the reported ones are data.val_seed=1)
SEEDS = (0, 1, 2)
PICKS = ("sparse", "dense", "wide", "sparse_demo", "dense_demo", "wide_demo")  # the rows trained with every seed
NEAR = 0.02  # the fallback rule: mean accuracy within 2 points of the best dense head's
REFERENCE = "cap 20"  # the lite_sparse preset before issue 21: every lever is compared with it
METRICS = ("zs", "t2i", "i2t", "image_L0_pct", "text_L0_pct", "image_L0_tau_pct", "text_L0_tau_pct",
           "image_active_pct")

# (lever, label, preset kind, overrides). kind: paper (the plain ReLU + CLIP loss recipe), departure (reported
# as such), control (dense heads). The preset is lite_<kind'> on the world, its emoji variant on the emoji set.
LEVERS: list[tuple[str, str, str, list[str]]] = [
    ("dense head", "dense, learned", "dense", []),
    *[("dense head", f"dense, cap {c}", "dense", ["model.init_at_cap=true", f"model.logit_scale_max={c}"])
      for c in (10, 20, 30)],
    ("linear_wide", "wide, learned", "wide", ["model.init_at_cap=false", "model.logit_scale_max=100"]),
    *[("linear_wide", f"wide, cap {c}", "wide", [f"model.logit_scale_max={c}"]) for c in (20, 30)],
    ("dense head", "dense, lr 1e-2", "dense", ["train.lr=1e-2"]),  # the controls get the lr lever too
    ("linear_wide", "wide, lr 1e-2", "wide", ["train.lr=1e-2"]),
    *[("cap", f"cap {c}", "sparse", [f"model.logit_scale_max={c}"]) for c in (10, 20)],
    ("steps (cap 20)", "cap 20, 1200 steps", "sparse", ["train.steps=1200"]),
    ("width (cap 20)", "cap 20, 128x", "sparse", ["model.head.expansion=128"]),
    ("cap schedule", "cap 100 -> 20", "sparse", ["train.logit_scale_max_start=100", "model.logit_scale_max=20"]),
    ("input centring (cap 20)", "cap 20, centred input", "sparse", ["model.head.input_norm=center"]),
    *[("lr (cap 20)", f"cap 20, lr {lr}", "sparse", [f"train.lr={lr}"]) for lr in ("3e-3", "1e-2", "3e-2")],
    # world only (the emoji set has no more pairs): its linear_wide control was not trained (2-core time budget)
    *[("4x pairs + 4x steps", f"{k}, 60k scenes, 1200 steps", kind, ["data.num_train=60000", "train.steps=1200", *o])
      for k, kind, o in (("cap 20", "sparse", []), ("dense", "dense", []))],
    # on the chosen setting (cap 20, lr 1e-2): a head bias; the towers' last block fine-tuned at lr 1e-4 (the usual
    # fine-tuning rate; the head keeps 1e-2); TopK at inference and training (a departure from the paper's recipe)
    ("head bias (lr 1e-2)", "lr 1e-2, bias", "sparse", ["train.lr=1e-2", "model.head.bias=true"]),
    ("towers' last block (lr 1e-2)", "lr 1e-2, last block tuned", "sparse",
     ["train.lr=1e-2", "model.freeze_image=false", "model.freeze_text=false", "train.tower_last_blocks=1",
      "train.tower_lr_scale=0.01"]),
    ("TopK (departure)", "lr 1e-2, TopK 64", "departure", ["train.lr=1e-2", "model.head.kind=topk",
                                                           "model.head.topk=64"]),
    # an L1 penalty on the L2-normalised codes (the paper's rejected alternative; a departure)
    ("L1 (departure)", "lr 1e-2, L1 0.01", "departure", ["train.lr=1e-2", "loss.l1_coef=0.01"]),
    # the coefficient around it (run on both sets; none is a pick: departures are reported, not chosen)
    *[("L1 (departure)", f"lr 1e-2, L1 {c}", "departure", ["train.lr=1e-2", f"loss.l1_coef={c}"])
      for c in ("0.001", "0.003", "0.03")],
]


def _preset(dataset: str, kind: str) -> tuple[str, list[str]]:
    """The preset of a row's kind and the overrides that make it that kind on this dataset."""
    base = {"sparse": "lite_sparse", "departure": "lite_sparse", "dense": "lite_dense", "wide": "lite_wide"}[kind]
    if dataset == "emoji":  # the emoji presets extend lite_dense / lite_sparse; linear_wide is lite_sparse's head
        emoji = HERE.parent / "pretrained_emoji"
        if base == "lite_dense":
            return str(emoji / "emoji_dense.yaml"), ["train.lr=1e-3"]
        return str(emoji / "emoji.yaml"), ["train.lr=1e-3", *(["model.head.kind=linear_wide"] if kind == "wide"
                                                              else [])]
    # the presets moved with issue 21 to this frontier's picks (world lr 1e-2), the emoji's later to the
    # dictionary-health sweep's (sparse 3e-3, dense 3e-2); the settings that name no learning rate were measured at
    # the earlier presets' 1e-3, pinned here so that each row reruns as measured
    return base, ["train.lr=1e-3"]


def _memoise_towers(model) -> None:
    """The towers are frozen: their output for the same input never changes, so each split's tower outputs are
    computed once for all runs (keyed by the input's bytes)."""
    memo = _memoise_towers.__dict__.setdefault("memo", {})
    image_fn, text_fn = model.tower_image, model.towers.encode_text

    def key(kind: str, t) -> str:
        return kind + hashlib.sha1(t.detach().contiguous().cpu().numpy().tobytes()).hexdigest()

    def image(x):
        k = key("i", x)
        if k not in memo:
            memo[k] = image_fn(x)
        return memo[k]

    def text(t, normalize: bool = False):
        k = key("t", t)
        if k not in memo:
            memo[k] = text_fn(t, normalize=False)
        return memo[k]

    model.tower_image, model.towers.encode_text = image, text


def _split_emoji(emoji_dir: Path) -> dict[str, Path]:
    """``fit.csv`` (4/5 of the training emoji, both views) and ``select.csv`` (the other 1/5, first view) next to
    the import's ``train.csv``, by a hash of the emoji (deterministic)."""
    rows = list(csv.DictReader((emoji_dir / "train.csv").open(encoding="utf-8")))
    chosen = {r["emoji"] for r in rows if int(hashlib.sha256(r["emoji"].encode()).hexdigest(), 16) % 5 == 0}
    out = {"fit": emoji_dir / "fit.csv", "select": emoji_dir / "select.csv", "test": emoji_dir / "test.csv"}
    for name, keep in (("fit", lambda r: r["emoji"] not in chosen),
                       ("select", lambda r: r["emoji"] in chosen and r["view"] == "0")):
        tmp = out[name].with_suffix(".tmp")
        with tmp.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(r for r in rows if keep(r))
        tmp.replace(out[name])
    return out


def _metrics(res: dict) -> dict:
    r, s = res["retrieval"], res["sparsity"]
    out = {"zs": res.get("zeroshot_mean_acc1", float("nan")), "t2i": r["text_to_image_R@1"],
           "i2t": r["image_to_text_R@1"]}
    for side in ("image", "text"):
        out |= {f"{side}_L0_pct": s[side]["L0_pct"], f"{side}_L0_tau_pct": s[side]["L0_tau_pct"],
                f"{side}_active_pct": s[side]["active_pct"], f"{side}_L0": s[side]["L0"]}
    return out


def run_one(out: Path, dataset: str, entry: tuple, seed: int, splits: dict) -> dict:
    """Train one setting (skipped when its row is on disk) and evaluate it on the select and test splits."""
    from sparseclip.config import load_config
    from sparseclip.eval import evaluate
    from sparseclip.eval.run import evaluate_run
    from sparseclip.files.atomic import write_json_atomic
    from sparseclip.model.checkpoint import load_model
    from sparseclip.train import train

    lever, label, kind, overrides = entry
    slug = "".join(c if c.isalnum() else "_" for c in label).strip("_") + f"_s{seed}"
    run = out / "runs" / dataset / slug
    row_path = run / "row.json"
    if row_path.is_file():
        return json.loads(row_path.read_text())
    data = [f"data.train_data={splits['fit']}"] if dataset == "emoji" else []
    preset, kind_overrides = _preset(dataset, kind)
    cfg = load_config(preset, [f"train.output_dir={run}", "train.progress=false", "train.tensorboard=false",
                               "train.ckpt_fractions=[]", *data, *kind_overrides, *overrides, f"train.seed={seed}"])
    t0 = time.time()
    train(cfg, overwrite=True)
    seconds = time.time() - t0
    model, cfg = load_model(run)
    if not cfg.train.tower_last_blocks:  # fine-tuned towers are this run's own: their outputs are not shared
        _memoise_towers(model)
    row = {"lever": lever, "label": label, "kind": kind, "overrides": overrides, "seed": seed,
           "logit_scale": float(model.logit_scale.detach().exp()), "train_seconds": seconds}
    for split in ("select", "test"):
        if dataset == "world":
            cfg.data.val_seed = SELECT_SEED if split == "select" else 1
            res = evaluate(model, cfg, progress=False, probe=False)
        else:
            templates = (HERE.parent / "pretrained_emoji" / "templates.txt").read_text().splitlines()
            res = evaluate_run(run, data=splits[split], label_key="group", templates=templates, probe=False,
                               progress=False, model=(model, cfg))
        row[split] = _metrics(res)
    write_json_atomic(row_path, row)
    print(json.dumps({"label": label, "seed": seed, **{k: round(v, 4) for k, v in row["test"].items()
                                                        if k in METRICS}}), flush=True)
    return row


def tower_stats(out: Path, dataset: str) -> dict:
    """Per modality, how much of the towers' training features is their common component: ``|mean|^2 /
    mean(|x|^2)`` over the cached features (1 = every feature the same vector, 0 = centred), and the fraction
    of negative entries. Read from any run's feature cache of this dataset."""
    from safetensors.torch import load_file

    for path in sorted((out / "runs" / dataset).glob("*/features.safetensors")):
        feats = load_file(str(path))
        stats = {}
        for side in ("image", "text"):
            x = feats[side].double()
            stats[side] = {"mean_share": float(x.mean(0).pow(2).sum() / x.pow(2).sum(1).mean()),
                           "negative_frac": float((x < 0).double().mean()), "rows": int(x.shape[0]),
                           "unique_rows": int(len(set(map(tuple, x[:, :8].tolist()))))}
        return stats
    return {}


def _score(m: dict) -> float:
    return (m["zs"] + m["t2i"] + m["i2t"]) / 3


def within_demo_budget(overrides: list[str]) -> bool:
    """Whether a setting costs no more than the preset before issue 21 (300 steps of 256 pairs on 64x heads, 15,000
    cached scenes): what the demo's <= 10 minutes on 2 cores allow."""
    kv = dict(o.split("=", 1) for o in overrides)
    cost = (float(kv.get("train.steps", 300)) / 300 * float(kv.get("train.batch_size", 256)) / 256
            * float(kv.get("model.head.expansion", 64)) / 64)
    towers_tuned = int(kv.get("train.tower_last_blocks", 0)) > 0  # no feature cache: the towers run every step
    return cost <= 1 and int(kv.get("data.num_train", 15000)) <= 15000 and not towers_tuned


def choose(rows: list[dict]) -> dict:
    """The selection rule on the select split (seed 0 rows), twice: over every setting, and over the settings
    within the demo's budget (``*_demo``, what the presets can afford). Per pool: the best dense head and the best
    ``linear_wide`` by mean accuracy, then the sparsest paper-recipe (and departure) setting whose zero-shot and
    both R@1 are >= that dense head's."""
    seed0 = [r for r in rows if r["seed"] == 0]
    chosen: dict = {}
    for suffix, pool in (("", seed0), ("_demo", [r for r in seed0 if within_demo_budget(r["overrides"])])):
        best = {k: max((r for r in pool if r["kind"] == k), key=lambda r: _score(r["select"]))["label"]
                for k in ("dense", "wide")}
        bar = next(r for r in pool if r["label"] == best["dense"])["select"]

        def sparsest(kind: str, near: bool = False, pool: list[dict] = pool, bar: dict = bar) -> str | None:
            ok = [r for r in pool if r["kind"] == kind and (
                _score(r["select"]) >= _score(bar) - NEAR if near
                else all(r["select"][m] >= bar[m] for m in ("zs", "t2i", "i2t")))]
            if not ok:
                return None
            return min(ok, key=lambda r: max(r["select"]["image_L0_pct"], r["select"]["text_L0_pct"]))["label"]

        rule, sparse = "all three", sparsest("sparse")
        if sparse is None:  # the fallback: mean accuracy within NEAR of the dense head's (said so in the doc)
            rule, sparse = "near", sparsest("sparse", near=True)
        if sparse is None:  # nothing near: the most accurate paper-recipe setting
            rule = "most accurate"
            sparse = max((r for r in pool if r["kind"] == "sparse"), key=lambda r: _score(r["select"]))["label"]
        chosen |= {f"dense{suffix}": best["dense"], f"wide{suffix}": best["wide"], f"sparse{suffix}": sparse,
                   f"sparse{suffix}_rule": rule, f"departure{suffix}": sparsest("departure")}
    return chosen


def _interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of a 95% t-interval."""
    import numpy as np
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def render(out: Path, dataset: str) -> str:
    """``OUT/<dataset>.md`` and ``OUT/<dataset>.png`` from ``OUT/<dataset>.json``; returns the Markdown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads((out / f"{dataset}.json").read_text())
    rows, chosen = data["rows"], data["chosen"]
    fmt = {m: ("{:.2f}" if m.endswith("pct") else "{:.3f}") for m in METRICS}
    cmd = f"python examples/sparsity_levers/run.py {dataset} --out {out} --render-only"
    lines = [f"<!-- generated by `{cmd}` from {dataset}.json; do not edit -->", "",
             f"**{dataset}**: every lever, seed 0, test split (settings chosen on the select split; "
             f"`*` = chosen). L0 % counts exact zeros; `tau` columns count entries > 0.001.", "",
             "| lever | setting | scale (end) | select mean acc | " + " | ".join(METRICS) + " |",
             "|---|---|---|---|" + "---|" * len(METRICS)]
    picked = {chosen[k] for k in (*PICKS, "departure", "departure_demo") if chosen.get(k)}
    for r in (r for r in rows if r["seed"] == 0):
        star = " *" if r["label"] in picked else ""
        cells = " | ".join(fmt[m].format(r["test"][m]) for m in METRICS)
        lines.append(f"| {r['lever']} | {r['label']}{star} | {r['logit_scale']:.1f} | {_score(r['select']):.3f} | "
                     f"{cells} |")
    missing = [e[1] for e in LEVERS if e[1] not in {r["label"] for r in rows}]
    if missing:
        lines += ["", f"Settings of the script not run on {dataset}: " + "; ".join(missing) + "."]
    for suffix, pool in (("", "every setting"), ("_demo", "settings within the demo's budget (no more compute than the "
                                                   "preset before issue 21)")):
        why = {"all three": " (zero-shot and both R@1 >= the best dense head's)",
               "near": f" (NO setting reached the best dense head's zero-shot and both R@1 on the select split; this "
                       f"is the sparsest whose mean accuracy is within {100 * NEAR:.0f} points of it)",
               "most accurate": " (no setting came within reach of the best dense head: the most accurate one)"}
        lines += ["", f"Chosen on the select split among {pool}: sparse **{chosen[f'sparse{suffix}']}**"
                  + why[chosen[f"sparse{suffix}_rule"]]
                  + f"; dense control **{chosen[f'dense{suffix}']}**; linear_wide **{chosen[f'wide{suffix}']}**"
                  + (f"; departure **{chosen[f'departure{suffix}']}**" if chosen.get(f"departure{suffix}") else "")
                  + "."]
    lines.append("")
    ref = next((r for r in rows if r["seed"] == 0 and r["label"] == REFERENCE), None)
    if ref is not None:
        lines += [f"Each setting against `{REFERENCE}` (the preset before issue 21), test split, seed 0: "
                  "L0 = max(image, text) % of dims; accuracy differences in points.", ""]
        base_l0 = max(ref["test"]["image_L0_pct"], ref["test"]["text_L0_pct"])
        for r in (r for r in rows if r["seed"] == 0 and r["kind"] in ("sparse", "departure") and r is not ref):
            l0 = max(r["test"]["image_L0_pct"], r["test"]["text_L0_pct"])
            d = {m: 100 * (r["test"][m] - ref["test"][m]) for m in ("zs", "t2i", "i2t")}
            lines.append(f"- {r['label']} ({r['kind']}): L0 {base_l0:.2f}% -> {l0:.2f}% ({l0 / base_l0:.2f}x); "
                         f"zero-shot {d['zs']:+.1f}, t2i {d['t2i']:+.1f}, i2t {d['i2t']:+.1f}")
        lines.append("")
    by = {}
    for r in rows:
        by.setdefault(r["label"], {})[r["seed"]] = r
    seeded = [k for k in PICKS if chosen.get(k) and len(by.get(chosen[k], {})) == len(SEEDS)]
    seeded = [k for i, k in enumerate(seeded) if chosen[k] not in {chosen[j] for j in seeded[:i]}]  # once each
    if seeded:
        lines += [f"Test split, seeds {list(SEEDS)}: mean ± 95% t-interval half-width.", "",
                  "| row | setting | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
        for k in seeded:
            runs = [by[chosen[k]][s]["test"] for s in SEEDS]
            cells = []
            for m in METRICS:
                mean, half = _interval([x[m] for x in runs])
                cells.append(f"{fmt[m].format(mean)} ± {fmt[m].format(half)}")
            lines.append(f"| {k.replace('_demo', ' (demo budget)')} | {chosen[k]} | " + " | ".join(cells) + " |")
        lines.append("")
        pairs = {(chosen[m], chosen[o]) for m, others in (("sparse", ("dense", "wide")),
                                                          ("sparse_demo", ("dense_demo", "wide_demo")))
                 for o in others if len(by.get(chosen[m], {})) == len(by.get(chosen[o], {})) == len(SEEDS)}
        for mine, other in sorted(pairs):
            for m in ("zs", "t2i", "i2t"):
                d = [100 * (by[mine][s]["test"][m] - by[other][s]["test"][m]) for s in SEEDS]
                mean, half = _interval(d)
                lines.append(f"- {mine} - {other}, {m}: {mean:+.1f} ± {half:.1f} points "
                             f"(paired by seed: {', '.join(f'{x:+.1f}' for x in d)})")
    stats = data.get("tower_stats") or {}
    if stats:
        lines += ["", "Tower features the heads are trained on (training rows): common component |mean|^2 / "
                  "mean |x|^2 (1: all alike, 0: centred), share of negative entries, distinct rows.", "",
                  "| tower | common component | negative entries | rows | distinct |", "|---|---|---|---|---|"]
        lines += [f"| {side} | {v['mean_share']:.3f} | {v['negative_frac']:.3f} | {v['rows']} | {v['unique_rows']} |"
                  for side, v in stats.items()]
    md = "\n".join(lines) + "\n"
    (out / f"{dataset}.md").write_text(md)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    seed0 = [r for r in rows if r["seed"] == 0]
    levers = list(dict.fromkeys(r["lever"] for r in seed0))
    for ax, metric in zip(axes, ("zs", "t2i"), strict=True):
        for lever in levers:
            pts = [r for r in seed0 if r["lever"] == lever]
            dense_like = pts[0]["kind"] in ("dense", "wide")
            x = [100.0 if dense_like else max(r["test"]["image_L0_pct"], r["test"]["text_L0_pct"]) for r in pts]
            y = [r["test"][metric] for r in pts]
            style = "s" if dense_like else ("x--" if pts[0]["kind"] == "departure" else "o-")
            order = sorted(range(len(x)), key=x.__getitem__)
            ax.plot([x[i] for i in order], [y[i] for i in order], style, label=lever, alpha=0.85)
        ax.axvline(1.0, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("max(image, text) L0, % of dims (test split)")
        ax.set_ylabel(f"{metric} (test split)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"{dataset}: sparsity levers of the lite pair (dotted line: the paper's 1%)")
    fig.tight_layout()
    fig.savefig(out / f"{dataset}.png", dpi=110)
    plt.close(fig)
    return md


def _disk_rows(out: Path, dataset: str) -> list[dict]:
    """Every row on disk (``OUT/runs/DATASET/*/row.json``) of a setting in ``LEVERS``, in seed and lever order."""
    order = {e[1]: i for i, e in enumerate(LEVERS)}
    found = [json.loads(f.read_text()) for f in (out / "runs" / dataset).glob("*/row.json")]
    return sorted((r for r in found if r["label"] in order), key=lambda r: (r["seed"], order[r["label"]]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", choices=("world", "emoji"))
    p.add_argument("--out", type=Path, default=Path("runs/sparsity_levers"))
    p.add_argument("--emoji-dir", type=Path, default=Path("data/emoji"),
                   help="output of `sparseclip import-emoji DIR --format csv` (emoji only)")
    p.add_argument("--only", default="", help="labels to run, separated by ';' (default: every lever)")
    p.add_argument("--no-seeds", action="store_true", help="skip the seeds 1, 2 of the chosen rows")
    p.add_argument("--render-only", action="store_true")
    p.add_argument("--collect", action="store_true",
                   help="write the JSON from the rows already on disk (OUT/runs/DATASET/*/row.json), training nothing")
    a = p.parse_args(argv)
    if not a.render_only:
        if not a.collect:
            splits = _split_emoji(a.emoji_dir) if a.dataset == "emoji" else {}
            print(f"load average before: {os.getloadavg()}", flush=True)
            only = {s.strip() for s in a.only.split(";") if s.strip()}
            unknown = only - {e[1] for e in LEVERS}
            if unknown:
                p.error(f"--only: no such setting {sorted(unknown)} (see LEVERS)")
            for e in LEVERS:
                if not only or e[1] in only:
                    run_one(a.out, a.dataset, e, 0, splits)
            if not a.no_seeds:  # the picks, chosen over every seed-0 row on disk, with the other seeds
                chosen = choose(_disk_rows(a.out, a.dataset))
                for label in dict.fromkeys(chosen[k] for k in PICKS):
                    entry = next(e for e in LEVERS if e[1] == label)
                    for s in SEEDS[1:]:
                        run_one(a.out, a.dataset, entry, s, splits)
            print(f"load average after: {os.getloadavg()}", flush=True)
        from sparseclip.files.atomic import write_json_atomic

        rows = _disk_rows(a.out, a.dataset)
        previous = a.out / f"{a.dataset}.json"  # the tower statistics stay when no run's feature cache is left
        stats = tower_stats(a.out, a.dataset) or (json.loads(previous.read_text()).get("tower_stats", {})
                                                  if previous.is_file() else {})
        write_json_atomic(a.out / f"{a.dataset}.json", {"command": " ".join(sys.argv), "dataset": a.dataset,
                                                         "select_seed": SELECT_SEED, "chosen": choose(rows),
                                                         "rows": rows, "tower_stats": stats})
    print(render(a.out, a.dataset))
    return 0


if __name__ == "__main__":
    sys.exit(main())
