"""The HTML report: renders from a fake analysis folder, escapes user text, skips missing pieces, and works
in a real headless Chromium (skipped when no Chromium is installed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from sparseclip.cli import main as cli_main
from sparseclip.report import ReportError, dump_dom, find_chromium, screenshot, write_report

EVIL = "<script>alert(1)</script>"
EVIL_ATTR = '"><img src=x onerror="document.body.setAttribute(\'data-pwned\',\'1\')">'


def _png(path: Path, color: tuple[int, int, int], size: int = 32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", (size, size), color)
    im.paste((255 - color[0], 255 - color[1], 255 - color[2]), (8, 8, 20, 20))
    im.save(path)


def _feature(fid: int, name: str, **kw) -> dict:
    f = {"id": fid, "name": name, "name_score": 0.5 + fid / 100,
         "top_images": [f"images/f{fid}_{i}.png" for i in range(4)],
         "top_captions": [f"a red circle number {i}" for i in range(7)],
         "top_words": [["red", 0.9], ["circle", 0.7]],
         "hist": {"bins": [0.1 * i for i in range(11)], "counts": [500, 80, 40, 20, 9, 5, 3, 2, 1, 0]},
         "modality_share": 0.5, "density": 0.01, "best_concept": "color:red", "best_auroc": 0.97,
         "heatmap": f"heatmaps/f{fid}.png"}
    f.update(kw)
    return f


def make_run(root: Path) -> Path:
    """A run folder as `sparseclip demo` + `sparseclip analyze` leave it (tiny, with hostile strings)."""
    run = root / "run"
    an = run / "analysis"
    rows = [{"model": "dense", "L0_image": 128.0, "L0_text": 128.0, "active_pct": 100.0, "clarity": 0.51,
             "multimodal_frac": 0.2, "mean_best_auroc": 0.8, "monosemantic_frac": 0.1, "extra_metric": 7},
            {"model": "sparse", "L0_image": 31.5, "L0_text": 40.2, "active_pct": 88.0, "clarity": 0.56,
             "multimodal_frac": 0.8, "mean_best_auroc": 0.93, "monosemantic_frac": 0.6, "extra_metric": 3},
            {"model": "sae-topk-k32", "L0_image": 32.0, "L0_text": 32.0, "active_pct": 70.0, "clarity": 0.52,
             "multimodal_frac": 0.1, "mean_best_auroc": 0.85, "monosemantic_frac": 0.3, "note": EVIL}]
    an.mkdir(parents=True)
    (an / "summary.json").write_text(json.dumps({"rows": rows, "notes": ["clarity reference: dense", EVIL]}))
    feats = [_feature(1, "red circle"),
             _feature(2, EVIL, top_captions=[EVIL, EVIL_ATTR], modality_share=0.97,
                      top_words=[[EVIL_ATTR, 0.5]], best_concept=EVIL),
             _feature(3, "blue square", heatmap=None, hist=None, modality_share=0.02,
                      top_images=["images/f3_0.png", "images/missing.png", "../../outside.png"])]
    (an / "features.json").write_text(json.dumps({"features": feats}))
    for fid in (1, 2, 3):
        for i in range(4):
            _png(an / "images" / f"f{fid}_{i}.png", (40 * fid, 60 * i, 120))
        _png(an / "heatmaps" / f"f{fid}.png", (200, 30, 30))
    _png(root / "outside.png", (1, 2, 3))
    for name in ("modality_scatter", "frequency_hist", "clarity"):
        _png(an / "plots" / f"{name}.png", (90, 140, 200), size=120)
    wide = {f"zs_task{i}": 0.5 + i / 100 for i in range(12)}  # the demo's table is wide: shown transposed
    (run / "results.json").write_text(json.dumps({"rows": [{"model": "dense", **wide, "zs_mean": 0.61},
                                                            {"model": "sparse", **wide, "zs_mean": 0.63}]}))
    _png(run / "plots" / "accuracy.png", (20, 120, 20), size=100)
    return run


@pytest.fixture()
def run(tmp_path) -> Path:
    return make_run(tmp_path)


def test_renders_all_sections(run):
    index = write_report(run)
    assert index == run / "report" / "index.html"
    page = index.read_text()
    assert len(re.findall(r'<article class="card feature-card"', page)) == 3
    for heading in ("Summary: dense vs sparse vs SAEs", "Plots", "Demo results", "Feature browser"):
        assert heading in page
    assert 'title="mean pairwise cosine similarity' in page  # known columns get explanations
    assert page.count('<table class="data summary">') == 1 and page.count('<table class="data transposed') == 1
    assert "extra_metric" in page and ">31.5<" in page  # unknown numeric columns are shown too
    # plots in the order: frequency histogram before the modality scatter
    assert page.index("frequency_hist.png") < page.index("modality_scatter.png")


def test_images_are_copied_and_linked_relatively(run):
    index = write_report(run)
    page = index.read_text()
    srcs = re.findall(r'src="([^"]+)"', page)
    assert srcs and all(not s.startswith(("/", "http:", "https:", "file:")) for s in srcs)
    for s in srcs:
        assert (index.parent / s).is_file(), s
    assert "<link" not in page and "https://" not in page and "http://" not in page  # works offline
    assert "outside.png" not in page  # a path escaping the run directory is not followed
    assert not list((index.parent / "assets").rglob("outside.png"))
    assert "3 image files missing or outside the run directory" not in page
    assert "2 image files missing or outside the run directory" in page


def test_user_text_is_escaped(run):
    page = write_report(run).read_text()
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "onerror=" not in page.replace("onerror=&quot;", "")  # never a live attribute
    assert page.count("<script>") == 1  # only the page's own script


def test_missing_optional_pieces_are_skipped(tmp_path):
    run = tmp_path / "r"
    (run / "analysis").mkdir(parents=True)
    (run / "analysis" / "summary.json").write_text(json.dumps({"rows": [{"model": "sparse", "clarity": 0.5}]}))
    page = write_report(run).read_text()
    assert "Summary" in page and "<article" not in page and "Demo results" not in page
    assert "features.json not found" in page


def test_analysis_folder_given_directly(run):
    index = write_report(run / "analysis", out=run / "elsewhere")
    page = index.read_text()
    assert len(re.findall(r'<article class="card feature-card"', page)) == 3
    assert "Demo results" not in page


def test_max_features(run):
    page = write_report(run, max_features=2).read_text()
    assert len(re.findall(r'<article class="card feature-card"', page)) == 2
    assert "the first 2 of 3" in page


def test_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(ReportError, match="analysis not found"):
        write_report(tmp_path)
    assert cli_main(["report", str(tmp_path / "nope")]) == 2
    assert cli_main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("sparseclip: error: ") for e in err)
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "features.json").write_text("{broken")
    with pytest.raises(ReportError, match="invalid JSON"):
        write_report(tmp_path)


def test_cli_writes_report(run, capsys):
    assert cli_main(["report", str(run), "--out", str(run / "r2"), "--title", "My <run>"]) == 0
    assert capsys.readouterr().out.strip() == str(run / "r2" / "index.html")
    assert "<title>My &lt;run&gt;</title>" in (run / "r2" / "index.html").read_text()


CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian package 'chromium')")


@needs_chromium
def test_headless_chromium_loads_the_page(run, tmp_path):
    index = write_report(run)
    dom = dump_dom(index)
    assert len(re.findall(r'<article class="card feature-card"', dom)) == 3
    assert 'data-ready="1"' in dom  # the inline script ran without errors
    assert "3 of 3 features shown" in dom
    assert 'data-pwned="1"' not in dom  # the injected handler never ran
    assert "<title>sparseclip report: run</title>" in dom
    # the search box filters cards: a query in the URL hides the non-matching ones
    dom = dump_dom(index.resolve().as_uri() + "#q=blue")
    assert "1 of 3 features shown" in dom
    assert len(re.findall(r'<article class="card feature-card"[^>]* hidden', dom)) == 2

    png = screenshot(index, tmp_path / "shot.png", width=1000, height=1400)
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (1000, 1400)
        lo, hi = im.convert("L").getextrema()
        assert hi - lo > 100  # not a blank page
