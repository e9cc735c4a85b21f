"""An exclusive lock on a folder that a process writes (a run, an index): a second writer is refused in one
line naming the holder. The lock is ``fcntl.flock`` on ``FOLDER/.lock``: the kernel releases it when the holder
exits or is killed, so a stale lock file left by a killed process is simply taken over."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path


class LockedError(ValueError):
    """The folder is being written by another process (one line)."""


class FolderLock:
    """``with FolderLock(folder, "training"):`` ... holds ``folder/.lock`` exclusively for the block."""

    def __init__(self, folder: str | Path, what: str = "writing", beside: bool = False):
        """``beside``: the lock file is ``.NAME.lock`` next to the folder (for a folder that is replaced as a
        whole when written, like an index)."""
        self.folder = Path(folder)
        self.what = what
        self.path = (self.folder.parent / f".{self.folder.name}.lock") if beside else self.folder / ".lock"
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        path = self.path
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockedError(f"{self.folder} is in use: {holder(path)}; wait for it to finish or stop it "
                              "(a killed process releases the lock by itself)") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what,
                "command": " ".join(sys.argv[:6]), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def holder(lock_file: str | Path) -> str:
    """Who holds a lock, as recorded in its lock file."""
    try:
        info = json.loads(Path(lock_file).read_text())
        return f"{info['what']} by pid {info['pid']} on {info['host']} since {info['since']} ({info['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
