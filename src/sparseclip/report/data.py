"""Reading what ``sparseclip analyze`` / ``sparseclip demo`` wrote, tolerant of missing optional pieces.

Input layout (all optional except ``analysis/``)::

    RUN_DIR/analysis/summary.json   {"rows": [{"model": str, <numeric columns>...}], "notes": [str]}
    RUN_DIR/analysis/features.json  {"features": [{"id", "name", "name_score", "top_images", "top_captions",
                                     "top_words", "hist", "modality_share", "density", "best_concept",
                                     "best_auroc", "heatmap"}]}
    RUN_DIR/analysis/plots/*.png    frequency histogram, modality scatter, L0 over training, clarity, ...
    RUN_DIR/results.json            the demo's table {"rows": [...]} (else results.md), and RUN_DIR/plots/*.png

Also read when present: ``summary.json``'s ``verdicts`` (the interpretability verdicts the docs render),
``features.json``'s ``selection`` (``{"by", "rule", "live", "dim"}``: how its features were chosen) and ``views``
(``{"most active": [ids], "most selective": [ids], "random live": [ids], ...}``: other sets of features, each
with its entry in ``features``), and the evaluations ``RUN_DIR/eval.json`` and ``RUN_DIR/<model>/eval.json``
(the dictionary's health on the training inputs and the sample it was counted on).

RUN_DIR may also be an analysis folder itself (one written with ``sparseclip analyze --out DIR``).
Image paths inside ``features.json`` are relative to the analysis folder (or to ``RUN_DIR``); only image
files inside those two folders are used.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..model.rundir import FEATURES_JSON, RESULTS_JSON, RESULTS_MD, SUMMARY_JSON, RunDir

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg")


class ReportError(ValueError):
    """The run directory cannot be reported on (one-line message)."""


@dataclass
class Feature:
    """One feature card's content, validated (strings are raw: escaping happens when rendering)."""

    id: int
    name: str = ""
    name_score: float | None = None
    top_images: list[Path] = field(default_factory=list)
    top_captions: list[str] = field(default_factory=list)
    top_words: list[tuple[str, float | None]] = field(default_factory=list)
    hist_bins: list[float] = field(default_factory=list)
    hist_counts: list[float] = field(default_factory=list)
    modality_share: float | None = None
    density: float | None = None
    best_concept: str = ""
    best_auroc: float | None = None
    heatmap: Path | None = None


@dataclass
class RunData:
    """Everything the page shows, with a list of what was missing or skipped."""

    run_dir: Path
    analysis_dir: Path
    summary_rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    features: list[Feature] = field(default_factory=list)
    n_features_total: int = 0
    plots: list[Path] = field(default_factory=list)
    demo_rows: list[dict] = field(default_factory=list)
    demo_markdown: str = ""
    demo_plots: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: the analysis' verdicts (``summary.json``), as the docs render them
    verdicts: list[dict] = field(default_factory=list)
    #: how ``features.json``'s features were chosen, and other sets of them (feature ids by view name)
    selection: dict = field(default_factory=dict)
    views: dict[str, list[int]] = field(default_factory=dict)
    #: ``eval.json`` of each evaluated model: ``""`` for RUN_DIR's own, else the results row's model name
    evals: dict[str, dict] = field(default_factory=dict)


def read_json(path: Path) -> object | None:
    """Parsed JSON of ``path``; None when the file is absent; ReportError when it is not valid JSON."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: invalid JSON ({e.msg} at line {e.lineno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: cannot read ({e})") from None


def number(v) -> float | None:
    """``v`` as a finite float, else None (booleans and strings are not numbers here)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def text(v) -> str:
    """``v`` as a string (None becomes empty)."""
    return "" if v is None else str(v)


def _image_path(run_dir: Path, base: Path, rel) -> Path | None:
    """An existing image file named by ``rel`` (relative to ``base``, else to ``run_dir``) that lies inside
    ``run_dir`` or ``base`` (after resolving links), else None."""
    if not isinstance(rel, str) or not rel or not rel.lower().endswith(IMAGE_SUFFIXES):
        return None
    roots = (run_dir.resolve(), base.resolve())
    for b in (base, run_dir):
        p = (b / rel).resolve()
        if p.is_file() and any(p.is_relative_to(r) for r in roots):
            return p
    return None


def _rows(obj, what: str, path: Path, skipped: list[str]) -> list[dict]:
    if obj is None:
        skipped.append(f"{what}: {path.name} not found")
        return []
    rows = obj.get("rows") if isinstance(obj, dict) else None
    if not isinstance(rows, list):
        raise ReportError(f"{path}: expected an object with a 'rows' list")
    good = [r for r in rows if isinstance(r, dict)]
    if len(good) < len(rows):
        skipped.append(f"{what}: {len(rows) - len(good)} malformed rows")
    return good


def _feature(raw: dict, run_dir: Path, base: Path, missing: list[int]) -> Feature:
    fid = raw.get("id")
    if isinstance(fid, bool) or not isinstance(fid, int):
        raise TypeError("feature without an integer 'id'")
    f = Feature(id=fid, name=text(raw.get("name")), name_score=number(raw.get("name_score")),
                modality_share=number(raw.get("modality_share")), density=number(raw.get("density")),
                best_concept=text(raw.get("best_concept")), best_auroc=number(raw.get("best_auroc")))
    for rel in raw.get("top_images") or []:
        p = _image_path(run_dir, base, rel)
        if p is None:
            missing[0] += 1
        else:
            f.top_images.append(p)
    f.top_captions = [text(c) for c in (raw.get("top_captions") or []) if c is not None]
    for w in raw.get("top_words") or []:
        if isinstance(w, (list, tuple)) and w:
            f.top_words.append((text(w[0]), number(w[1]) if len(w) > 1 else None))
        elif isinstance(w, str):
            f.top_words.append((w, None))
    hist = raw.get("hist")
    if isinstance(hist, dict) and isinstance(hist.get("counts"), list):
        counts = [number(c) for c in hist["counts"]]
        bins = [number(b) for b in hist.get("bins") or []]
        if counts and None not in counts:
            f.hist_counts = counts
            f.hist_bins = bins if None not in bins else []
    if raw.get("heatmap"):
        f.heatmap = _image_path(run_dir, base, raw["heatmap"])
        if f.heatmap is None:
            missing[0] += 1
    return f


def _plots(folder: Path) -> list[Path]:
    """Image files of ``folder``: the issue's named plots first, then the rest by name."""
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    order = ("freq", "modality", "l0", "clarity", "auroc", "dynamic")

    def rank(p: Path) -> tuple[int, str]:
        name = p.stem.lower()
        return next((i for i, key in enumerate(order) if key in name), len(order)), name

    return sorted(files, key=rank)


def load_run(run_dir: str | Path, max_features: int | None = None) -> RunData:
    """Read and validate a run directory's analysis (and demo) outputs."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ReportError(f"{run} is not a directory")
    analysis = RunDir(run).analysis
    if not analysis.is_dir() and any((run / n).is_file() for n in (SUMMARY_JSON, FEATURES_JSON)):
        analysis = run  # RUN_DIR is itself an analysis folder (`sparseclip analyze --out DIR`)
    elif not analysis.is_dir():
        raise ReportError(f"{analysis} not found: run `sparseclip analyze` (or `sparseclip demo`) first")
    data = RunData(run_dir=run, analysis_dir=analysis)

    summary_path = analysis / SUMMARY_JSON
    summary = read_json(summary_path)
    data.summary_rows = _rows(summary, "summary table", summary_path, data.skipped)
    if isinstance(summary, dict) and isinstance(summary.get("notes"), list):
        data.notes = [text(n) for n in summary["notes"]]
    if isinstance(summary, dict) and isinstance(summary.get("verdicts"), list):
        data.verdicts = [v for v in summary["verdicts"] if isinstance(v, dict) and isinstance(v.get("metric"), str)]

    features_path = analysis / FEATURES_JSON
    feats = read_json(features_path)
    if feats is None:
        data.skipped.append("feature browser: features.json not found")
    else:
        raw = feats.get("features") if isinstance(feats, dict) else None
        if not isinstance(raw, list):
            raise ReportError(f"{features_path}: expected an object with a 'features' list")
        data.n_features_total = len(raw)
        data.selection = feats.get("selection") if isinstance(feats.get("selection"), dict) else {}
        views = feats.get("views") if isinstance(feats.get("views"), dict) else {}
        data.views = {text(k): [int(i) for i in v if isinstance(i, int) and not isinstance(i, bool)]
                      for k, v in views.items() if isinstance(v, list)}
        bad, missing = 0, [0]
        for item in raw[:max_features] if max_features is not None else raw:
            try:
                data.features.append(_feature(item, run, analysis, missing))
            except (TypeError, AttributeError):
                bad += 1
        if bad:
            data.skipped.append(f"feature browser: {bad} malformed feature entries")
        if missing[0]:
            data.skipped.append(f"feature browser: {missing[0]} image files missing or outside the run directory")

    data.plots = _plots(analysis / "plots")
    if analysis == run:
        return data  # an analysis folder on its own: no demo outputs to look for
    results_path = run / RESULTS_JSON
    results = read_json(results_path)
    if results is not None:
        data.demo_rows = _rows(results, "demo results", results_path, data.skipped)
    elif (run / RESULTS_MD).is_file():
        data.demo_markdown = (run / RESULTS_MD).read_text(encoding="utf-8", errors="replace")
    data.demo_plots = _plots(run / "plots")
    data.evals = _evals(run, [text(r.get("model")) for r in data.demo_rows])
    return data


def _evals(run: Path, models: list[str]) -> dict[str, dict]:
    """The ``eval.json`` of RUN_DIR (key ``""``) and of each results row's run folder ``RUN_DIR/<model>``; one that
    cannot be read is left out (the page then says less, it does not fail)."""
    out = {}
    for key, folder in [("", run)] + [(m, run / m) for m in models if m and "/" not in m and m not in (".", "..")]:
        try:
            res = read_json(RunDir(folder).eval_json)
        except ReportError:
            continue
        if isinstance(res, dict):
            out[key] = res
    return out
