"""A page opened in Debian's headless chromium, driven over the DevTools
protocol on a pipe (--remote-debugging-pipe: fd 3 in, fd 4 out, one JSON
message per NUL), with no network: chromium runs in a network namespace of
its own (`unshare --net`, loopback up) and resolves no host name. What the
page asked for (every request), what it said (console messages, log
entries, exceptions), what the DOM holds and a screenshot come back."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",  # root in CI; the page is ours and has no script
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--remote-debugging-pipe",
]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Visit:
    requests: list = field(default_factory=list)  # URLs the page asked for (the document itself first)
    console: list = field(default_factory=list)  # (level, text) from console calls and the browser's log
    exceptions: list = field(default_factory=list)
    dom: object = None  # what `probe` evaluated to
    screenshot: bytes = b""


class Browser:
    def __init__(self, timeout: float = 60.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="convertctl-chromium-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def fds():  # the child's fd 3 reads our commands, its fd 4 carries the answers
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        cmd = [chromium() or "chromium", *FLAGS, f"--user-data-dir={self.profile}", "about:blank"]
        if shutil.which("unshare") and os.geteuid() == 0:  # no network at all, loopback only
            cmd = ["unshare", "--net", "sh", "-c", 'ip link set lo up 2>/dev/null; exec "$@"', "sh", *cmd]
        self.proc = subprocess.Popen(
            cmd, preexec_fn=fds, pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._id = 0
        self._buffer = b""
        self.events: list = []

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the protocol -------------------------------------------------------------
    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError(f"chromium closed the pipe (exit {self.proc.poll()})")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str) -> dict:
        deadline = time.monotonic() + self.timeout
        for event in self.events:
            if event.get("method") == method and event.get("sessionId") == session:
                return event
        while True:
            event = self._read(deadline)
            self.events.append(event)
            if event.get("method") == method and event.get("sessionId") == session:
                return event

    # -- a visit ----------------------------------------------------------------
    def visit(self, url: str, probe: str, width: int = 390, height: int = 844) -> Visit:
        """Open url at a phone's size, wait for its load and a moment after, and
        read what it did."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=session)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True},
            session=session,
        )
        self.events.clear()
        self.call("Page.navigate", {"url": url}, session=session)
        self.wait_for("Page.loadEventFired", session)
        self.call("Runtime.evaluate", {"expression": "new Promise(r => setTimeout(r, 300))", "awaitPromise": True},
                  session=session)  # fmt: skip
        visit = Visit()
        value = self.call("Runtime.evaluate", {"expression": probe, "returnByValue": True}, session=session)
        visit.dom = value.get("result", {}).get("value")
        shot = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session)
        visit.screenshot = base64.b64decode(shot["data"])
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if event.get("sessionId") != session:
                continue
            if method == "Network.requestWillBeSent":
                visit.requests.append(params["request"]["url"])
            elif method == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                visit.console.append((params.get("type"), text))
            elif method == "Log.entryAdded":
                visit.console.append((params["entry"].get("level"), params["entry"].get("text", "")))
            elif method == "Runtime.exceptionThrown":
                visit.exceptions.append(params.get("exceptionDetails", {}).get("text", ""))
        self.call("Target.closeTarget", {"targetId": target})
        return visit


PROBE = """JSON.stringify({
  charts: [...document.querySelectorAll('svg.chart')].map(s => ({
    kind: s.dataset.chart, marks: s.querySelectorAll('[data-v]').length,
    width: Math.round(s.getBoundingClientRect().width), height: Math.round(s.getBoundingClientRect().height)})),
  cards: [...document.querySelectorAll('.card')].map(c => c.dataset.mode),
  resources: performance.getEntriesByType('resource').map(r => r.name),
  overflow: document.documentElement.scrollWidth - window.innerWidth,
  scripts: document.scripts.length,
  title: document.title,
  text: document.body.innerText,
})"""


def pixel_spread(png: bytes) -> float:
    """The standard deviation of the screenshot's grey levels: 0 for a blank page."""
    import io

    from PIL import Image, ImageStat

    with Image.open(io.BytesIO(png)) as image:
        return ImageStat.Stat(image.convert("L")).stddev[0]


def open_page(path: Path, browser: Browser | None = None) -> tuple[Visit, dict]:
    own = browser is None
    browser = browser or Browser()
    try:
        visit = browser.visit(path.resolve().as_uri(), PROBE)
    finally:
        if own:
            browser.close()
    return visit, json.loads(visit.dom) if isinstance(visit.dom, str) else {}
