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
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ..config import Config, ConfigError, apply_overrides, config_from_dict, fingerprint, load_config
from ..eval.run import evaluate_run
from ..model.heads import HEADS
from ..model.rundir import RunDir
from ..train.logger import read_log
from ..train.loop import train
from .ablate_summary import write_summary
from .demo import result_row, same_config
from .grids import AblateError, Cell, Grid, resolve_grids

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
    """A readable, config-unique run folder name (the hash covers the config's :func:`fingerprint`)."""
    digest = hashlib.sha1(json.dumps(fingerprint(cfg.to_dict()), sort_keys=True).encode()).hexdigest()[:8]
    h = cfg.model.head
    kind = HEADS.get(h.kind)
    parts = [h.kind, f"x{h.expansion}" if kind.wide else "", h.placement, "rep" if h.rep_relu else "",
             kind.name_tag(h), f"l1{cfg.loss.l1_coef:g}" if cfg.loss.l1_coef else "",
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
    run = RunDir(run_dir)
    return run.has_final() and run.eval_json.is_file() and same_config(run_dir, cfg)


def execute(run: Run, progress: bool = False) -> tuple[dict, str]:
    """Train (or resume, or reuse) and evaluate one run; returns its result row and what was done."""
    d = run.dir
    if is_finished(d, run.cfg):
        status = "reused"
    else:
        t0 = time.time()
        resume = "latest" if RunDir(d).latest() is not None and same_config(d, run.cfg) else None
        if resume is None and d.exists():
            shutil.rmtree(d)  # a stale or foreign partial run: start clean
        train(run.cfg, resume=resume, progress=progress)
        evaluate_run(d, RunDir(d).eval_json, progress=progress, extra={"train_seconds": time.time() - t0})
        shutil.rmtree(RunDir(d).checkpoints_dir, ignore_errors=True)  # final/ is all a finished run needs
        status = "resumed" if resume else "trained"
    res = json.loads(RunDir(d).eval_json.read_text())
    log = read_log(d)
    row = result_row(run.cell.label, run.cfg, res, res.get("train_seconds", 0.0))
    row.update(grid=run.grid, cell=run.cell.label, seed=run.seed, run=d.name,
               image_dead_pct=100.0 - row["image_active_pct"], text_dead_pct=100.0 - row["text_active_pct"],
               logit_scale=log[-1]["logit_scale"], train_l0_start_pct=log[0]["image_l0_pct"],
               train_l0_end_pct=log[-1]["image_l0_pct"],
               l0_curve=[[r["step"], r["image_l0_pct"]] for r in log])
    return row, status


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
    md = write_summary(out, grids, rows, base, seeds, command, time.time() - t_all)
    print(md)
    return out


def render_summary(summary_json: str | Path) -> Path:
    """Regenerate ``summary.md``, ``summary.json`` and ``plots/`` beside ``summary_json`` from the per-run rows it
    holds (no training): the verdicts and tables always come from the committed numbers and the current code."""
    path = Path(summary_json)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows, base, seeds, names = data["rows"], data["base"], data["seeds"], list(data["grids"])
    except FileNotFoundError:
        raise AblateError(f"--render {path}: no such file") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AblateError(f"--render {path}: not an ablate summary.json ({type(e).__name__})") from None
    write_summary(path.parent, resolve_grids(",".join(names)), rows, base, seeds, data.get("command", ""), 0.0)
    return path.parent / "summary.md"
