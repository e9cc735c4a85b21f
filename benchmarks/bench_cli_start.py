"""Start-up time of the ``sparseclip`` command line: ``--help`` of every command, as whole processes.

    python benchmarks/bench_cli_start.py                                   # every command, 5 runs each
    python benchmarks/bench_cli_start.py --runs 3 --json docs/throughput/cli_start.json
    python benchmarks/bench_cli_start.py --compare OLD_TREE/src --runs 1   # side by side with another source tree

What is measured: ``sparseclip --help``, ``sparseclip train --help`` and ``sparseclip <command> --help`` for every
sub-command the parser has (nested ones too: ``index build``, ``index search``, ...), each run ``--runs`` times
(after one unmeasured warm-up run of each, which fills the file cache) as a fresh process of the installed console
script (``python -m sparseclip`` where there is none). CPU time is user + system of the child, from
``resource.getrusage(RUSAGE_CHILDREN)`` before and after each run; wall time from ``time.perf_counter``. The median
over the runs is compared with the targets of issue 38: ``sparseclip --help`` <= 0.5 s CPU and any sub-command's
``--help`` <= 1 s CPU. CPU time depends less on other work on the machine than wall time does, yet not at all
only on a quiet one: the load average (1 minute) is printed before and after, and kept in the JSON.

``--compare SRC`` also times every command with ``PYTHONPATH=SRC`` (another checkout's ``src`` folder, e.g. the
code before a change) and prints the ratio of median CPU times (compared / this tree).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: issue 38's targets, CPU seconds (median over the runs)
TARGET_TOP = 0.5
TARGET_SUB = 1.0


def all_commands() -> list[list[str]]:
    """Every command's words before ``--help``: the top level, then each sub-command (nested ones too)."""
    from sparseclip.cli import build_parser, commands

    return [[], *commands(build_parser())]


def entry_point() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m sparseclip``."""
    script = Path(sys.executable).parent / "sparseclip"
    return [str(script)] if script.exists() else [sys.executable, "-m", "sparseclip"]


def time_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one process running ``argv``; a failed run is an error."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def summary(values: list[float]) -> dict[str, Any]:
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4),
            "max": round(max(values), 4), "runs": [round(v, 4) for v in values]}


def measure(cmds: list[list[str]], runs: int, env: dict[str, str]) -> list[dict[str, Any]]:
    """Each command's CPU and wall times over ``runs`` runs (after one warm-up run each)."""
    base = entry_point()
    rows = []
    for cmd in cmds:
        argv = [*base, *cmd, "--help"]
        time_once(argv, env)  # warm-up: the file cache, not measured
        cpu, wall = zip(*(time_once(argv, env) for _ in range(runs)), strict=True)
        target = TARGET_TOP if not cmd else TARGET_SUB
        rows.append({"command": " ".join(["sparseclip", *cmd, "--help"]), "cpu_s": summary(list(cpu)),
                     "wall_s": summary(list(wall)), "target_cpu_s": target,
                     "pass": statistics.median(cpu) <= target})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="measured runs per command (default 5)")
    p.add_argument("--only", action="append", default=[], metavar="COMMAND",
                   help="time only these commands (e.g. --only '' --only train; repeatable; default: all)")
    p.add_argument("--compare", metavar="SRC", help="also time another source tree (PYTHONPATH=SRC) and print ratios")
    p.add_argument("--json", metavar="PATH", help="also write the figures here")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    cmds = all_commands()
    if args.only:
        cmds = [c for c in cmds if " ".join(c) in args.only]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    load_before = os.getloadavg()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load_before)} ({os.cpu_count()} CPUs); "
          f"{len(cmds)} commands x {args.runs} runs via {' '.join(entry_point())}", flush=True)
    rows = measure(cmds, args.runs, env)
    other = None
    if args.compare:
        src = str(Path(args.compare).resolve())
        other = measure(cmds, args.runs, {**env, "PYTHONPATH": src})
    load_after = os.getloadavg()

    width = max(len(r["command"]) for r in rows)
    head = f"{'command':<{width}}  {'CPU s (median)':>14}  {'wall s':>7}  {'target':>6}  verdict"
    print(head + ("  compared CPU s  ratio" if other else ""))
    for i, r in enumerate(rows):
        line = (f"{r['command']:<{width}}  {r['cpu_s']['median']:>14.3f}  {r['wall_s']['median']:>7.3f}  "
                f"{r['target_cpu_s']:>6.1f}  {'PASS' if r['pass'] else 'FAIL'}")
        if other:
            theirs = other[i]["cpu_s"]["median"]
            line += f"  {theirs:>14.3f}  {theirs / max(r['cpu_s']['median'], 1e-9):>5.1f}x"
        print(line)
    verdict = "PASS" if all(r["pass"] for r in rows) else "FAIL"
    print(f"load average after: {' '.join(f'{x:.2f}' for x in load_after)}")
    print(f"verdict: {verdict} (sparseclip --help <= {TARGET_TOP} s CPU, every sub-command's --help <= "
          f"{TARGET_SUB} s CPU, medians of {args.runs} runs)")

    if args.json:
        from sparseclip.files.atomic import write_json_atomic

        data = {"what": "CPU and wall seconds of `sparseclip ... --help` as whole processes (issue 38)",
                "runs": args.runs, "entry_point": " ".join(Path(a).name for a in entry_point()),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform(), "processor": platform.processor() or platform.machine()},
                "loadavg_before": [round(x, 2) for x in load_before],
                "loadavg_after": [round(x, 2) for x in load_after],
                "targets_cpu_s": {"top": TARGET_TOP, "sub_command": TARGET_SUB},
                "commands": rows, "verdict": verdict}
        if other:
            data["compared"] = {"src": args.compare, "commands": other}
        write_json_atomic(args.json, data)
        print(f"wrote {args.json}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
