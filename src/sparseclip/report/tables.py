"""Markdown tables of evaluation results (``eval.json`` files), one row per model, every cell from the JSON."""

from __future__ import annotations

import json
from pathlib import Path

from ..data.sources import DataError


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
