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
    p.add_argument("--width", type=int, default=1400, metavar="PX",
                   help="--screenshot: viewport width in CSS pixels (default 1400; 400 shows a phone)")
    p.add_argument("--height", type=int, default=900, metavar="PX",
                   help="--screenshot: viewport height (default 900: the first screen)")
    p.add_argument("--full-page", action="store_true", help="--screenshot: the whole page, not the first screen")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..report import BrowserError, screenshot, write_report

    if args.max_features is not None and args.max_features < 1:
        raise ValueError("--max-features must be at least 1")
    if args.width < 100 or args.height < 100:
        raise ValueError("--width and --height must be at least 100 pixels")
    index = write_report(args.run_dir, out=args.out, max_features=args.max_features, title=args.title)
    print(index)
    if args.screenshot:
        try:
            print(screenshot(index, args.screenshot, width=args.width, height=args.height,
                             full_page=args.full_page))
        except BrowserError as e:
            raise ValueError(f"screenshot: {e}") from None
    return 0
