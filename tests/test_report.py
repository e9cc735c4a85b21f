"""The HTML report: the first screen answers (sparsity, accuracy, interpretability in sentences from the JSON, with
what each number counts and intervals where seeds exist), tags follow the code, plain labels with definitions and a
glossary, raw tables folded, a feature browser that says what it shows; user text escaped, missing pieces skipped.
The real-browser checks are in tests/test_report_browser.py."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from sparseclip.cli import main as cli_main
from sparseclip.report import ReportError, write_report
from sparseclip.report.answer import sparsity_tag

EVIL = "<script>alert(1)</script>"
EVIL_ATTR = '"><img src=x onerror="document.body.setAttribute(\'data-pwned\',\'1\')">'


def _png(path: Path, color: tuple[int, int, int], size: int = 32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", (size, size), color)
    im.paste((255 - color[0], 255 - color[1], 255 - color[2]), (size // 4, size // 4, size // 2, size // 2))
    im.save(path)


def _feature(fid: int, name: str, **kw) -> dict:
    f = {"id": fid, "name": name, "name_score": 0.8 + fid / 100,
         "top_images": [f"images/f{fid}_{i}.png" for i in range(4)],
         "top_captions": [f"a red circle number {i}" for i in range(7)],
         "top_words": [["red", 0.9], ["circle", 0.7]],
         "hist": {"bins": [0.1 * i for i in range(11)], "counts": [500, 80, 40, 20, 9, 5, 3, 2, 1, 0]},
         "modality_share": 0.5, "density": 0.01, "best_concept": "color:red", "best_auroc": 0.97,
         "heatmap": f"heatmaps/f{fid}.png"}
    f.update(kw)
    return f


VERDICTS = [
    {"metric": "pixel_clarity", "value": 0.437, "holds": True, "per": "feature",
     "against": [{"baseline": "baseline: random dictionary (rate-matched)", "kind": "random dictionary",
                  "baseline_value": 0.36, "diff": 0.078, "lo": 0.018, "hi": 0.14, "verdict": "above"}]},
    {"metric": "f1_frac", "value": 0.0, "holds": False, "per": "feature", "chance": {"above": False},
     "against": [{"baseline": "dense (lite_dense)", "kind": "dense", "baseline_value": 0.0, "diff": 0.0, "lo": 0.0,
                  "hi": 0.0, "verdict": "level"}]},
    {"metric": "multimodal_selective_frac", "value": 0.002, "holds": False, "against": []},
]


def _eval_row(model: str, head: str, dim: int, l0: float, zs: float, t2i: float, i2t: float, **kw) -> dict:
    return {"model": model, "name": f"{model}: towers and head", "head": head, "code_dim": dim, "zs_mean": zs,
            "t2i_R@1": t2i, "i2t_R@1": i2t, "image_L0": l0, "image_L0_pct": 100 * l0 / dim,
            "text_L0_pct": 100 * 1.1 * l0 / dim, "image_active_pct": 30.0, **kw}


def make_run(root: Path, seeds: bool = False, views: bool = False, selection: bool = True) -> Path:
    """A run folder as `sparseclip demo` + `sparseclip analyze` leave it (tiny, with hostile strings)."""
    run = root / "run"
    an = run / "analysis"
    rows = [{"model": "sparse (lite_sparse)", "L0_image": 70.5, "L0_text": 72.0, "code_dim": 8192, "active_pct": 88.0,
             "clarity": 0.56, "multimodal_frac": 0.8, "mean_best_auroc": 0.93, "live_selective_frac": 0.2,
             "extra_metric": 3},
            {"model": "dense (lite_dense)", "L0_image": 128.0, "L0_text": 128.0, "code_dim": 128, "active_pct": 100.0,
             "clarity": 0.51, "multimodal_frac": 0.2, "mean_best_auroc": 0.8, "extra_metric": 7},
            {"model": "baseline: random init", "L0_image": 4158.0, "code_dim": 8192, "clarity": 0.5},
            {"model": "sae-topk-k32", "L0_image": 32.0, "code_dim": 8192, "clarity": 0.52, "note": EVIL}]
    an.mkdir(parents=True)
    (an / "summary.json").write_text(json.dumps({"rows": rows, "notes": ["clarity reference: dense", EVIL],
                                                 "verdicts": VERDICTS}))
    feats = [_feature(1, "red circle"),
             _feature(2, EVIL, top_captions=[EVIL, EVIL_ATTR], modality_share=0.97,
                      top_words=[[EVIL_ATTR, 0.5]], best_concept=EVIL),
             _feature(3, "large red triangle", name_score=0.55, heatmap=None, hist=None, modality_share=0.02,
                      density=0.0004, top_images=["images/f3_0.png", "images/missing.png", "../../outside.png"])]
    doc: dict = {"features": feats}
    if selection:
        doc["selection"] = {"by": "auroc", "live": 812, "dim": 8192}
    if views:
        feats.append(_feature(9, "busy", density=0.5))
        doc["views"] = {"chosen": [1, 2, 3], "most active": [9, 1], "random live": [3, 9]}
    (an / "features.json").write_text(json.dumps(doc))
    for fid in (1, 2, 3, 9):
        for i in range(4):
            _png(an / "images" / f"f{fid}_{i}.png", (40 * (fid % 5), 60 * i, 120))
        _png(an / "heatmaps" / f"f{fid}.png", (200, 30, 30))
    _png(root / "outside.png", (1, 2, 3))
    for name in ("modality_scatter", "frequency_hist", "clarity_bars"):
        _png(an / "plots" / f"{name}.png", (90, 140, 200), size=120)
    health = {"image_active_train_pct": 22.8, "text_active_train_pct": 24.1, "image_dead_train_pct": 70.0,
              "active_both_train_pct": 12.3}
    base = [("lite_dense", "dense", 128, 128.0, 0.821, 0.370, 0.416, {}),
            ("lite_sparse", "relu", 8192, 88.4, 0.824, 0.378, 0.402, health),
            ("lite_wide", "linear_wide", 8192, 8192.0, 0.826, 0.368, 0.416, {})]
    results = []
    for model, head, dim, l0, zs, t2i, i2t, extra in base:
        offsets = ((0.0, 0.012, 0.018) if head == "relu" else (0.0, 0.01, 0.02)) if seeds else (None,)
        for s, d in enumerate(offsets):
            name = model if d is None else f"{model}-s{s}"
            results.append(_eval_row(name, head, dim, l0, zs + (d or 0.0), t2i, i2t, **extra))
    (run / "results.json").write_text(json.dumps({"rows": results}))
    (run / "lite_sparse").mkdir()
    (run / "lite_sparse" / "eval.json").write_text(json.dumps(
        {"dictionary": {"sample": {"source": "inputs of the training stream", "n": 10000, "of": 15000}}}))
    _png(run / "plots" / "accuracy.png", (20, 120, 20), size=100)
    return run


@pytest.fixture()
def run(tmp_path) -> Path:
    return make_run(tmp_path)


def _text(page: str) -> str:
    return html.unescape(" ".join(re.sub(r"<[^>]+>", " ", page).split()))


def _section(page: str, sid: str) -> str:
    start = page.index(f'<section id="{sid}"')
    return page[start:page.index("</section>", start)]


def test_the_first_screen_answers_in_sentences(run):
    page = write_report(run).read_text()
    answer = _section(page, "answer")
    assert page.index('<section id="answer"') < min(page.index(s) for s in ('id="plots"', 'id="features"',
                                                                              'id="details"', "<details"))
    sparsity = _text(re.search(r'id="verdict-sparsity">(.*?)</p>', answer)[1])
    assert sparsity == ("lite_sparse is sparse: 88.4 of its 8,192 dims are non-zero per image on average (1.08%), "
                        "1.19% per text; the dense model lite_dense uses 100% of its dims. On the training inputs "
                        "22.8% of its dims are active on images, 24.1% on texts, 12.3% on both.")
    accuracy = _text(re.search(r'id="verdict-accuracy">(.*?)</p>', answer)[1])
    assert accuracy.startswith("lite_sparse is as accurate as the dense model lite_dense on zero-shot "
                               "classification: 82.4% against 82.1% (gap +0.3 points; one seed, no interval")
    assert "text-to-image R@1 37.8% against 37.0% (+0.8 points)" in accuracy
    interp = _text(re.search(r'id="verdict-interpretability">(.*?)</p>', answer)[1])
    assert interp.startswith("1 of 2 interpretability measures beat every baseline they must") and \
        interp.endswith(": pixel clarity.")
    sentences = _text(answer[answer.index('<ul class="verdicts">'):])
    assert "pixel clarity 0.437: above every baseline it must beat (closest: baseline: random dictionary" in sentences
    assert "F1 >= 0.5 0.000: not above the dense and not above chance" in sentences
    assert "0.002: no baseline to compare with in this run" in sentences
    # each number says which sample it counts
    counts = _text(re.search(r'<p class="counts">(.*?)</p>', answer)[1])
    assert "the mean over the held-out evaluation images and captions" in counts
    assert "(a sample of 10,000 of 15,000 inputs of the training stream)" in counts


def test_intervals_where_seeds_exist(tmp_path):
    page = write_report(make_run(tmp_path, seeds=True)).read_text()
    accuracy = _text(re.search(r'id="verdict-accuracy">(.*?)</p>', page)[1])
    # sparse 82.4/83.6/84.2 vs dense 82.1/83.1/84.1: mean 83.4 (sd 0.917), 83.1 (sd 1.0); paired gaps 0.3, 0.5,
    # 0.1 points (mean 0.3, sd 0.2); t(0.975, 2) = 4.303
    assert "83.4% [81.1, 85.7] over 3 seeds against 83.1% [80.6, 85.6] over 3 seeds" in accuracy
    assert "gap +0.3 points, 95% interval [-0.2, +0.8] over paired seeds" in accuracy
    assert accuracy.startswith("lite_sparse is as accurate as")
    models = _section(page, "answer")
    assert models.count('<th class="model">') == 3  # one row per model, not per seed


def _tags_of(page: str, model: str) -> list[str]:
    """The tags on the first row header naming ``model``."""
    m = re.search(rf'<th class="model">((?:<span class="tag[^>]*>[^<]*</span>)*)(?: |<br>){re.escape(model)}[<"]',
                  page)
    assert m, model
    return re.findall(r'class="tag tag-(\w+)"', m[1])


def test_tags_follow_the_code_not_the_name(run):
    assert [sparsity_tag(p) for p in (1.08, 9.99, 10.0, 50.8, 90.0, 100.0, None)] == [
        "sparse", "sparse", "not sparse", "not sparse", "dense", "dense", ""]
    page = write_report(run).read_text()
    assert _tags_of(page, "lite_sparse") == ["sparse"]  # 1.08% of its dims
    assert _tags_of(page, "lite_wide") == ["dense"]  # a wide head with every dim non-zero is not sparse
    assert _tags_of(page, "baseline: random init") == ["notsparse", "baseline"]  # 4158 of 8192
    assert _tags_of(page, "sae-topk-k32") == ["sparse", "sae"]
    # lite_sparse in the models table and the raw evaluation table, sparse (lite_sparse) and the SAE in the analysis
    assert len(re.findall(r'class="tag tag-sparse"', page)) == 4


def test_plain_labels_definitions_glossary_and_folded_tables(run):
    index = write_report(run)
    page = index.read_text()
    # a label in words, its definition on hover, a link to its glossary entry, the raw key in small print
    assert ('<a class="term" href="#def-live_selective_frac" title="share of all features that are live and fire '
            'on under 20% of inputs">live and selective</a><code class="key">live_selective_frac</code>') in page
    for anchor in set(re.findall(r'href="#([^"]+)"', page)):
        assert f'id="{anchor}"' in page, anchor
    gloss = _section(page, "glossary")
    assert '<dt id="def-zs_mean">zero-shot accuracy <code>zs_mean</code></dt>' in gloss
    docs = re.findall(r'href="(assets/docs/[^"]+)"', gloss)
    assert "assets/docs/interpret.md" in docs and all((index.parent / d).is_file() for d in docs)
    # the raw tables are folded under "All numbers"
    details = _section(page, "details")
    assert details.count("<details>") == 2 and 'class="data transposed summary"' in details
    assert "extra_metric" in details and ">70.5<" in details  # unknown columns are shown too


def test_feature_browser_says_what_it_shows(tmp_path):
    page = write_report(make_run(tmp_path)).read_text()
    browser = _section(page, "features")
    how = _text(re.search(r'<ul class="how">(.*?)</ul>', browser)[1])
    assert how.startswith("Which: the analysis chose these 3 features of the model's 812 live features (8,192 in "
                          "all): the best feature of each ground-truth concept first")
    assert "1 of them are nearly silent" in how and "shown only where its name score reaches 0.75" in how
    assert "Show: features.json holds no other features, so the choices reorder these" in how
    # a name under the bar is not shown as the name
    card3 = re.search(r'<article[^>]*id="feature-3".*?</article>', browser, re.S)[0]
    assert "<h3><i>unnamed</i>" in card3 and "large red triangle&rdquo;, name score 0.550 &lt; 0.75" in card3
    assert "nearly silent" in card3
    assert "<h3>red circle</h3>" in browser
    # the sort control's first option is the order the cards are in; the view control offers other sets
    assert re.search(r'<select id="sort"[^>]*><option value="view">sort: as shown by the view</option>', browser)
    assert [m for m in re.findall(r'<option value="(\w+)">', browser.split('id="view"')[1].split("</select>")[0])] == [
        "chosen", "active", "selective", "random"]
    assert "(these, reordered)" in browser  # no other sets in features.json: said so
    assert [int(i) for i in re.findall(r'data-order="(\d+)"', browser)] == [0, 1, 2]
    # without the selection record the page says it does not know how they were chosen
    bare = write_report(make_run(tmp_path / "b", selection=False)).read_text()
    assert "it does not say how they were chosen" in _text(_section(bare, "features"))


def test_feature_browser_views_from_features_json(tmp_path):
    page = write_report(make_run(tmp_path, views=True)).read_text()
    browser = _section(page, "features")
    views = dict(re.findall(r'id="feature-(\d+)"[^>]*data-views="([^"]*)"', browser))
    assert views == {"1": "chosen active", "2": "chosen", "3": "chosen random", "9": "active random"}
    assert re.search(r'id="feature-9"[^>]*data-rank-active="0"', browser)
    assert '<div class="controls" data-sets="active random">' in browser
    assert '<option value="active">most active</option>' in browser  # a set of its own
    assert '<option value="selective">most selective (the chosen ones, reordered)</option>' in browser  # no such set
    assert "Show: other sets the analysis wrote: most active (2), random live ones (2)" in _text(browser)


def test_images_are_copied_and_linked_relatively(run):
    index = write_report(run)
    page = index.read_text()
    srcs = re.findall(r'(?:src|href)="([^"#][^"]*)"', page)
    assert srcs and all(not s.startswith(("/", "http:", "https:", "file:")) for s in srcs)
    for s in srcs:
        assert (index.parent / s).is_file(), s
    assert "<link" not in page and "https://" not in page and "http://" not in page  # works offline
    assert "outside.png" not in page  # a path escaping the run directory is not followed
    assert not list((index.parent / "assets").rglob("outside.png"))
    assert "2 image files missing or outside the run directory" in page
    # plots carry captions in words, the file name in small print
    assert "Zero-shot accuracy, retrieval R@1 and linear-probe accuracy per model <small>(accuracy.png)" in page
    assert page.index("frequency_hist.png") < page.index("modality_scatter.png")


def test_user_text_is_escaped(run):
    page = write_report(run).read_text()
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "onerror=" not in page.replace("onerror=&quot;", "")  # never a live attribute
    assert page.count("<script>") == 1  # only the page's own script


def test_missing_optional_pieces_are_skipped(tmp_path):
    run = tmp_path / "r"
    (run / "analysis").mkdir(parents=True)
    (run / "analysis" / "summary.json").write_text(json.dumps(
        {"rows": [{"model": "sparse (micro)", "L0_image": 259.3, "L0_text": 255.5, "code_dim": 512, "clarity": 0.5}]}))
    page = write_report(run).read_text()
    assert "<article" not in page and "features.json not found" in page
    # no evaluation: the sparsity sentence from the analysis' own rows, and no accuracy, said so
    assert "sparse (micro) is not sparse: 259.3 of its 512 dims are non-zero per image on average (50.64%)" in page
    assert "No evaluation in this folder (results.json or eval.json), so no accuracy" in page
    assert "the mean over the analysis' own inputs" in _text(page)


def test_an_eval_json_alone_is_the_sparse_model(tmp_path):
    run = tmp_path / "r"
    (run / "analysis").mkdir(parents=True)
    (run / "analysis" / "summary.json").write_text(json.dumps({"rows": []}))
    (run / "eval.json").write_text(json.dumps({
        "model": "micro", "head": "relu", "zeroshot_mean_acc1": 0.28, "retrieval": {"text_to_image_R@1": 0.0},
        "sparsity": {"image": {"L0": 259.1, "L0_pct": 50.6, "dim": 512}, "text": {"L0_pct": 49.8}},
        "dictionary": {"sample": {"source": "inputs of the training stream", "n": 256, "of": None},
                       "image": {"active_pct": 72.1}, "text": {"active_pct": 91.4}}}))
    page = _text(write_report(run).read_text())
    assert "micro is not sparse: 259.1 of its 512 dims are non-zero per image on average (50.60%)" in page
    assert "On the training inputs 72.1% of its dims are active on images, 91.4% on texts" in page
    assert "(the first 256 inputs of the training stream)" in page
    assert "Zero-shot accuracy of micro: 28.0% (no dense model in this folder to compare with)" in page


def test_analysis_folder_given_directly(run):
    index = write_report(run / "analysis", out=run / "elsewhere")
    page = index.read_text()
    assert len(re.findall(r'<article class="card feature-card"', page)) == 3
    assert "Evaluation: every column" not in page and "sparse (lite_sparse) is sparse" in page


def test_max_features(run):
    page = write_report(run, max_features=2).read_text()
    assert len(re.findall(r'<article class="card feature-card"', page)) == 2
    assert "The page shows the first 2 of the 3 in features.json" in page


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


def test_demo_plots_have_titles_labels_ticks_and_legends_beside(tmp_path, monkeypatch):
    """The demo's plot_training / plot_accuracy: a title, both axes labelled, more than one tick label on a log axis
    over a narrow range, and the legend outside the axes (not over the data)."""
    from sparseclip.experiments import demo

    figs = {}

    def keep(fig, path, **kw):
        fig.canvas.draw()
        figs[Path(path).name] = fig
        return Path(path)

    monkeypatch.setattr(demo, "save_figure", keep)
    for name, l0 in (("a", [51.1, 50.8, 50.6]), ("b", [30.0, 3.0, 0.9])):
        rd = tmp_path / name
        rd.mkdir()
        (rd / "config.json").write_text(json.dumps({"model": {"head": {"kind": "relu"}}}))
        (rd / "log.jsonl").write_text("".join(json.dumps({"step": s, "loss": 3.5 - s / 100, "image_l0_pct": v}) + "\n"
                                              for s, v in zip((5, 10, 20), l0, strict=True)))
    demo.plot_training({"a": tmp_path / "a", "b": tmp_path / "b"}, tmp_path, {"a": 32, "b": 32})
    rows = [{"model": m, "zs_color": 0.5, "zs_mean": 0.5, "t2i_R@1": 0.3, "i2t_R@1": 0.3, "probe_mean": 0.6}
            for m in ("dense", "sparse")]
    demo.plot_accuracy(rows, tmp_path)
    assert set(figs) == {"loss.png", "l0.png", "accuracy.png"}
    for name, fig in figs.items():
        ax = fig.axes[0]
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel(), name
        labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
        lo, hi = ax.get_xlim()
        shown = [t for t, v in zip(ax.get_xticklabels(), ax.get_xticks(), strict=True)
                 if lo <= v <= hi and t.get_text()]
        assert len(shown) >= 3, (name, labels)
        legend = ax.get_legend()
        box, axes_box = legend.get_window_extent(), ax.get_window_extent()
        assert box.x0 >= axes_box.x1, name  # beside the axes, not over the data
    assert figs["l0.png"].axes[0].get_yscale() == "log"  # 30% down to 0.9%: a log axis, labelled as such
    assert "log scale" in figs["l0.png"].axes[0].get_ylabel()
