"""Refusing an unusable output path before any work (the ``--out`` of eval, compare, analyze, index build): a
command that computes for minutes and then fails to write would lose the work."""

from __future__ import annotations

import os
from pathlib import Path

from . import UserError


def _probe_writable(folder: Path, flag: str, out: str) -> None:
    """Create and remove a file in ``folder`` (tried for real: root passes every permission check, yet cannot
    write to /sys or a read-only mount)."""
    import tempfile  # only when an output is checked: not on every command's start-up

    try:
        fd, probe = tempfile.mkstemp(prefix=".sparseclip-probe-", dir=folder)
    except OSError as e:
        raise UserError(f"{flag} {out}: the folder {folder} is not writable "
                        f"({e.strerror or type(e).__name__})") from None
    os.close(fd)
    os.unlink(probe)


def check_out(out: str | None, flag: str = "--out") -> None:
    """Refuse an unusable output *file*: a folder, something that is not a regular file (a device, a FIFO: the
    atomic write would replace it), or a file in a missing or unwritable folder."""
    if out is None:
        return
    p = Path(out)
    if p.is_dir():
        raise UserError(f"{flag} {out}: is a folder; give a file path (e.g. {p / 'eval.json'})")
    if p.exists() and not p.is_file():
        raise UserError(f"{flag} {out}: exists and is not a regular file (a device, FIFO or socket); "
                        "give a file path")
    if not p.parent.is_dir():
        raise UserError(f"{flag} {out}: the folder {p.parent} does not exist")
    _probe_writable(p.parent, flag, out)


def check_out_dir(out: str | None, flag: str = "--out") -> None:
    """Refuse an unusable output *folder*: an existing file, or a path whose nearest existing ancestor is a
    file or an unwritable folder (missing folders are made by the command)."""
    if out is None:
        return
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise UserError(f"{flag} {out}: exists and is not a folder")
    ancestor = p
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{flag} {out}: {ancestor} is a file, not a folder")
    _probe_writable(ancestor, flag, out)
