"""The ``sparseclip`` command line. Sub-commands are the modules of this package that define
``register(subparsers)``; each adds its parser and sets ``func`` (taking ``args``, returning an exit code).

Building the parser is cheap (no torch, numpy or library code): a sub-command imports the library inside its
``func``, and what its parser needs from the library (a registry's names, a preset list) it adds in a ``complete``
hook (:class:`LazyParser`) that runs only when that sub-command is parsed or its help shown.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any


class UserError(Exception):
    """An error to show as one line, without a traceback."""


class _Version(argparse.Action):
    """``--version``: the version is looked up (package metadata) only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, help: str | None = None):
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0,
                         help=help or "show program's version number and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        from .._version import __version__

        print(f"{parser.prog} {__version__}")
        parser.exit()


class LazyParser(argparse.ArgumentParser):
    """An argument parser whose ``complete(parser)`` hook (a keyword of ``add_parser``) adds the arguments and
    description that need the library, the first time the parser parses or formats its help or usage: the other
    sub-commands never pay for the imports it makes."""

    def __init__(self, *args: Any, complete: Callable[[argparse.ArgumentParser], None] | None = None,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._complete = complete

    def completed(self) -> LazyParser:
        """This parser with its ``complete`` hook run (once)."""
        hook, self._complete = self._complete, None
        if hook is not None:
            hook(self)
        return self

    def parse_known_args(self, args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        self.completed()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self.completed()
        return super().format_help()

    def format_usage(self) -> str:
        self.completed()
        return super().format_usage()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparseclip",
        description="Train, evaluate and analyse Sparse CLIP models (CLIP with wide non-negative heads).",
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=LazyParser)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[list[str]]:
    """Every sub-command's words (``["index", "build"]``), nested ones too, in the parser's order; a lazy
    sub-command's parser is not completed."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield [*prefix, name]
                yield from commands(sub, (*prefix, name))


def quiet_threads() -> None:
    """OpenMP threads that wait for work by sleeping, not by spinning, unless the user chose (``OMP_WAIT_POLICY``):
    next to other work on the machine, spinning threads take the cores from the threads that have work (a short
    tiny_sparse training next to two busy processes on 2 cores took about 1.7 times as long spinning), and on a quiet
    machine sleeping cost no measurable wall time. Takes effect only before torch is imported, which the command
    line does lazily, in the command that needs it."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    quiet_threads()
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
