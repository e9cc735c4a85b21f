"""The ablation grids: which settings each grid varies (the YAML files in ``configs/grids``), loaded and checked."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

GRID_ORDER = ("expansion", "sparsifier", "cap", "placement")


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
