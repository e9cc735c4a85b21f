"""The ``sparseclip`` command line. Sub-commands are the modules of this package that define
``register(subparsers)``; each adds its parser and sets ``func`` (taking ``args``, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from .. import __version__


class UserError(Exception):
    """An error to show as one line, without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparseclip",
        description="Train, evaluate and analyse Sparse CLIP models (CLIP with wide non-negative heads).",
    )
    parser.add_argument("--version", action="version", version=f"sparseclip {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # key=value overrides may come after options too: `train micro --out R train.steps=5`
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*(args.overrides or []), *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as e:  # a run stopped at a step boundary says where and how to continue
        print(f"sparseclip: {str(e) or 'interrupted'}", file=sys.stderr)
        return 130
    except (UserError, ValueError, OSError) as e:  # OSError: a path that is missing, a folder, unwritable, full
        # Library errors (ConfigError, CheckpointError, ...) are ValueErrors with one-line messages.
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"sparseclip: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
