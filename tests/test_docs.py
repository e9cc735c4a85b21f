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
