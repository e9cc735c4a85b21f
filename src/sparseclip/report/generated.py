"""Generated blocks in Markdown docs: every figure a doc quotes is regenerated from a committed JSON.

A block is delimited by two marker lines::

    <!-- generated: GENERATOR [ARG ...] -->
    ...the block, written by the generator...
    <!-- end generated -->

``GENERATOR`` is the id of a function registered with :func:`generator` (lower case, digits, ``-`` and ``_``);
``ARG`` are its arguments, usually paths of committed JSON files relative to the repository root. A generator
takes ``(root, args)`` and returns the block's text (no trailing newline). :func:`check` regenerates every block
and lists the ones that differ; :func:`update` rewrites the files (atomically). A marker whose first word is not
an id (an older prose marker) is reported as *unmanaged* and left as it is.

The library registers its own generators here; the experiments register theirs in
:mod:`sparseclip.experiments.doc_blocks`, which is also the command line (``python -m
sparseclip.experiments.doc_blocks --check``) because the library never imports the experiments.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..files.atomic import write_text_atomic
from ..registry import Registry

Generator = Callable[[Path, list[str]], str]

#: the registered generators, by id
GENERATORS: Registry[Generator] = Registry("generator", "<!-- generated: ID ... -->")

START = re.compile(r"^<!-- generated: (.*?) -->$")
END = "<!-- end generated -->"
_ID = re.compile(r"^[a-z][a-z0-9_-]*$")


class GeneratedError(ValueError):
    """A generated block that cannot be regenerated (bad markers, unknown generator, unreadable JSON)."""


def generator(name: str) -> Callable[[Generator], Generator]:
    """Register ``fn(root, args) -> str`` as the generator ``name`` (a decorator)."""
    if not _ID.match(name):
        raise ValueError(f"generator id {name!r}: lower case letters, digits, '-' and '_' only")

    def add(fn: Generator) -> Generator:
        old = GENERATORS.get(name) if name in GENERATORS else fn
        if old.__qualname__ != fn.__qualname__:  # the same function imported twice (``python -m``) is fine
            raise ValueError(f"generator {name!r} registered twice ({old.__qualname__}, {fn.__qualname__})")
        GENERATORS.register(name, fn, replace=True)
        return fn

    return add


@dataclass(frozen=True)
class Block:
    """One generated block: where it is and what it holds now."""

    path: Path
    line: int  # 1-based line of the start marker
    spec: str  # the marker's text: "GENERATOR ARG ..."
    start: int  # character offsets of the lines between the two markers
    end: int
    content: str

    @property
    def generator(self) -> str:
        return self.spec.split()[0] if self.spec.split() else ""

    @property
    def args(self) -> list[str]:
        return self.spec.split()[1:]

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line} [{self.spec}]"


def find_blocks(path: Path, text: str | None = None) -> tuple[list[Block], list[str]]:
    """The managed blocks of one Markdown file, and the markers it leaves alone (unmanaged prose markers).
    Markers inside fenced code blocks are examples and ignored. A start marker without its end marker, or one
    inside another block, is an error."""
    text = path.read_text(encoding="utf-8") if text is None else text
    blocks, unmanaged = [], []
    offset, open_at = 0, None
    fenced = False
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        bare = line.rstrip("\n")
        if bare.lstrip().startswith("```") and open_at is None:
            fenced = not fenced  # markers shown in a code block are examples, not blocks
        m = None if fenced else START.match(bare)
        if m:
            if open_at is not None:
                raise GeneratedError(f"{path}:{number}: a generated block starts inside the one of line {open_at[0]}")
            words = m.group(1).split()
            if words and _ID.match(words[0]):
                open_at = (number, m.group(1).strip(), offset + len(line))
            else:
                unmanaged.append(f"{path}:{number} [{m.group(1)}]")
        elif bare == END and open_at is not None:
            number0, spec, start = open_at
            blocks.append(Block(path, number0, spec, start, offset, text[start:offset].removesuffix("\n")))
            open_at = None
        offset += len(line)
    if open_at is not None:
        raise GeneratedError(f"{path}:{open_at[0]}: generated block [{open_at[1]}] has no '{END}' line")
    return blocks, unmanaged


def render(block: Block, root: Path) -> str:
    """What ``block``'s generator makes of its arguments now."""
    fn = GENERATORS.get(block.generator) if block.generator in GENERATORS else None
    if fn is None:
        known = ", ".join(sorted(GENERATORS)) or "none"
        raise GeneratedError(f"{block.where}: no generator {block.generator!r} is registered (known: {known})")
    try:
        return fn(root, block.args).removesuffix("\n")
    except GeneratedError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise GeneratedError(f"{block.where}: {type(e).__name__}: {e}") from None


def doc_files(root: Path) -> list[Path]:
    """The Markdown files that may hold generated blocks: README.md and docs/*.md."""
    return [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if p.is_file()]


@dataclass
class Report:
    """The outcome of a check or an update: blocks seen, ones that differed (with a diff), errors, unmanaged."""

    blocks: int = 0
    differing: list[str] | None = None
    errors: list[str] | None = None
    unmanaged: list[str] | None = None

    def __post_init__(self) -> None:
        self.differing, self.errors, self.unmanaged = self.differing or [], self.errors or [], self.unmanaged or []

    @property
    def ok(self) -> bool:
        return not self.differing and not self.errors


def _diff(old: str, new: str, limit: int = 12) -> str:
    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), "in the doc", "generated", lineterm="", n=0))
    more = f"\n    ... {len(lines) - limit} more diff lines" if len(lines) > limit else ""
    return "\n".join("    " + ln for ln in lines[:limit]) + more


def _process(root: Path, files: Iterable[Path], write: bool) -> Report:
    report = Report()
    for path in files:
        shown = path.relative_to(root) if path.is_relative_to(root) else path
        try:
            text = path.read_text(encoding="utf-8")
            blocks, unmanaged = find_blocks(shown, text)
        except (OSError, GeneratedError) as e:
            report.errors.append(str(e))
            continue
        report.unmanaged.extend(unmanaged)
        report.blocks += len(blocks)
        pieces, last = [], 0
        for b in blocks:
            try:
                new = render(b, root)
            except GeneratedError as e:
                report.errors.append(str(e))
                new = b.content
            if new != b.content:
                report.differing.append(f"{b.where} differs from what its generator makes:\n{_diff(b.content, new)}")
            pieces += [text[last:b.start], new + "\n" if new else ""]
            last = b.end
        new_text = "".join(pieces) + text[last:]
        if write and new_text != text:
            write_text_atomic(path, new_text)
    return report


def check(root: Path, files: Iterable[Path] | None = None) -> Report:
    """Regenerate every block of ``files`` (default :func:`doc_files`) in memory; the report lists each block
    that differs from what is in the file, and each that cannot be generated."""
    return _process(root, doc_files(root) if files is None else files, write=False)


def update(root: Path, files: Iterable[Path] | None = None) -> Report:
    """Rewrite every block of ``files`` (default :func:`doc_files`) with what its generator makes now (each file
    atomically, only when something changed); the report lists what changed."""
    return _process(root, doc_files(root) if files is None else files, write=True)


def read_json(root: Path, rel: str) -> dict:
    """A committed JSON file (path relative to the repository root)."""
    path = root / rel
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GeneratedError(f"{rel}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GeneratedError(f"{rel}: not readable JSON ({type(e).__name__})") from None


def iter_report(report: Report) -> Iterator[str]:
    """The report as lines for a terminal."""
    yield from (f"DIFFERS {d}" for d in report.differing)
    yield from (f"ERROR {e}" for e in report.errors)
    yield from (f"unmanaged marker (not checked) {u}" for u in report.unmanaged)
    yield (f"{report.blocks} generated blocks, {len(report.differing)} differing, {len(report.errors)} errors"
           + (f", {len(report.unmanaged)} unmanaged markers" if report.unmanaged else ""))


# ------------------------------------------------------------------------------------------ library generators


@generator("eval-table")
def _eval_table(root: Path, args: list[str]) -> str:
    """``eval-table RUN.json ...``: the evaluation table of ``report.tables.eval_table``."""
    from .tables import eval_table

    if not args:
        raise GeneratedError("eval-table needs at least one eval.json path")
    return eval_table([root / a for a in args])


@generator("interpret-table")
def _interpret_table(root: Path, args: list[str]) -> str:
    """``interpret-table SUMMARY.json``: an analysis summary's table (``report.tables.analysis_table``)."""
    from .tables import analysis_table

    if len(args) != 1:
        raise GeneratedError("interpret-table takes one summary.json path")
    return analysis_table(root / args[0])


@generator("interpret-headline")
def _interpret_headline(root: Path, args: list[str]) -> str:
    """``interpret-headline LABEL=SUMMARY.json ...``: what the analyses' verdicts support, per set (the three
    separate verdicts counted, the metrics lost to an SAE and to which row) and where the paper's ordering holds
    (``interpret.headline``). LABEL may contain ``_`` for spaces (``the_world``)."""
    from ..interpret.headline import headline

    if not args or any("=" not in a for a in args):
        raise GeneratedError("interpret-headline takes LABEL=SUMMARY.json arguments")
    sets = []
    for a in args:
        label, _, rel = a.partition("=")
        sets.append((label.replace("_", " "), read_json(root, rel), rel))
    return headline(sets)


@generator("sae-rows")
def _sae_rows(root: Path, args: list[str]) -> str:
    """``sae-rows SUMMARY.json``: how an analysis' SAE rows trained (``report.tables.sae_summary``)."""
    from .tables import sae_summary

    if len(args) != 1:
        raise GeneratedError("sae-rows takes one summary.json path")
    return sae_summary(root / args[0])


@generator("steer-findings")
def _steer_findings(root: Path, args: list[str]) -> str:
    """``steer-findings STEERING.json``: the findings lines of ``steer.report.findings``."""
    from ..steer.report import findings

    return findings(read_json(root, args[0])["results"])


@generator("steer-by-kind")
def _steer_by_kind(root: Path, args: list[str]) -> str:
    """``steer-by-kind STEERING.json``: the chosen settings per intervention kind (``steer.report``)."""
    from ..steer.report import chosen_by_kind

    return chosen_by_kind(read_json(root, args[0])["results"])


@generator("steer-headline")
def _steer_headline(root: Path, args: list[str]) -> str:
    """``steer-headline STEERING.json``: every method's chosen setting and test rates (``steer.report``)."""
    from ..steer.report import headline_table

    return headline_table(read_json(root, args[0])["results"])


@generator("steer-example")
def _steer_example(root: Path, args: list[str]) -> str:
    """``steer-example EXAMPLE.json STEERING.json``: the command and printed output of a ``sparseclip steer
    --json`` run; refuses an example whose setting is not the one the benchmark's selection rule chose for its
    method and question (``caption``; ``color``/``shape`` are the attribute question)."""
    from ..steer.pipeline import SteerOutcome
    from ..steer.report import summary

    if len(args) != 2:
        raise GeneratedError("steer-example takes EXAMPLE.json and the STEERING.json it must agree with")
    out = SteerOutcome.from_dict(read_json(root, args[0]))
    st = out.setting
    question = {"caption": "caption", "color": "attribute", "shape": "attribute"}.get(st.get("question"), "")
    chosen = summary(read_json(root, args[1])["results"]).get(f"{st.get('method')}/{question}")
    if chosen is None or (chosen["k"], chosen["strength"]) != (st.get("k"), st.get("strength")):
        raise GeneratedError(f"{args[0]}: {st.get('method')} K={st.get('k')} strength {st.get('strength')} is not "
                             f"the setting {args[1]} chose for that method on the {question or '?'} question"
                             + (f" (K={chosen['k']} strength {chosen['strength']:g})" if chosen else ""))
    return f"```bash\n{out.command()}\n```\n\n```text\n{out.text()}\n```"
