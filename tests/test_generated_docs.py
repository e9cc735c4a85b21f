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
    assert report.blocks >= 17  # ablations (5), demo results (10), steering (2): none silently skipped


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


#: a measured-looking figure: a decimal with two or more digits after the point, a decimal percentage or ratio
_FIGURE = re.compile(r"(?<![\w.=/-])(\d+\.\d{2,}|\d+\.\d+\s?%|\d+\.\d+x)(?![\w])")
#: values that are settings, thresholds or targets wherever they appear (not measurements)
SETTINGS = {"0.001", "0.003", "0.005", "0.01", "0.03", "0.25", "0.95", "1.0x", "1.15x", "3.11"}
#: figures outside generated blocks that are not this project's measurements, with the reason
NOT_MEASURED = {
    ("docs/sparsity.md", "0.47"): "the paper's reported range (PAPER.md)",
    ("docs/search.md", "0.0421"): "the format of an --explain line, not a result",
    ("docs/search.md", "0.210"): "the format of an --explain line, not a result",
    ("docs/search.md", "0.200"): "the format of an --explain line, not a result",
    ("docs/distributed.md", "0.24"): "memory computed from the tensor shapes in the sentence",
}


def prose_figures(text: str) -> list[tuple[int, str]]:
    """(line, figure) of each measured-looking figure outside generated blocks, code fences and inline code."""
    out, block, fence = [], False, False
    for i, line in enumerate(text.splitlines(), 1):
        if line.startswith("<!-- generated:"):
            block = True
        elif line.startswith("<!-- end generated"):
            block = False
        elif line.strip().startswith("```"):
            fence = not fence
        elif not (block or fence):
            out += [(i, m) for m in _FIGURE.findall(re.sub(r"`[^`]*`", "", line))]
    return out


def test_no_measured_figure_is_typed_in_prose():
    bad = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        rel = str(doc.relative_to(ROOT))
        bad += [f"{rel}:{i}: {v}" for i, v in prose_figures(doc.read_text())
                if v not in SETTINGS and (rel, v) not in NOT_MEASURED]
    assert not bad, "a figure outside a generated block (generate it from its JSON, or remove it):\n" + "\n".join(bad)


def test_the_prose_scan_finds_a_typed_figure():
    text = ("Sparse CLIP leads at 0.323 and runs 1.7x faster (88.0%).\n<!-- generated: x -->\n0.5555\n"
            "<!-- end generated -->\n```\n0.444\n```\nuse `tau=0.001`\n")
    assert prose_figures(text) == [(1, "0.323"), (1, "1.7x"), (1, "88.0%")]
