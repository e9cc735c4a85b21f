"""``sparseclip ablate``: the paper's small ablations as one resumable, seeded sweep.

Each grid (``sparseclip/configs/grids/NAME.yaml``, or any YAML file of the same shape) varies one factor of a
base config and keeps towers, data, steps and seeds identical. Every cell is trained with
:func:`sparseclip.train.train` for each seed and evaluated with :func:`sparseclip.eval.evaluate`; the sweep
writes ``summary.md`` / ``summary.json`` (mean and spread over seeds) and PNG plots. Runs live in
``OUT/runs/<slug>`` named by their config, so a cell shared by two grids is trained once, a finished run is
reused, and a crashed one resumes from its latest checkpoint.

A grid file holds ``title``, ``question``, optional ``base`` (settings for every cell), ``cells`` (a list of
``{dotted.key: value}`` settings) and/or ``product`` (every combination of value lists), and optionally
``x``/``x_label``/``series`` (a numeric key to plot against, and the key naming the lines).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import matplotlib
import numpy as np
import yaml
from tqdm.auto import tqdm

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..checkpoint import latest_checkpoint, load_model  # noqa: E402
from ..config import Config, ConfigError, apply_overrides, config_from_dict, load_config  # noqa: E402
from ..data.tasks import TASK_SPECS  # noqa: E402
from ..eval import evaluate  # noqa: E402
from .demo import result_row, same_config  # noqa: E402
from .logger import read_log  # noqa: E402
from .loop import train  # noqa: E402

GRID_ORDER = ("expansion", "sparsifier", "cap", "placement")
#: the mean zero-shot accuracy of guessing (balanced classes); accuracies within NEAR_CHANCE of it decide nothing
CHANCE = float(np.mean([1 / len(classes) for classes, _ in TASK_SPECS.values()]))
NEAR_CHANCE = 0.03
AT_CHANCE = f"inconclusive at this scale (zero-shot accuracy within {100 * NEAR_CHANCE:.0f} points of chance)"

#: run sizes: overrides on the built-in base (the ``micro`` preset). ``default`` is about an hour for all
#: grids x 3 seeds on 2 idle CPU cores; ``quick`` a few minutes.
SIZES: dict[str, list[str]] = {
    "default": ["train.steps=300", "train.batch_size=64", "train.lr=1e-3", "train.warmup=30", "train.log_every=10",
                "data.num_val=400", "data.num_probe_train=400"],
    "quick": ["train.steps=40", "train.batch_size=32", "train.lr=1e-3", "train.warmup=4", "train.log_every=4",
              "data.num_val=100", "data.num_probe_train=100"],
}
#: for every run: no TensorBoard, quiet trainer, a few resumable checkpoints instead of the fraction ones
RUN_OVERRIDES = ["train.tensorboard=false", "train.progress=false", "train.ckpt_fractions=[]", "train.keep_last=1"]

#: (key in a result row, table header, scale): accuracies shown in %, the rest as measured
METRICS: list[tuple[str, str, float]] = [
    ("zs_mean", "zero-shot %", 100), ("probe_mean", "probe %", 100), ("t2i_R@1", "t2i R@1 %", 100),
    ("i2t_R@1", "i2t R@1 %", 100), ("image_L0", "image L0", 1), ("image_L0_pct", "image L0 %", 1),
    ("image_dead_pct", "image dead %", 1), ("text_L0_pct", "text L0 %", 1),
    ("train_l0_start_pct", "train L0 % (first log)", 1), ("train_l0_end_pct", "train L0 % (last log)", 1),
    ("logit_scale", "logit scale", 1), ("train_seconds", "train s", 1),
]


class AblateError(ValueError):
    """A bad grid name or grid file, described in one line."""


@dataclass(frozen=True)
class Cell:
    """One setting of a grid's factor(s): ``settings`` maps dotted config keys to values."""

    label: str
    settings: tuple[tuple[str, object], ...]

    def get(self, key: str, default: object = None) -> object:
        return dict(self.settings).get(key, default)


@dataclass
class Grid:
    """A one-factor-at-a-time sweep definition."""

    name: str
    title: str
    question: str
    cells: list[Cell]
    base: dict = field(default_factory=dict)
    x: str | None = None
    x_label: str = ""
    series: str | None = None


# ---------------------------------------------------------------------------------------------- grids


def grid_names() -> list[str]:
    """Names of the grids shipped with the package, in the paper's order."""
    root = resources.files("sparseclip") / "configs" / "grids"
    found = {p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml")} if root.is_dir() else set()
    return [g for g in GRID_ORDER if g in found] + sorted(found - set(GRID_ORDER))


def _label(settings: dict) -> str:
    return " ".join(f"{k.rsplit('.', 1)[-1]}={json.dumps(v)}".replace('"', "") for k, v in settings.items())


def load_grid(name_or_path: str) -> Grid:
    """A shipped grid by name, or a grid YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise AblateError(f"grid file not found: {name_or_path}")
        text, name = path.read_text(), path.stem
    else:
        res = resources.files("sparseclip") / "configs" / "grids" / f"{name_or_path}.yaml"
        if not res.is_file():
            raise AblateError(f"unknown grid {name_or_path!r}; known: {', '.join(grid_names())}, all "
                              "(or a path to a grid .yaml file)")
        text, name = res.read_text(), name_or_path
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise AblateError(f"{name_or_path}: not valid YAML ({str(e).splitlines()[0]})") from None
    unknown = set(data) - {"title", "question", "base", "cells", "product", "x", "x_label", "series"}
    if unknown:
        raise AblateError(f"{name_or_path}: unknown grid keys {sorted(unknown)}")
    settings = [dict(c) for c in data.get("cells") or []]
    product = data.get("product") or {}
    if not all(isinstance(v, list) and v for v in product.values()):
        raise AblateError(f"{name_or_path}: every 'product' entry must be a non-empty list of values")
    combos = itertools.product(*product.values()) if product else []
    settings += [dict(zip(product, combo, strict=True)) for combo in combos]
    if not settings:
        raise AblateError(f"{name_or_path}: the grid has no cells (give 'cells' and/or 'product')")
    cells = [Cell(_label(s), tuple(s.items())) for s in settings]
    if len({c.label for c in cells}) != len(cells):
        raise AblateError(f"{name_or_path}: two cells have the same settings")
    return Grid(name=name, title=data.get("title", name), question=data.get("question", ""), cells=cells,
                base=dict(data.get("base") or {}), x=data.get("x"), x_label=data.get("x_label", data.get("x", "")),
                series=data.get("series"))


def resolve_grids(spec: str) -> list[Grid]:
    """``all``, a grid name, a grid file, or several of them separated by commas."""
    names = grid_names() if spec == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise AblateError("--grid: give a grid name, 'all' or a grid .yaml file")
    return [load_grid(n) for n in names]


# ---------------------------------------------------------------------------------------------- runs


@dataclass
class Run:
    """One training run of the sweep: a grid cell at one seed."""

    grid: str
    cell: Cell
    seed: int
    cfg: Config
    dir: Path


def base_dict(config: str | None = None, quick: bool = False, overrides: list[str] | None = None) -> dict:
    """The sweep's base config as a dict: ``config`` (default: the ``micro`` preset at the default or quick
    size; a user config keeps its own size unless ``quick``) plus ``overrides``."""
    size = SIZES["quick"] if quick else ([] if config else SIZES["default"])
    cfg = load_config(config or "micro", [*size, *RUN_OVERRIDES, *(overrides or [])])
    return cfg.to_dict()


def _as_overrides(settings: dict) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in settings.items()]


def run_slug(cfg: Config) -> str:
    """A readable, config-unique run folder name (the hash covers every field except the output folder)."""
    data = cfg.to_dict()
    data["train"].pop("output_dir")
    digest = hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:8]
    h = cfg.model.head
    parts = [h.kind, f"x{h.expansion}" if h.kind != "dense" else "", h.placement, "rep" if h.rep_relu else "",
             f"k{h.topk}" if h.kind == "topk" else "", f"l1{cfg.loss.l1_coef:g}" if cfg.loss.l1_coef else "",
             f"cap{cfg.model.logit_scale_max:g}", f"s{cfg.train.seed}", digest]
    return "-".join(p for p in parts if p)


def plan(grids: list[Grid], base: dict, seeds: list[int], out: Path) -> list[Run]:
    """Every (grid, cell, seed) as a :class:`Run` with a validated config (errors raised before any training)."""
    runs = []
    for grid in grids:
        for cell in grid.cells:
            for seed in seeds:
                try:
                    data = apply_overrides(base, [*_as_overrides(grid.base), *_as_overrides(dict(cell.settings)),
                                                  f"train.seed={seed}"])
                    cfg = config_from_dict(data)
                except ConfigError as e:
                    raise AblateError(f"grid {grid.name}, cell {cell.label}: {e}") from None
                if cfg.train.ckpt_every == 0:
                    cfg.train.ckpt_every = max(1, cfg.train.steps // 4)
                run_dir = out / "runs" / run_slug(cfg)
                cfg.train.output_dir = str(run_dir)
                runs.append(Run(grid.name, cell, seed, cfg, run_dir))
    return runs


def is_finished(run_dir: Path, cfg: Config) -> bool:
    """True when the run has its final model and evaluation, made with exactly this config."""
    return ((run_dir / "final" / "model.safetensors").is_file() and (run_dir / "eval.json").is_file()
            and same_config(run_dir, cfg))


def execute(run: Run, progress: bool = False) -> tuple[dict, str]:
    """Train (or resume, or reuse) and evaluate one run; returns its result row and what was done."""
    d = run.dir
    if is_finished(d, run.cfg):
        status = "reused"
    else:
        t0 = time.time()
        resume = "latest" if latest_checkpoint(d) is not None and same_config(d, run.cfg) else None
        if resume is None and d.exists():
            shutil.rmtree(d)  # a stale or foreign partial run: start clean
        train(run.cfg, resume=resume, progress=progress)
        model, cfg = load_model(d)
        res = evaluate(model, cfg, progress=progress)
        res["train_seconds"] = time.time() - t0 - res["eval_seconds"]
        (d / "eval.json").write_text(json.dumps(res, indent=2))
        shutil.rmtree(d / "checkpoints", ignore_errors=True)  # final/ is all a finished run needs
        status = "resumed" if resume else "trained"
    res = json.loads((d / "eval.json").read_text())
    log = read_log(d)
    row = result_row(run.cell.label, run.cfg, res, res.get("train_seconds", 0.0))
    row.update(grid=run.grid, cell=run.cell.label, seed=run.seed, run=d.name,
               image_dead_pct=100.0 - row["image_active_pct"], text_dead_pct=100.0 - row["text_active_pct"],
               logit_scale=log[-1]["logit_scale"], train_l0_start_pct=log[0]["image_l0_pct"],
               train_l0_end_pct=log[-1]["image_l0_pct"],
               l0_curve=[[r["step"], r["image_l0_pct"]] for r in log])
    return row, status


# ---------------------------------------------------------------------------------------------- results


def aggregate(rows: list[dict], grid: Grid) -> list[dict]:
    """Per cell of ``grid``: mean, std (ddof 1), min, max and n over seeds of every metric, plus the mean
    training L0 curve."""
    out = []
    for cell in grid.cells:
        mine = [r for r in rows if r["grid"] == grid.name and r["cell"] == cell.label]
        if not mine:
            continue
        entry: dict = {"cell": cell.label, "settings": dict(cell.settings), "n": len(mine),
                       "seeds": [r["seed"] for r in mine], "code_dim": mine[0]["code_dim"]}
        for key, _, _ in METRICS:
            v = np.array([r[key] for r in mine], dtype=float)
            entry[key] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                          "min": float(v.min()), "max": float(v.max())}
        steps = [s for s, _ in mine[0]["l0_curve"]]
        curves = np.array([[v for _, v in r["l0_curve"]] for r in mine if len(r["l0_curve"]) == len(steps)])
        entry["l0_curve"] = {"step": steps, "image_l0_pct": curves.mean(0).tolist()}
        out.append(entry)
    return out


def grid_markdown(grid: Grid, agg: list[dict]) -> str:
    """One grid's table: a row per cell, each metric as mean ± std over seeds."""
    lines = [f"## {grid.name}: {grid.title}", "", grid.question, "",
             "| cell | code dim | seeds | " + " | ".join(h for _, h, _ in METRICS) + " |",
             "|---|---|---|" + "---|" * len(METRICS)]
    for e in agg:
        vals = [f"{e[k]['mean'] * s:.{0 if abs(e[k]['mean'] * s) >= 1000 else 1}f} ± {e[k]['std'] * s:.1f}"
                for k, _, s in METRICS]
        lines.append(f"| {e['cell']} | {e['code_dim']} | {e['n']} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def _find(agg: list[dict], **want: object) -> dict | None:
    """The cell whose settings include every ``key=value`` (keys with ``__`` for dots)."""
    for e in agg:
        if all(e["settings"].get(k.replace("__", ".")) == v for k, v in want.items()):
            return e
    return None


def compare(a: dict, b: dict, key: str, scale: float = 1.0) -> tuple[float, str]:
    """(mean(a) - mean(b), word): 'higher'/'lower' when the difference exceeds twice its standard error over
    seeds, 'within noise' otherwise (and always with fewer than 2 seeds per side)."""
    d = (a[key]["mean"] - b[key]["mean"]) * scale
    if min(a["n"], b["n"]) < 2:
        return d, "within noise"
    se = math.sqrt(a[key]["std"] ** 2 / a["n"] + b[key]["std"] ** 2 / b["n"]) * scale
    return d, ("higher" if d > 0 else "lower") if abs(d) > 2 * se else "within noise"


def _chance(*entries: dict) -> bool:
    return all(e["zs_mean"]["mean"] < CHANCE + NEAR_CHANCE for e in entries)


def _acc(e: dict) -> str:
    return f"{100 * e['zs_mean']['mean']:.1f} ± {100 * e['zs_mean']['std']:.1f}%"


def _l0(e: dict) -> str:
    return f"{e['image_L0_pct']['mean']:.1f}%"


def verdicts(aggs: dict[str, list[dict]]) -> list[str]:
    """One sentence per paper claim that the grids present can judge: reproduced / not / inconclusive."""
    out = []
    g = aggs.get("expansion", [])
    dense, relus = _find(g, model__head__kind="dense"), sorted(
        [e for e in g if e["settings"].get("model.head.kind") == "relu"], key=lambda e: e["code_dim"])
    lins = sorted([e for e in g if e["settings"].get("model.head.kind") == "linear_wide"], key=lambda e: e["code_dim"])
    if dense and relus:
        d, w = compare(relus[0], dense, "zs_mean", 100)
        verdict = {"lower": "reproduced", "higher": "not reproduced"}.get(w, "inconclusive at this scale")
        verdict = AT_CHANCE if _chance(relus[0], dense) else verdict
        out.append(f"**ReLU without expansion lowers accuracy**: {verdict}. ReLU at {relus[0]['code_dim']} dims "
                   f"{_acc(relus[0])} vs dense {_acc(dense)} zero-shot ({d:+.1f} points, {w}).")
    if len(relus) > 1 and lins and (len(lins) > 1 or dense):
        # without a linear_wide k=1 cell, the dense head is the same thing (a D -> D projection, no ReLU)
        (r0, r1), (l0, l1) = (relus[0], relus[-1]), (lins[0] if len(lins) > 1 else dense, lins[-1])
        dr, wr = compare(r1, r0, "zs_mean", 100)
        dl, wl = compare(l1, l0, "zs_mean", 100)
        dz, wz = compare(r1, r0, "image_L0_pct")
        acc_ok, sparse_ok = wr == "higher", wz == "lower" and l1["image_L0_pct"]["mean"] > 90
        only = wl != "higher" or dl < dr
        verdict = ("reproduced" if acc_ok and sparse_ok and only else
                   "not reproduced" if wr == "lower" or wz == "higher" else "inconclusive at this scale")
        verdict = AT_CHANCE if _chance(r0, r1, l0, l1) else verdict
        out.append(f"**Expansion raises accuracy and sparsity, only with the ReLU**: {verdict}. From "
                   f"{r0['code_dim']} to {r1['code_dim']} dims ReLU goes {_acc(r0)} -> {_acc(r1)} ({dr:+.1f}, {wr}) "
                   f"and image L0 {_l0(r0)} -> {_l0(r1)} of dims ({wz}); the linear_wide control goes {_acc(l0)} -> "
                   f"{_acc(l1)} ({dl:+.1f}, {wl}) with L0 {_l0(l1)}.")
    g = aggs.get("sparsifier", [])
    relu = _find(g, model__head__kind="relu", loss__l1_coef=None)
    others = [e for e in g if e is not relu]
    if relu and others:
        cmp = [(e, *compare(relu, e, "zs_mean", 100)) for e in others]
        wins = sum(w == "higher" for _, _, w in cmp)
        losses = sum(w == "lower" for _, _, w in cmp)
        verdict = ("reproduced" if wins == len(cmp) else "not reproduced" if losses
                   else "partly reproduced" if wins else "inconclusive at this scale")
        verdict = AT_CHANCE if _chance(relu, *others) else verdict
        detail = "; ".join(f"{e['cell']} {_acc(e)} ({d:+.1f} for ReLU, {w})" for e, d, w in cmp)
        out.append(f"**ReLU beats L1 and TopK**: {verdict}. ReLU {_acc(relu)} zero-shot vs {detail}.")
        start = relu["train_l0_start_pct"]["mean"]
        end = relu["train_l0_end_pct"]["mean"]
        starts = ", ".join(f"{e['cell']} {e['train_l0_start_pct']['mean']:.1f}%" for e in others)
        gradual = start - end > 0.25 * start and all(e["train_l0_start_pct"]["mean"] < start for e in others)
        out.append(f"**ReLU sparsifies gradually while L1/TopK start sparse**: "
                   f"{'reproduced' if gradual else 'not reproduced at this scale'}. ReLU's training-batch L0 "
                   f"goes {start:.1f}% -> {end:.1f}% of dims from the first to the last log; the others start at "
                   f"{starts}.")
    g = sorted(aggs.get("cap", []), key=lambda e: e["settings"].get("model.logit_scale_max", 0))
    if len(g) > 1:
        lo, hi = g[0], g[-1]
        dz, wz = compare(lo, hi, "image_L0_pct")
        da, wa = compare(lo, hi, "zs_mean", 100)
        mono = all(a["image_L0_pct"]["mean"] <= b["image_L0_pct"]["mean"] for a, b in zip(g, g[1:], strict=False))
        verdict = ("reproduced" if wz == "lower" and mono else "partly reproduced" if wz == "lower"
                   else "not reproduced" if wz == "higher" else "inconclusive at this scale")
        series = ", ".join(f"cap {e['settings']['model.logit_scale_max']}: L0 {_l0(e)}, {_acc(e)}" for e in g)
        out.append(f"**The logit-scale cap controls sparsity**: {verdict}. {series} (lowest vs highest cap: L0 "
                   f"{dz:+.1f} points, {wz}; accuracy {da:+.1f} points, {wa}; L0 monotone in the cap: {mono}).")
    g = aggs.get("placement", [])
    rep, reprelu = (_find(g, model__head__placement="replace", model__head__rep_relu=v) for v in (False, True))
    app = _find(g, model__head__placement="append", model__head__rep_relu=False)
    if rep and app and reprelu:
        da, wa = compare(app, rep, "zs_mean", 100)
        dd, wd = compare(reprelu, rep, "image_dead_pct")
        dr, wr = compare(reprelu, rep, "zs_mean", 100)
        out.append(f"**Placement and RepReLU** (the paper leaves placement open; NCL's RepReLU is meant to avoid dead "
                   f"units): append vs replace {_acc(app)} vs {_acc(rep)} ({da:+.1f}, {wa}), L0 {_l0(app)} vs "
                   f"{_l0(rep)}; RepReLU vs ReLU {_acc(reprelu)} vs {_acc(rep)} ({dr:+.1f}, {wr}), dead image "
                   f"features {reprelu['image_dead_pct']['mean']:.1f}% vs {rep['image_dead_pct']['mean']:.1f}% "
                   f"({dd:+.1f}, {wd}).")
    return out


# ---------------------------------------------------------------------------------------------- plots


def plot_grid(grid: Grid, agg: list[dict], out: Path) -> list[Path]:
    """Bars (accuracy, L0, dead features) per cell, metric-vs-x lines when the grid has ``x``, and the mean
    training-batch L0 over steps per cell. Error bars are the std over seeds."""
    paths = []
    panels = [("zs_mean", "zero-shot acc %", 100), ("image_L0_pct", "image L0 % of dims", 1),
              ("image_dead_pct", "dead image features %", 1)]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    xs = range(len(agg))
    for ax, (key, title, s) in zip(axes, panels, strict=True):
        ax.bar(xs, [e[key]["mean"] * s for e in agg], yerr=[e[key]["std"] * s for e in agg], capsize=3, color="C0")
        ax.set_xticks(list(xs))
        ax.set_xticklabels([e["cell"] for e in agg], rotation=40, ha="right", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0].axhline(100 * CHANCE, ls=":", color="grey")  # guessing
    fig.suptitle(grid.title, fontsize=10)
    paths.append(_save(fig, out / f"{grid.name}_bars.png"))
    if grid.x:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        groups: dict[str, list[dict]] = {}
        for e in agg:
            groups.setdefault(str(e["settings"].get(grid.series or "", "")), []).append(e)
        for ax, (key, title, s) in zip(axes, panels[:2], strict=True):
            for i, (name, es) in enumerate(groups.items()):
                pts = sorted(((e["settings"][grid.x], e) for e in es if grid.x in e["settings"]), key=lambda p: p[0])
                if len(pts) > 1:
                    ax.errorbar([p for p, _ in pts], [e[key]["mean"] * s for _, e in pts],
                                yerr=[e[key]["std"] * s for _, e in pts], marker="o", capsize=3, label=name or None,
                                color=f"C{i}")
                else:  # a single reference cell (e.g. the dense head): a horizontal line
                    ax.axhline(es[0][key]["mean"] * s, ls="--", color=f"C{i}", label=es[0]["cell"])
            if grid.x == "model.head.expansion":
                ax.set_xscale("log", base=2)
            if key == "zs_mean":
                ax.axhline(100 * CHANCE, ls=":", color="grey", label="chance")
            _style(ax, grid.x_label, title)
        paths.append(_save(fig, out / f"{grid.name}_vs_x.png"))
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for e in agg:
        ax.plot(e["l0_curve"]["step"], e["l0_curve"]["image_l0_pct"], label=e["cell"])
    ax.set_yscale("log")
    _style(ax, "step", "train-batch image L0 % (mean over seeds)")
    paths.append(_save(fig, out / f"{grid.name}_l0_training.png"))
    return paths


def _style(ax, xlabel: str, title: str) -> None:
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- the sweep


def run_ablation(grid: str = "all", quick: bool = False, seeds: int = 3, out: str | Path = "ablate_out",
                 config: str | None = None, overrides: list[str] | None = None, progress: bool = True,
                 command: str = "") -> Path:
    """Run (or resume) the sweep and write ``summary.md``, ``summary.json`` and ``plots/``; returns ``out``."""
    if seeds < 1:
        raise AblateError(f"--seeds: must be >= 1, got {seeds}")
    grids = resolve_grids(grid)
    out = Path(out)
    base = base_dict(config, quick, overrides)
    runs = plan(grids, base, list(range(seeds)), out)
    unique = list(dict.fromkeys(r.dir for r in runs))
    print(f"[ablate] {len(grids)} grid(s), {len(runs)} cell x seed runs, {len(unique)} distinct; runs in "
          f"{out / 'runs'}")
    done: dict[Path, dict] = {}
    t_all = time.time()
    bar = tqdm(total=len(unique), desc="ablate", unit="run", disable=not progress, dynamic_ncols=True)
    for r in runs:
        if r.dir in done:
            continue
        t0 = time.time()
        row, status = execute(r)
        done[r.dir] = row
        bar.update(1)
        tqdm.write(f"[ablate] {len(done)}/{len(unique)} {r.dir.name}: {status} ({time.time() - t0:.0f} s) "
                   f"zero-shot {100 * row['zs_mean']:.1f}%, image L0 {row['image_L0_pct']:.1f}%")
    bar.close()
    rows = [{**done[r.dir], "grid": r.grid, "cell": r.cell.label, "seed": r.seed} for r in runs]
    aggs = {g.name: aggregate(rows, g) for g in grids}
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    made = [p for g in grids for p in plot_grid(g, aggs[g.name], plots)]
    b = config_from_dict(base)
    header = [
        "# sparseclip ablate: results", "",
        *([f"Command: `{command}`", ""] if command else []),
        f"Base config `{b.name}` (embed_dim {b.model.embed_dim}, vision width {b.model.vision_cfg.get('width')}, "
        f"data {b.data.kind}), {b.train.steps} steps x batch {b.train.batch_size}, lr {b.train.lr:g}, "
        f"seeds {', '.join(map(str, range(seeds)))} (train.seed: initialisation; the data stream is the same "
        f"for every run); evaluation on {b.data.num_val} held-out images per task. Each value is mean ± std "
        f"over seeds. L0 = mean non-zero code dims per input; dead = % of dims that fire (> 0.001) on fewer "
        f"than 2 evaluation inputs; train L0 = % of positive code entries on the training batch, from log.jsonl "
        f"(for the signed dense/linear_wide heads, L0 is 100% and train L0 / dead count positive entries, not "
        f"sparsity). Chance level of the zero-shot mean: {100 * CHANCE:.1f}%. {len(unique)} distinct runs, "
        f"{sum(r['train_seconds'] for r in done.values()):.0f} s of training in all; "
        f"{time.time() - t_all:.0f} s this invocation.", "",
        "## Verdicts (difference 'higher'/'lower' = beyond 2 standard errors over seeds)", "",
        *[f"- {v}" for v in verdicts(aggs)], "",
    ]
    body = [grid_markdown(g, aggs[g.name]) for g in grids]
    pics = ["## Plots", "", *[f"![{p.stem}](plots/{p.name})" for p in made], ""]
    md = "\n".join(header) + "\n" + "\n".join(body) + "\n" + "\n".join(pics)
    (out / "summary.md").write_text(md)
    (out / "summary.json").write_text(json.dumps(
        {"command": command, "seeds": seeds, "base": base,
         "grids": {g.name: {"title": g.title, "question": g.question, "cells": aggs[g.name]} for g in grids},
         "verdicts": verdicts(aggs), "rows": rows}, indent=1))
    print(md)
    return out
