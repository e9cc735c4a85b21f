"""Headless Chromium helpers: load a page and return its DOM after scripts ran, take a screenshot at an exact
viewport, or drive the page (:class:`DevTools`: measure it, run scripts in it).

Used by the report's tests and by ``sparseclip report --screenshot``. Chromium runs with no network
access of its own (no first-run, sync, component updates or background networking) and a throw-away
profile directory.
"""

from __future__ import annotations

import json
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
               timeout: float = 90.0, full_page: bool = False) -> Path:
    """Save a PNG screenshot of a local HTML file in a ``width`` x ``height`` viewport (exactly: phone widths
    too), or of the whole page; returns the PNG's path."""
    with DevTools(timeout=timeout) as dt:
        dt.open(page, width=width, height=height)
        out = dt.screenshot(png, full_page=full_page)
    if not out.is_file():
        raise BrowserError(f"Chromium wrote no screenshot to {out}")
    return out.resolve()


#: a script that makes every image eager and resolves, once each has loaded or failed, to the ``src`` of those that
#: did not load
LOAD_ALL_IMAGES = """Promise.all(Array.from(document.images).map(function (i) { i.loading = 'eager';
  return i.complete ? 1 : new Promise(function (r) { i.addEventListener('load', r); i.addEventListener('error', r); });
})).then(function () { return Array.from(document.images)
  .filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
  .map(function (i) { return i.getAttribute('src'); }); })"""


class DevTools:
    """Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON messages
    ending in a NUL byte on file descriptors 3 and 4; no network port, no client library). Emulates an exact
    viewport (a plain ``--window-size`` is not narrower than 500 px), evaluates scripts and takes screenshots.

    >>> with DevTools() as dt:
    ...     dt.open("report/index.html", width=400, height=900)
    ...     dt.evaluate("document.documentElement.scrollWidth")
    """

    def __init__(self, timeout: float = 60.0):
        self.timeout = timeout
        self._id = 0
        self._session: str | None = None
        self._events: list[dict] = []

    def __enter__(self) -> DevTools:
        exe = find_chromium()
        if exe is None:
            raise BrowserError("no Chromium found (install Debian's 'chromium' package or set SPARSECLIP_CHROMIUM)")
        self._profile = tempfile.TemporaryDirectory(prefix="sparseclip-chromium-")
        import fcntl

        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # the child's ends of the pipes, first moved clear of 3 and 4, become its descriptors 3 and 4
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_child_r, from_child_w)]
        os.close(to_child_r)
        os.close(from_child_w)

        def as_3_and_4() -> None:  # runs in the child, before Chromium starts (the parent's other descriptors are
            os.dup2(ends[0], 3)  # not inheritable: PEP 446)
            os.dup2(ends[1], 4)
            os.close(ends[0])
            os.close(ends[1])

        cmd = [exe, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self._profile.name}", "about:blank"]
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, close_fds=False, preexec_fn=as_3_and_4,
                                          env={**os.environ, "HOME": self._profile.name})
        finally:
            for fd in ends:
                os.close(fd)
        self._buf = b""
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Page.enable")
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._session = None
            self.send("Browser.close")
        except BrowserError:
            pass
        finally:
            os.close(self._to_child)
            os.close(self._from_child)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._profile.cleanup()

    def _read(self) -> dict:
        import select
        import time

        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise BrowserError(f"Chromium did not answer within {self.timeout:.0f} s")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise BrowserError("Chromium closed its DevTools pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, **params) -> dict:
        """Send one command and return its result (events that arrive meanwhile are kept for :meth:`wait_for`)."""
        self._id += 1
        msg: dict = {"id": self._id, "method": method, "params": params}
        if self._session and not method.startswith(("Target.", "Browser.")):
            msg["sessionId"] = self._session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self._events.append(reply)

    def wait_for(self, event: str) -> dict:
        """The next event named ``event``."""
        while True:
            for i, e in enumerate(self._events):
                if e.get("method") == event:
                    return self._events.pop(i)
            self._events.append(self._read())

    def open(self, page: str | Path, width: int = 1280, height: int = 900) -> None:
        """Load a local page in a ``width`` x ``height`` CSS-pixel viewport and wait for its load event."""
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)
        self._events.clear()
        self.send("Page.navigate", url=_url(page))
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        res = self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in res:
            raise BrowserError(f"script failed: {res['exceptionDetails'].get('text')}")
        return res.get("result", {}).get("value")

    def screenshot(self, png: str | Path, full_page: bool = False) -> Path:
        """A PNG of the viewport (or of the whole page)."""
        import base64

        params: dict = {"format": "png"}
        if full_page:  # lazy images below the first screen would show empty: load them all first
            self.evaluate(LOAD_ALL_IMAGES)
            size = self.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            params |= {"captureBeyondViewport": True,
                       "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}}
        out = Path(png)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", **params)["data"]))
        return out
