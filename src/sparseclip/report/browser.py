"""Headless Chromium helpers: load a page and return its DOM after scripts ran, or take a screenshot.

Used by the report's tests and by ``sparseclip report --screenshot``. Chromium runs with no network
access of its own (no first-run, sync, component updates or background networking) and a throw-away
profile directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

#: names tried in order (``SPARSECLIP_CHROMIUM`` overrides)
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--mute-audio")


class BrowserError(RuntimeError):
    """Chromium is missing or failed (one-line message)."""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable, or None."""
    override = os.environ.get("SPARSECLIP_CHROMIUM")
    if override:
        return shutil.which(override)
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    exe = find_chromium()
    if exe is None:
        raise BrowserError("no Chromium found (install Debian's 'chromium' package or set SPARSECLIP_CHROMIUM)")
    with tempfile.TemporaryDirectory(prefix="sparseclip-chromium-") as profile:
        cmd = [exe, *FLAGS, f"--user-data-dir={profile}", *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  env={**os.environ, "HOME": profile})
        except subprocess.TimeoutExpired:
            raise BrowserError(f"Chromium did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise BrowserError(f"Chromium exited with {proc.returncode}: {tail}")
    return proc


def _url(page: str | Path) -> str:
    return page if isinstance(page, str) and page.startswith("file:") else Path(page).resolve().as_uri()


def dump_dom(page: str | Path, timeout: float = 90.0) -> str:
    """The serialised DOM of a local HTML file (a path, or a ``file:`` URL that may carry a ``#q=...``
    filter) after it loaded and its scripts ran."""
    url = _url(page)
    return _run(["--virtual-time-budget=3000", "--dump-dom", url], timeout).stdout


def screenshot(page: str | Path, png: str | Path, width: int = 1280, height: int = 1600,
               timeout: float = 90.0) -> Path:
    """Save a PNG screenshot of a local HTML file; returns the PNG's path."""
    out = Path(png).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    _run([f"--screenshot={out}", f"--window-size={width},{height}", "--virtual-time-budget=3000",
          _url(page)], timeout)
    if not out.is_file():
        raise BrowserError(f"Chromium wrote no screenshot to {out}")
    return out
