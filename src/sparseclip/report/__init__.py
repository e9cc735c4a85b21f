"""The HTML report of a run: one self-contained static page (plus its images, linked relatively).

``write_report(run_dir)`` reads what ``sparseclip analyze`` / ``sparseclip demo`` wrote (see
:mod:`sparseclip.report.data` for the input layout) and writes ``RUN_DIR/report/index.html`` with the images
it shows copied under ``RUN_DIR/report/assets/``, so the folder can be moved or zipped and opened offline.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from ..files.atomic import write_text_atomic
from .browser import BrowserError, dump_dom, find_chromium, screenshot
from .data import Feature, ReportError, RunData, load_run
from .html import render_page

ASSETS = "assets"


def _asset_name(src: Path, data: RunData) -> str:
    """Where ``src`` goes under ``assets/``: its path inside the analysis folder or the run folder."""
    analysis = data.analysis_dir.resolve()
    if src.is_relative_to(analysis):
        return "analysis/" + src.relative_to(analysis).as_posix()
    return "run/" + src.relative_to(data.run_dir.resolve()).as_posix()


def _assets(data: RunData, out_dir: Path) -> dict[Path, str]:
    """Copy every image the page shows into ``out_dir/assets``; returns source -> URL relative to the page."""
    sources = [*data.plots, *data.demo_plots]
    for f in data.features:
        sources += f.top_images + ([f.heatmap] if f.heatmap else [])
    urls: dict[Path, str] = {}
    for src in sources:
        if src in urls:
            continue
        name = f"{ASSETS}/{_asset_name(src.resolve(), data)}"
        dest = out_dir / name
        if not dest.is_file() or dest.stat().st_size != src.stat().st_size \
                or dest.stat().st_mtime < src.stat().st_mtime:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
        urls[src] = quote(name)
    return urls


#: the source tree's docs folder (present in a checkout, absent from an installed wheel)
DOCS = Path(__file__).resolve().parents[3] / "docs"


def _docs(out_dir: Path) -> Callable[[str], str | None]:
    """Copy each doc the glossary names (``docs/interpret.md``) under ``assets/docs/`` when the source tree has it,
    so the page links to it offline; returns doc -> URL relative to the page (None when not there)."""
    cache: dict[str, str | None] = {}

    def url(doc: str) -> str | None:
        if doc not in cache:
            src = DOCS / Path(doc).name
            cache[doc] = None
            if doc.startswith("docs/") and src.is_file():
                dest = out_dir / ASSETS / "docs" / src.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)
                cache[doc] = quote(f"{ASSETS}/docs/{src.name}")
        return cache[doc]

    return url


def write_report(run_dir: str | Path, out: str | Path | None = None, max_features: int | None = None,
                 title: str | None = None) -> Path:
    """Write the report of ``run_dir`` and return the path of its ``index.html``.

    ``out`` is the report folder (default ``RUN_DIR/report``); ``max_features`` limits the feature browser
    to the first N features of ``features.json``. Missing optional inputs are skipped (and listed on the
    page); a missing ``RUN_DIR/analysis`` raises :class:`ReportError`.
    """
    data = load_run(run_dir, max_features=max_features)
    out_dir = Path(out) if out is not None else data.run_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    urls = _assets(data, out_dir)
    page = render_page(data, urls.__getitem__, title or f"sparseclip report: {data.run_dir.resolve().name}",
                       doc_url=_docs(out_dir))
    index = out_dir / "index.html"
    write_text_atomic(index, page)
    return index


__all__ = ["BrowserError", "Feature", "ReportError", "RunData", "dump_dom", "find_chromium", "load_run",
           "render_page", "screenshot", "write_report"]
