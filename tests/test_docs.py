"""The README's quick-start and the docs' Python snippets really run."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNIPPET_DOCS = ["README.md", "docs/training.md", "docs/evaluation.md", "docs/search.md", "docs/steering.md"]


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize("doc", SNIPPET_DOCS)
def test_python_snippets_run(doc, tmp_path, monkeypatch):
    blocks = [b for b in _python_blocks(ROOT / doc) if "runs/" not in b]  # skip ones needing a trained run
    assert blocks, f"{doc} has no runnable python snippet"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, f"{doc}:snippet", "exec"), {})


def test_readme_has_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    assert "make test" in (ROOT / ".ci" / "run").read_text()
