"""Generated blocks in the docs: the mechanism (sparseclip.report.generated) and the repository's own blocks, each
regenerated from its committed JSON and compared with what the doc shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sparseclip.experiments import doc_blocks
from sparseclip.registry import Registry
from sparseclip.report import generated
from sparseclip.report.generated import GeneratedError, check, find_blocks, update

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _providers():
    doc_blocks.load_providers()


def test_every_generated_block_in_the_repository_is_what_its_json_makes():
    report = check(ROOT)
    assert report.ok, "\n".join(generated.iter_report(report))
    assert report.blocks >= 19  # ablations (7), demo results (10), steering (2): none silently skipped


def test_the_check_command_fails_on_a_doc_that_differs(tmp_path, capsys):
    doc = tmp_path / "docs" / "ablations.md"
    doc.parent.mkdir()
    text = (ROOT / "docs" / "ablations.md").read_text()
    assert doc_blocks.main(["--check", "--root", str(ROOT), str(ROOT / "docs" / "ablations.md")]) == 0
    doc.write_text(text.replace("not shown at this scale", "reproduced", 1))  # a verdict typed over
    assert doc_blocks.main(["--check", "--root", str(ROOT), str(doc)]) == 1
    out = capsys.readouterr().out
    assert "DIFFERS" in out and "ablate-verdicts docs/ablations/default/summary.json" in out


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A registry with one generator that reads {"n": ...} from a JSON file."""
    monkeypatch.setattr(generated, "GENERATORS", Registry("generator", "generated block"))
    generated.generator("count")(lambda root, args: f"n = {generated.read_json(root, args[0])['n']}")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "n.json").write_text('{"n": 3}')
    return tmp_path


def _doc(root: Path, body: str) -> Path:
    path = root / "docs" / "page.md"
    path.write_text(f"# Page\n\nbefore\n<!-- generated: count docs/n.json -->\n{body}<!-- end generated -->\nafter\n")
    return path


def test_check_lists_the_differing_block_and_update_rewrites_only_it(toy):
    path = _doc(toy, "n = 2\n")
    report = check(toy)
    assert not report.ok and report.blocks == 1
    assert report.differing[0].startswith("docs/page.md:4 [count docs/n.json]")
    assert update(toy).differing and path.read_text() == (
        "# Page\n\nbefore\n<!-- generated: count docs/n.json -->\nn = 3\n<!-- end generated -->\nafter\n")
    assert check(toy).ok
    _doc(toy, "")  # an empty block is filled too
    update(toy)
    assert check(toy).ok and "-->\nn = 3\n<!--" in path.read_text()


def test_bad_blocks_are_errors_not_passes(toy):
    path = _doc(toy, "n = 3\n")
    path.write_text(path.read_text() + "<!-- generated: nobody docs/n.json -->\nx\n<!-- end generated -->\n")
    report = check(toy)
    assert report.differing == [] and len(report.errors) == 1 and "no generator 'nobody'" in report.errors[0]
    path.write_text("<!-- generated: count docs/missing.json -->\nn = 3\n<!-- end generated -->\n")
    assert "docs/missing.json: no such file" in check(toy).errors[0]
    path.write_text("<!-- generated: count docs/n.json -->\nn = 3\n")
    with pytest.raises(GeneratedError, match="has no '<!-- end generated -->' line"):
        find_blocks(path)
    path.write_text("<!-- generated: count docs/n.json -->\n<!-- generated: count docs/n.json -->\n"
                    "<!-- end generated -->\n")
    assert "starts inside" in check(toy).errors[0]


def test_a_prose_marker_is_reported_as_unmanaged_and_left_alone(toy):
    path = toy / "docs" / "page.md"
    text = "<!-- generated: docs/other/summary.md -->\nold\n<!-- end generated -->\n"
    path.write_text(text)
    report = update(toy)
    assert report.ok and report.blocks == 0 and report.unmanaged == ["docs/page.md:1 [docs/other/summary.md]"]
    assert path.read_text() == text


def test_a_generator_id_is_registered_once():
    with pytest.raises(ValueError, match="lower case"):
        generated.generator("Bad Id")
    with pytest.raises(ValueError, match="registered twice"):
        generated.generator("world-table")(lambda root, args: "")


def test_a_marker_in_a_code_fence_is_an_example(toy):
    path = toy / "docs" / "page.md"
    path.write_text("```\n<!-- generated: count docs/n.json -->\nn = 9\n<!-- end generated -->\n```\n")
    assert check(toy).blocks == 0


def test_experiment_generators_on_hand_values(tmp_path):
    row = {"code_dim": 8, "zs_color": 1.0, "t2i_R@1": 0.5, "i2t_R@1": 0.5, "probe_mean": 0.7, "image_L0_pct": 100.0,
           "text_L0_pct": 100.0}
    rows = [{**row, "model": "d", "zs_mean": 0.60}, {**row, "model": "s", "zs_mean": 0.50, "image_L0_pct": 12.5},
            {**row, "model": "s2", "zs_mean": 0.65}]
    (tmp_path / "r.json").write_text(__import__("json").dumps({"rows": rows}))
    gaps = doc_blocks.world_gaps(tmp_path, ["r.json#d", "r.json#s"])
    assert gaps.startswith("- s minus d, points: zero-shot mean -10.0 (color +0.0); t2i R@1 +0.0")
    pairs = doc_blocks.seed_pairs(tmp_path, ["r.json#d,r.json#s", "r.json#d,r.json#s"])
    assert "| s | 0.600 | 0.500 | -10.0 | 12.5 |" in pairs and "-10.0 ± 0.0 points" in pairs
    assert "behind in every seed" in pairs
    assert "the sign changes" in doc_blocks.seed_pairs(tmp_path, ["r.json#d,r.json#s", "r.json#d,r.json#s2"])
    with pytest.raises(GeneratedError, match="no row for model 'x'"):
        doc_blocks.world_row(tmp_path, "r.json#x")


def _sweep(zs_sparse: list[float]) -> dict:
    """A sparsity sweep's JSON with the demo trio over 3 seeds: dense and wide at zero-shot 0.80 in every seed."""
    chosen = {"sparse_demo": "S", "dense_demo": "D", "wide_demo": "W"}
    rows = []
    for seed in range(3):
        for label, zs in (("S", zs_sparse[seed]), ("D", 0.80), ("W", 0.80)):
            rows.append({"label": label, "seed": seed, "test": {"zs": zs, "t2i": 0.4, "i2t": 0.4 + 0.01 * seed,
                                                                "image_L0_pct": 1.0, "text_L0_pct": 2.0}})
    return {"chosen": chosen, "rows": rows}


def test_demo_seed_intervals_on_hand_values(tmp_path):
    import json

    demo = {"rows": [{"model": m, "zs_mean": zs, "t2i_R@1": 0.4, "i2t_R@1": 0.4}
                     for m, zs in (("lite_sparse", 0.70), ("lite_dense", 0.80), ("lite_wide", 0.80))]}
    (tmp_path / "r.json").write_text(json.dumps(demo))
    (tmp_path / "behind.json").write_text(json.dumps(_sweep([0.70, 0.71, 0.69])))
    text = doc_blocks.demo_seeds(tmp_path, ["behind.json", "r.json"])
    assert "| lite_sparse | S | 0.700 ± 0.025 |" in text  # t(0.975, 2) * 0.01 / sqrt(3) = 0.0248
    assert "zero-shot mean -10.0 [-12.5, -7.5] (behind)" in text
    assert "t2i R@1 +0.0 [+0.0, +0.0] (interval includes 0)" in text
    assert "seed-0 rows are this demo run's rows" in text
    (tmp_path / "noisy.json").write_text(json.dumps(_sweep([0.70, 0.90, 0.82])))
    text = doc_blocks.demo_seeds(tmp_path, ["noisy.json", "r.json"])
    assert "(interval includes 0)" in text.split("zero-shot mean")[2] and "(behind)" not in text
    (tmp_path / "ahead.json").write_text(json.dumps(_sweep([0.90, 0.91, 0.89])))
    text = doc_blocks.demo_seeds(tmp_path, ["ahead.json", "r.json"])
    assert "(ahead)" in text and "differ from this demo run's rows for lite_sparse" in text


#: a number as prose writes it: digits with optional thousands commas and an optional decimal part
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
#: a figure: an optional approximation word or "~", then a sign (after a space, bracket or quote: "-0.823", "+14%") or
#: a number not glued to a word, a dot or a hyphen (so not "1e-3", "ViT-B-32", "R@1", "x8"), an optional range end
#: ("1-6x"), an optional unit ("88%", "4.7x")
_FIGURE = re.compile(
    r"(?P<approx>(?:~|\b(?:about|around|roughly|nearly|almost|approximately)\s+)?)"
    rf"(?:(?:(?<=[\s(\[\x22'])|^)(?P<sign>[-+\u2212])|(?<![\w.,=/@^+\-\u2212]))(?P<num>{_NUM})"
    rf"(?:-(?P<end>{_NUM}))?(?P<unit>\s?%|x)?(?![\w]|[.,]\d)")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")


def _measured(m: re.Match) -> bool:
    """Whether a :data:`_FIGURE` match reads as a measurement: approximate ("~44", "about 1%"), signed
    ("-0.823", "+3"), a percentage or a ratio ("88%", "4x", "1-6x"), a decimal with two or more places ("0.823"), or an
    integer of 100 or more that is neither round (a multiple of 50 or of 32: the sizes, steps and widths that
    settings use) nor a year (1990-2099), e.g. "869" or "1,738". Integers under 100 are not flagged: in this
    project's prose they are nearly always settings (seeds, steps, layers, pixels, counts of classes)."""
    if m["approx"] or m["sign"] or m["unit"]:
        return True
    for part in (m["num"], m["end"]):
        if part is None:
            continue
        if "." in part:
            if len(part.split(".")[1]) >= 2:
                return True
            continue
        n = int(part.replace(",", ""))
        if n >= 100 and n % 50 and n % 32 and not 1990 <= n <= 2099:
            return True
    return False


#: values that are settings, thresholds or targets wherever they appear (not measurements), with the reason
SETTINGS = {
    "0.001": "tau, the firing threshold", "0.003": "an L1 coefficient of the sweeps",
    "0.005": "the SAE convergence threshold", "0.01": "a p-value bar / an L1 coefficient",
    "0.03": "an L1 coefficient of the sweeps", "0.25": "a steering strength of the grid",
    "0.95": "the search recall target", "3.11": "the Python version",
    "95%": "the level of every interval", "1%": "the paper's L0 (< 1% of dims), the target compared with",
    "5%": "the paper's L0 bar of the design claims (< 5% of dims)",
    "32x": "a head expansion (preset)", "64x": "a head expansion (preset)", "72x": "a head expansion (preset)",
    "128x": "a head expansion (preset)", "1.0x": "a throughput target", "1.15x": "a throughput target",
    "130": "the exit status of an interrupted run",
}
#: figures outside generated blocks that are not this project's measurements, with the reason
NOT_MEASURED = {
    ("docs/sparsity.md", "0.47-0.66%"): "the paper's reported range (PAPER.md)",
    ("docs/search.md", "+0.0421"): "the format of an --explain line, not a result",
    ("docs/search.md", "0.210"): "the format of an --explain line, not a result",
    ("docs/search.md", "0.200"): "the format of an --explain line, not a result",
    ("docs/distributed.md", "about 0.24"): "memory computed from the tensor shapes in the sentence",
    ("docs/distributed.md", "2x"): "a bound derived in the sentence (four tensors against the two every loss keeps)",
    ("docs/distributed.md", "4x"): "issue 3's memory target, not a result",
    ("docs/recipes.md", "14%"): "the paper's words (its added parameters), quoted",
    ("docs/training.md", "+14%"): "the paper's words (its added parameters), quoted",
    ("docs/report.md", "156"): "a package version (Debian 12's Chromium)",
}


def prose_figures(text: str) -> list[tuple[int, str]]:
    """(line, figure) of each measured-looking figure (:func:`_measured`) outside generated blocks, code fences and
    inline code; the figure as typed, approximation word included ("~44", "about 1%", "-0.823", "1-6x")."""
    out, block, fence = [], False, False
    for i, line in enumerate(text.splitlines(), 1):
        if line.startswith("<!-- generated:"):
            block = True
        elif line.startswith("<!-- end generated"):
            block = False
        elif line.strip().startswith("```"):
            fence = not fence
        elif not (block or fence):
            prose = _DATE.sub("", re.sub(r"`[^`]*`", "", line))
            out += [(i, m[0].strip()) for m in _FIGURE.finditer(prose) if _measured(m)]
    return out


def _allowed(rel: str, figure: str) -> bool:
    """A setting (whatever approximation word comes with it is not: "about 1%" is a reading), or a figure listed as
    not this project's measurement."""
    return figure in SETTINGS or (rel, figure) in NOT_MEASURED


def typed_figures(root: Path) -> list[str]:
    """``path:line: figure`` for every measured-looking figure in the prose of ``root``'s README.md and docs/*.md
    that is neither a setting nor listed as not this project's measurement."""
    bad = []
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        rel = str(doc.relative_to(root))
        if doc.is_file():
            bad += [f"{rel}:{i}: {v}" for i, v in prose_figures(doc.read_text()) if not _allowed(rel, v)]
    return bad


def test_no_measured_figure_is_typed_in_prose():
    bad = typed_figures(ROOT)
    assert not bad, "a figure outside a generated block (generate it from its JSON, or remove it):\n" + "\n".join(bad)


def test_the_allow_lists_have_no_stale_entry():
    """Every setting and every listed figure still occurs in the docs' prose (a list that outlives its figures would
    let a new one through unread)."""
    seen = {(str(doc.relative_to(ROOT)), v) for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
            for _, v in prose_figures(doc.read_text())}
    assert set(SETTINGS) <= {v for _, v in seen}
    assert set(NOT_MEASURED) <= seen


@pytest.mark.parametrize("typed", ["88%", "-0.823"])
def test_the_prose_scan_fails_on_a_figure_typed_into_a_doc(tmp_path, typed):
    """Issue 39: a figure typed into a real doc's prose (here docs/sparsity.md, copied) fails the scan, naming it."""
    (tmp_path / "docs").mkdir()
    text = (ROOT / "docs" / "sparsity.md").read_text()
    (tmp_path / "docs" / "sparsity.md").write_text(text)
    assert typed_figures(tmp_path) == []
    lines = text.splitlines()
    at = lines.index("## The target") + 2
    lines[at] = lines[at].replace("Image and text L0", f"Image and text L0 (zero-shot gap {typed})", 1)
    (tmp_path / "docs" / "sparsity.md").write_text("\n".join(lines) + "\n")
    assert typed_figures(tmp_path) == [f"docs/sparsity.md:{at + 1}: {typed}"]


def test_the_prose_scan_finds_a_typed_figure():
    text = ("Sparse CLIP leads at 0.323 and runs 1.7x faster (88.0%).\n<!-- generated: x -->\n0.5555\n"
            "<!-- end generated -->\n```\n0.444\n```\nuse `tau=0.001`\n")
    assert prose_figures(text) == [(1, "0.323"), (1, "1.7x"), (1, "88.0%")]
    # integers, integer percentages and ratios, signed figures, ranges, approximations (issue 39)
    text = ("each seen ~44 times on 1,738 pairs (869 rows), 88% at 4x and 4.7x, a -0.823 gap, 1-6x faster, +3 "
            "points, under about 1%\n")
    assert [v for _, v in prose_figures(text)] == ["~44", "1,738", "869", "88%", "4x", "4.7x", "-0.823", "1-6x",
                                                   "+3", "about 1%"]
    # settings and names are not figures: exponents, model names, recalls, expansions, small integers, round sizes,
    # dates and years, one-decimal values, inline code
    quiet = ("lr 1e-3 on ViT-B-32, R@1, x8, seed 3, 12 layers, step 500, 16,384 dims, 224 px, on 2026-12-04 (ICLR "
             "2026), band 0.1-0.9, `0.823`, in_dim^-1/2\n")
    assert prose_figures(quiet) == []


def test_kernel_drift_spread_on_hand_values(tmp_path):
    import json

    def row(variant, zs, gap):
        return {"preset": "p", "variant": variant, "zs": zs, "t2i": 0.3, "i2t": 0.4, "image_L0_pct": 1.0,
                "text_L0_pct": 2.0, "max_weight_gap": gap}

    data = {"command": "c", "machine": "m", "torch": "t", "blas": "b",
            "rows": [row("this CPU", 0.80, 0.0), row("a", 0.812, 3e-6), row("b", 0.80, 0.0)]}
    (tmp_path / "k.json").write_text(json.dumps(data))
    text = doc_blocks.kernel_drift(tmp_path, ["k.json"])
    assert "| p | a | 0.812 | 0.300 | 0.400 | 1.00 / 2.00 | 3.0e-06 |" in text
    assert "spread (max - min) is zero-shot mean 1.2, t2i R@1 0.0, i2t R@1 0.0 points" in text
    assert "1 of the 2 other variants give the very same weights" in text
    for r in data["rows"]:  # counted on the training inputs: the dictionary's health next to L0
        r |= {"image_active_train_pct": 25.0, "text_active_train_pct": 33.0, "image_dead_train_pct": 70.0,
              "text_dead_train_pct": 64.5}
    (tmp_path / "k.json").write_text(json.dumps(data))
    assert "| 3.0e-06 | 25.0 / 33.0 | 70.0 / 64.5 |" in doc_blocks.kernel_drift(tmp_path, ["k.json"])


def test_demo_time_says_whether_the_budget_holds(tmp_path):
    import json

    (tmp_path / "in.json").write_text(json.dumps({"stage_seconds": {"train a": 100.0, "eval a": 5.0, "total": 599.6},
                                                  "load_average": {"start": 0.5, "end": 1.25}}))
    (tmp_path / "over.json").write_text(json.dumps({"stage_seconds": {"train a": 700.0, "total": 700.4}}))
    assert doc_blocks.demo_time(tmp_path, ["in.json"]) == (
        "Recorded wall time: 600 s in all (train a 100, eval a 5; seconds): within the demo's budget of 10 minutes. "
        "Load average (1 minute) 0.50 at the start, 1.25 at the end.")
    assert doc_blocks.demo_time(tmp_path, ["over.json"]).endswith(
        "over the demo's budget of 10 minutes. Load average not recorded.")
