"""Mutation testing of the modules whose numbers the docs report (``make mutants``): how many planted bugs the fast
tests catch.

For each group of modules (eval, index, steer, interpret) the source tree and the tests are copied into a scratch
folder (``build/mutmut/GROUP``; mutmut's own ``mutants/`` folder is made inside it, so the working tree is never
mutated), mutmut runs the group's few fast test files against every mutant of the group's files, and the outcome
of every mutant that was not killed is written with its one-line diff to ``docs/mutants/report.json``. The
reasons why a survivor is equivalent or harmless are written by hand in ``docs/mutants/reasons.json`` (by mutant
name, with the mutated line, so a reason that no longer fits its mutant shows as unexplained); the generated
blocks of docs/mutants.md render both (``mutants-table``, ``mutants-survivors``).

Score of a module: killed / (mutants - equivalent ones). A timeout counts as killed (the tests noticed), a
mutant that no selected test reaches (``no tests``) does not, nor one the run did not get to (``not checked``:
an interrupted run; listed as *not run*).

Usage::

    python -m sparseclip.experiments.mutants              # every group, from scratch (what ``make mutants`` runs)
    python -m sparseclip.experiments.mutants eval index   # only these groups (the others keep their rows)
    python -m sparseclip.experiments.mutants --survivors  # rerun only the mutants that survived last time (and
                                                          # those the scratch folder has no result for)
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..files.atomic import write_json_atomic, write_text_atomic
from ..report.generated import generator, read_json

ROOT = Path(__file__).resolve().parents[3]
REPORT = "docs/mutants/report.json"
REASONS = "docs/mutants/reasons.json"
COMMAND = "make mutants (python -m sparseclip.experiments.mutants)"
#: statuses that count as caught by the tests
CAUGHT = ("killed", "timeout", "segfault")


@dataclass(frozen=True)
class Group:
    """A set of source files mutated together and the fast test files that run against each mutant."""

    name: str
    sources: tuple[str, ...]
    tests: tuple[str, ...]
    #: per source file (by its name), the functions counted; a file not named here counts whole
    functions: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def counts(self, mutant: str) -> bool:
        """Whether ``mutant`` (mutmut's name, ``pkg.module.x_function__mutmut_N``) is in this group's scope."""
        module, _, rest = mutant.rpartition(".")
        fns = self.functions.get(module.rpartition(".")[2] + ".py")
        return fns is None or _function(rest) in fns


def _function(rest: str) -> str:
    """``x_name__mutmut_3`` -> ``name``; a method ``xǁClassǁname__mutmut_3`` -> ``Class.name``."""
    body = rest.rpartition("__mutmut_")[0]
    return body[2:] if body.startswith("x_") else body[1:].strip("ǁ").replace("ǁ", ".")


def _patterns(group: Group) -> list[str]:
    """mutmut name globs of the group's scope (empty: every mutant of its files)."""
    if not group.functions:
        return []
    out = []
    for src in group.sources:
        module = src.removeprefix("src/").removesuffix(".py").replace("/", ".")
        fns = group.functions.get(Path(src).name)
        out += [f"{module}.*"] if fns is None else [f"{module}.x_{f}__mutmut_*" for f in fns]
    return out


_P = "src/sparseclip/"
GROUPS: tuple[Group, ...] = (
    Group("eval", tuple(f"{_P}eval/{m}.py" for m in ("zeroshot", "retrieval", "linear_probe", "sparsity")),
          ("tests/test_eval_metrics.py", "tests/test_metrics_degenerate.py", "tests/test_mutants_eval.py",
           "tests/test_health.py::test_firing_window_counts_features_unfired_since_last_take")),
    Group("index", (f"{_P}index/query.py", f"{_P}index/explain.py"),
          ("tests/test_evidence_explain.py", "tests/test_mutants_index.py")),
    Group("steer", tuple(f"{_P}steer/{m}.py" for m in ("judge", "scoring", "bench", "report")),
          ("tests/test_steer_judge.py", "tests/test_mutants_steer.py",
           *(f"tests/test_steer.py::{t}" for t in ("test_score_success_and_corruption_on_hand_written_answers",
                                                    "test_world_captions_are_all_well_formed",
                                                    "test_choose_respects_corruption_budget"))),
          # the benchmark's scoring, pooling and selection; the sweep itself needs a trained VLM (slow tests)
          {"bench.py": ("split_items", "score_answers", "_pool", "pool_seeds"),
           "report.py": ("choose", "_base", "wilson")}),
    Group("interpret", tuple(f"{_P}interpret/{m}.py" for m in ("purity", "baselines", "verdicts", "lattice",
                                                                "clarity")),
          ("tests/test_interpret_purity.py", "tests/test_mutants_purity.py", "tests/test_interpret.py",
           "tests/test_interpret_field_metrics.py", "tests/test_mutants_interpret.py")),
)
BY_NAME = {g.name: g for g in GROUPS}


def _sync(src: Path, dst: Path) -> None:
    """Copy the tree ``src`` onto ``dst``, rewriting only files whose bytes differ (mutmut regenerates the mutants
    of a file whose modification time changed) and dropping files that are gone."""
    dst.mkdir(parents=True, exist_ok=True)
    names = {p.name for p in src.iterdir() if p.name != "__pycache__"}
    for old in dst.iterdir():
        if old.name not in names:
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    for name in names:
        s, d = src / name, dst / name
        if s.is_dir():
            _sync(s, d)
        elif not d.exists() or not filecmp.cmp(s, d, shallow=False):
            shutil.copy2(s, d)


def _tests(group: Group) -> list[str]:
    """The group's test files (or test ids) that exist."""
    return [t for t in group.tests if (ROOT / t.split("::")[0]).exists()]


def _setup_cfg(group: Group) -> str:
    """mutmut's configuration for one group (it reads ``setup.cfg`` when pyproject.toml has no section)."""
    lines = ["[mutmut]", "source_paths=src", "only_mutate="] + [f"  {s}" for s in group.sources]
    lines += ["pytest_add_cli_args_test_selection="] + [f"  {t}" for t in _tests(group)]
    lines += ["pytest_add_cli_args=", "  -m", "  not slow", "  -p", "  no:cacheprovider", "  -x",
              "process_isolation=forkserver", ""]
    return "\n".join(lines)


def _statuses(scratch: Path) -> dict[str, str]:
    """Every mutant's status, read from mutmut's ``.meta`` files."""
    from mutmut.stats import status_by_exit_code

    out = {}
    for meta in sorted((scratch / "mutants").rglob("*.py.meta")):
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            out[name] = status_by_exit_code[code] if code is not None else "not checked"
    return out


_DIFFS = """
import json, sys
from mutmut.__main__ import find_mutant
from mutmut.mutation.diff_apply import get_diff_for_mutant
out = {}
for name in json.load(sys.stdin):
    lines = get_diff_for_mutant(name, path=find_mutant(name).path).splitlines()[2:]
    out[name] = [ln for ln in lines if ln[:1] in '-+']
print(json.dumps(out))
"""


def _diffs(scratch: Path, names: list[str]) -> dict[str, list[str]]:
    """The changed lines (``-old`` / ``+new``) of each mutant, from mutmut in the scratch folder."""
    if not names:
        return {}
    res = subprocess.run([sys.executable, "-c", _DIFFS], cwd=scratch, input=json.dumps(names), text=True,
                         capture_output=True, check=True)
    return json.loads(res.stdout)


def run_group(group: Group, fresh: bool, survivors: list[str] | None, jobs: int, collect_only: bool = False) -> dict:
    """Run mutmut over one group in its scratch folder; return its row of the report."""
    scratch = ROOT / "build" / "mutmut" / group.name
    if not collect_only:
        _run_mutmut(group, scratch, fresh, survivors, jobs)
    status = {n: s for n, s in _statuses(scratch).items() if group.counts(n)}
    counts: dict[str, int] = {}
    for s in status.values():
        counts[s] = counts.get(s, 0) + 1
    left = sorted(n for n, s in status.items() if s not in CAUGHT)
    diffs = _diffs(scratch, left)
    return {"sources": list(group.sources), "tests": _tests(group), "functions": group.functions,
            "total": len(status), "counts": dict(sorted(counts.items())),
            "survivors": [{"name": n, "status": status[n], "diff": diffs.get(n, [])} for n in left]}


def _run_mutmut(group: Group, scratch: Path, fresh: bool, survivors: list[str] | None, jobs: int) -> None:
    """Refresh the scratch folder's copy of the tree and run mutmut there (``survivors``: only these mutants)."""
    if fresh and scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    _sync(ROOT / "src", scratch / "src")
    _sync(ROOT / "tests", scratch / "tests")
    shutil.copy2(ROOT / "pyproject.toml", scratch / "pyproject.toml")
    write_text_atomic(scratch / "setup.cfg", _setup_cfg(group))
    # the tests of each mutant run at niceness 10 (the machine is shared), whether or not this command is niced
    cmd = ["nice", "-n", str(max(0, 10 - os.nice(0))), sys.executable, "-m", "mutmut", "run", "--max-children",
           str(jobs)]
    cmd += survivors or _patterns(group)
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", PYTHONDONTWRITEBYTECODE="1")
    with open(scratch / "run.log", "w") as log:
        rc = subprocess.run(cmd, cwd=scratch, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise RuntimeError(f"mutmut failed in {scratch} (exit {rc}); see {scratch / 'run.log'}")


def _mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


def main(argv: list[str] | None = None) -> int:
    """Run the groups named (default: all) and rewrite their rows of :data:`REPORT`; returns the exit code."""
    p = argparse.ArgumentParser(prog="python -m sparseclip.experiments.mutants", description=__doc__.split("\n")[0])
    p.add_argument("groups", nargs="*", help=f"groups to run: {', '.join(BY_NAME)} (default: all)")
    p.add_argument("--survivors", action="store_true",
                   help="rerun only the mutants the report lists as not killed (after adding tests) and those "
                   "without a result in the scratch folder")
    p.add_argument("--jobs", type=int, default=1, help="mutants tested at once (default 1: the machine is shared)")
    p.add_argument("--collect", action="store_true", help="run nothing: read the scratch folders' last results")
    p.add_argument("--resume", action="store_true", help="keep the scratch folders' results: test only the mutants "
                   "without one (after an interrupted run)")
    args = p.parse_args(argv)
    names = args.groups or list(BY_NAME)
    if set(names) - set(BY_NAME):
        p.error(f"unknown group(s) {', '.join(sorted(set(names) - set(BY_NAME)))}; known: {', '.join(BY_NAME)}")
    path = ROOT / REPORT
    for name in names:
        old = _load(path)["groups"].get(name, {})
        again = sorted({s["name"] for s in old.get("survivors", [])} | _untested(BY_NAME[name])) \
            if args.survivors else None
        if args.survivors and not again:
            continue
        print(f"mutants: {name} ({'survivors of the last run' if again else 'every mutant'})", flush=True)
        row = run_group(BY_NAME[name], fresh=not (args.survivors or args.resume), survivors=again, jobs=args.jobs,
                        collect_only=args.collect)
        # the first complete run of a group, before new tests (kept as it is afterwards; None: not measured)
        row["before"] = old["before"] if "before" in old else {"total": row["total"], "killed": _caught(row)}
        report = _load(path)  # read again: another group's run may have written meanwhile
        report.update(command=COMMAND, tool=f"mutmut {_mutmut_version()}")
        report["groups"][name] = row
        report["groups"] = {g: report["groups"][g] for g in BY_NAME if g in report["groups"]}
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, report)
        print(f"mutants: {name}: {_caught(row)} of {row['total']} caught", flush=True)
    return 0


def _untested(group: Group) -> set[str]:
    """The mutants of ``group`` its scratch folder has no result for (a run stopped part-way, or a source file that
    changed since: mutmut made its mutants anew), so that ``--survivors`` tests them too."""
    scratch = ROOT / "build" / "mutmut" / group.name
    if not (scratch / "mutants").exists():
        return set()
    return {n for n, s in _statuses(scratch).items() if s == "not checked" and group.counts(n)}


def _load(path: Path) -> dict:
    report = json.loads(path.read_text()) if path.exists() else {}
    report.setdefault("groups", {})
    return report


def _caught(row: dict) -> int:
    return sum(v for k, v in row["counts"].items() if k in CAUGHT)


# ------------------------------------------------------------------------------------------------ doc blocks


def _reasons(root: Path) -> dict[str, dict]:
    """The hand-written reasons, keyed by mutant name; a reason counts only while its ``line`` still matches."""
    return read_json(root, REASONS)["mutants"] if (root / REASONS).exists() else {}


def _verdict(mutant: dict, reasons: dict[str, dict]) -> tuple[str, str]:
    """(kind, reason) of a surviving mutant: equivalent / harmless from the reasons file, else unexplained."""
    r = reasons.get(mutant["name"])
    if r is None or r.get("diff") != mutant["diff"]:
        return "unexplained", "no reason recorded for this mutant"
    return r["kind"], r["why"]


def scores(report: dict, reasons: dict[str, dict]) -> dict[str, dict]:
    """Per group and in total: mutants, caught, equivalent, other survivors and score = caught / (mutants -
    equivalent)."""
    out, tot = {}, {"total": 0, "caught": 0, "equivalent": 0, "harmless": 0, "unexplained": 0, "not checked": 0}
    for name, row in report["groups"].items():
        kinds = [_verdict(m, reasons)[0] if m["status"] != "not checked" else "not checked" for m in row["survivors"]]
        r = {"total": row["total"], "caught": _caught(row), "equivalent": kinds.count("equivalent"),
             "harmless": kinds.count("harmless"), "unexplained": kinds.count("unexplained"),
             "not checked": kinds.count("not checked")}
        out[name] = r
        tot = {k: tot[k] + r[k] for k in tot}
    out["all"] = tot
    for r in out.values():
        r["score"] = r["caught"] / max(1, r["total"] - r["equivalent"])
    return out


@generator("mutants-table")
def mutants_table(root: Path, args: list[str]) -> str:
    """``mutants-table REPORT.json``: per group, mutants, caught before and now, survivors by kind, score."""
    report = read_json(root, args[0])
    sc = scores(report, _reasons(root))
    lines = [f"Tool: `{report['tool']}`; command: `{report['command']}`.", "",
             "| group | files | mutants | caught by the tests before | caught now | equivalent | harmless "
             "| unexplained | not run | score |", "|---|---|---|---|---|---|---|---|---|---|"]
    measured = {g: row["before"]["killed"] for g, row in report["groups"].items() if row.get("before")}
    for name, r in sc.items():
        row = report["groups"].get(name)
        files = ", ".join(Path(s).stem for s in row["sources"]) if row else "all above"
        if row:
            before = measured.get(name, "not measured")
        else:
            missing = [g for g in report["groups"] if g not in measured]
            before = f"{sum(measured.values())}" + (f" (without {', '.join(missing)})" if missing else "")
        lines.append(f"| {name} | {files} | {r['total']} | {before} | {r['caught']} | {r['equivalent']} "
                     f"| {r['harmless']} | {r['unexplained']} | {r['not checked']} | {100 * r['score']:.1f}% |")
    return "\n".join(lines)


@generator("mutants-survivors")
def mutants_survivors(root: Path, args: list[str]) -> str:
    """``mutants-survivors REPORT.json``: every mutant the tests do not catch, its diff and why it may live."""
    report, reasons = read_json(root, args[0]), _reasons(root)
    lines = []
    for name, row in report["groups"].items():
        left = [m for m in row["survivors"] if m["status"] != "not checked"]
        skipped = len(row["survivors"]) - len(left)
        lines += ["", f"**{name}** ({len(left)} not caught" + (f"; {skipped} not run" if skipped else "") + ")", "",
                  "| mutant | change | kind | why |", "|---|---|---|---|"]
        for m in left:
            kind, why = _verdict(m, reasons)
            change = " / ".join(f"{d[:1]} {d[1:].strip()}" for d in m["diff"]).replace("|", "\\|").replace("`", "'")
            short = m["name"].removeprefix("sparseclip.").replace("ǁ", ".")
            lines.append(f"| `{short}` | `{change}` | {kind} | {why} |")
    return "\n".join(lines[1:])


if __name__ == "__main__":
    sys.exit(main())
