"""The model argument of the commands that read a trained model (eval, analyze, index build, steer-train): a run
or checkpoint dir as the positional argument, or ``--model NAME:TAG`` (a model shipped with the package). Both are
handed to the library as they are: :func:`sparseclip.model.checkpoint.resolve_checkpoint` resolves either."""

from __future__ import annotations

import argparse

from . import UserError

SHIPPED_HELP = ("a model shipped with the package, NAME:TAG (e.g. lite_sparse:world; "
                "python -c 'import sparseclip; print(sparseclip.list_pretrained())' lists them)")


def add_model_arguments(p: argparse.ArgumentParser, dest: str, metavar: str, help: str) -> None:
    """The positional ``dest`` (optional now) and ``--model NAME:TAG``; :func:`model_target` reads them."""
    p.add_argument(dest, nargs="?", metavar=metavar, help=f"{help}, or NAME:TAG of a shipped model")
    p.add_argument("--model", dest=f"{dest}_shipped", metavar="NAME:TAG", help=f"instead of {metavar}: {SHIPPED_HELP}")


def model_target(args: argparse.Namespace, dest: str, metavar: str) -> str:
    """The model the command reads: the positional argument or ``--model`` (exactly one of them)."""
    given, shipped = getattr(args, dest), getattr(args, f"{dest}_shipped")
    if given and shipped:
        raise UserError(f"give {metavar} or --model NAME:TAG, not both")
    if not given and not shipped:
        raise UserError(f"give {metavar} (a run or checkpoint dir) or --model NAME:TAG (a shipped model)")
    return given or shipped


def is_shipped(target: str) -> bool:
    """Whether ``target`` names a shipped model (``NAME:TAG``, no such path here)."""
    from pathlib import Path

    from ..weights import is_spec

    return is_spec(target) and not Path(target).exists()
