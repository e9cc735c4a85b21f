"""Markdown tables: evaluation results (``eval.json`` files, one row per model) and analysis summaries
(``summary.json``); every cell from the JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..data.base import DataError
from .columns import TABLE_COLUMNS


def markdown_table(rows: list[dict], columns: tuple[str, ...] = TABLE_COLUMNS, digits: int = 3) -> str:
    """``summary.json`` rows as a Markdown table (missing or null values shown as ``-``; a column that no row has,
    e.g. in a summary written before the column existed, is left out)."""

    def cell(v) -> str:
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return "-"
        if isinstance(v, float):
            return f"{v:.1f}" if abs(v) >= 10 else f"{v:.{digits}f}"
        return str(v)

    columns = tuple(c for c in columns if any(c in r for r in rows))
    lines = ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for r in rows:
        lines.append(f"| {r.get('model', '?')} | " + " | ".join(cell(r.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def analysis_table(path: str | Path) -> str:
    """The Markdown table of an analysis ``summary.json`` (plus its reference encoder and notes)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        rows = data["rows"]
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not an analysis summary.json ({type(e).__name__})") from None
    text = markdown_table(rows) + "\n"
    if data.get("reference"):
        text += f"\nClarity reference encoder: {data['reference']}.\n"
    sae = _sae_lines(rows)
    if sae:
        flat = any("fvu_train_image" in r for r in rows)
        text += ("\nHow the SAE rows trained (held-out unexplained variance; converged = " + (
            "the held-out FVU was flat before the step cap, docs/sae.md" if flat else
            "the FVU fell by < 0.005 over the last 10% of steps before the decay") + "):\n\n" + sae + "\n")
    if data.get("verdicts"):
        from ..interpret.verdicts import render_verdicts

        text += "\n" + render_verdicts(data) + "\n"
    return text


def sae_summary(path: str | Path) -> str:
    """The SAE rows of an analysis ``summary.json``: how each trained (FVU, convergence, k or L1, L0 reached)."""
    try:
        rows = json.loads(Path(path).read_text(encoding="utf-8"))["rows"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not an analysis summary.json ({type(e).__name__})") from None
    text = _sae_lines(rows)
    if not text:
        raise DataError(f"{path}: no SAE rows (run `sparseclip analyze --sae`)")
    return text


def _sae_lines(rows: list[dict]) -> str:
    """One line per SAE row of an analysis: its FVU and convergence per modality, and its k or L1 coefficient."""
    out = []
    for r in rows:
        sides = [side for side in ("image", "text") if f"fvu_{side}" in r]
        if not sides:
            continue
        parts = []
        for side in sides:
            train = f" (train {r[f'fvu_train_{side}']:.3f})" if f"fvu_train_{side}" in r else ""
            steps = f" after {r[f'sae_steps_{side}']} steps" if f"sae_steps_{side}" in r else ""
            parts.append(f"{side} FVU {r[f'fvu_{side}']:.3f}{train} "
                         f"({'converged' if r.get(f'sae_converged_{side}') else 'NOT converged'}{steps})")
        knob = r.get("sae_k_or_l1")
        if knob is not None:
            parts.append(f"L1 {knob:.3g}" if "relu" in r["model"].lower() else f"k {knob:.0f}")
        live = ""
        if r.get("live_features") is not None:
            live = f", {r['live_features']} live features ({r['dead_pct']:.1f}% dead)"
            if r.get("sae_live_target") is not None:
                live += f", target {r['sae_live_target']}" + ("" if r.get("sae_live_within") else " NOT met")
        out.append(f"- {r['model']}: " + ", ".join(parts) + f"; image L0 reached {r['L0_image']:.1f}" + live)
    return "\n".join(out)


def _pct(v: float) -> str:
    return f"{100 * v:.1f}"


def eval_row(res: dict) -> dict[str, str]:
    """The table cells of one ``eval.json`` (world or ``--data``); missing parts are ``-``."""
    zs = res.get("zeroshot", {})
    one = next(iter(zs.values())) if len(zs) == 1 else None
    ret, sp = res.get("retrieval", {}), res.get("sparsity", {}).get("image", {})
    cells = {
        "model": str(res.get("model", "?")), "head": str(res.get("head", "?")),
        "code dim": str(sp.get("dim", "-")),
        "zero-shot acc1 %": _pct(res["zeroshot_mean_acc1"]) if "zeroshot_mean_acc1" in res else "-",
        "zero-shot mean recall %": _pct(one["mean_per_class_recall"]) if one else "-",
    }
    for d, label in (("image_to_text", "i->t"), ("text_to_image", "t->i")):
        for k in (1, 5):
            v = ret.get(f"{d}_R@{k}")
            cells[f"{label} R@{k} %"] = _pct(v) if v is not None else "-"
    cells["L0 image"] = f"{sp['L0']:.1f}" if "L0" in sp else "-"
    cells["L0 image %"] = f"{sp['L0_pct']:.2f}" if "L0_pct" in sp else "-"
    cells["active % image"] = f"{sp['active_pct']:.1f}" if "active_pct" in sp else "-"
    return cells


def eval_table(paths: list[str | Path]) -> str:
    """A Markdown table of several ``eval.json`` files, in the order given."""
    rows = []
    for p in paths:
        try:
            rows.append(eval_row(json.loads(Path(p).read_text(encoding="utf-8"))))
        except FileNotFoundError:
            raise DataError(f"{p}: no such file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, TypeError, KeyError) as e:
            raise DataError(f"{p}: not an eval.json ({type(e).__name__})") from None
    if not rows:
        raise DataError("no eval.json given")
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"
