"""``sparseclip report RUN_DIR``: write the run's HTML report (and optionally a screenshot of it)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="write a run's static HTML report from its analysis",
        description="Write RUN_DIR/report/index.html (+ images under report/assets/) from what "
                    "`sparseclip analyze` and `sparseclip demo` wrote into RUN_DIR.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run (or demo output) directory with an analysis/ folder")
    p.add_argument("--out", metavar="DIR", help="report folder (default: RUN_DIR/report)")
    p.add_argument("--max-features", type=int, metavar="N", help="show only the first N features")
    p.add_argument("--title", help="page title")
    p.add_argument("--screenshot", metavar="PNG",
                   help="also save a screenshot of the page taken with headless Chromium")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..report import BrowserError, screenshot, write_report

    if args.max_features is not None and args.max_features < 1:
        raise ValueError("--max-features must be at least 1")
    index = write_report(args.run_dir, out=args.out, max_features=args.max_features, title=args.title)
    print(index)
    if args.screenshot:
        try:
            print(screenshot(index, args.screenshot))
        except BrowserError as e:
            raise ValueError(f"screenshot: {e}") from None
    return 0
