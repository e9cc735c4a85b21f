"""``sparseclip compare EVAL_JSON...``: one Markdown table of several evaluations."""

from __future__ import annotations

import argparse

HELP = """Put several eval.json files (from `sparseclip eval ... --out`, `train --eval`, the demo or the
ablations) side by side as one Markdown table: zero-shot accuracy, retrieval recall, image L0 and active features.
Given an analysis summary.json (from `sparseclip analyze`), print its table of feature metrics instead.
Examples:
  sparseclip compare runs/dense/eval_test.json runs/relu/eval_test.json --out results.md
  sparseclip compare runs/relu/analysis/summary.json
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="one Markdown table of several eval.json files", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", metavar="EVAL_JSON", help="eval.json files, or one analysis summary.json")
    p.add_argument("--out", metavar="MD", help="also write the table to this file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..files.atomic import write_text_atomic
    from ..report.tables import analysis_table, eval_table
    from ._paths import check_out

    check_out(args.out)
    if len(args.results) == 1 and Path(args.results[0]).name == "summary.json":
        table = analysis_table(args.results[0])
    else:
        table = eval_table(args.results)
    if args.out:
        write_text_atomic(args.out, table)
    print(table, end="")
    return 0
