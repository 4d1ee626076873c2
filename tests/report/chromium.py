"""Headless Chromium driven over the DevTools protocol on a pipe (stdlib only).

`--remote-debugging-pipe` makes Chromium read commands from fd 3 and write replies to
fd 4, NUL-separated JSON: no port, no websocket library. Used by the browser tests and
by benchmarks/bench_report.py.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import struct
import subprocess
import tempfile
import time
import zlib
from pathlib import Path
from types import TracebackType
from typing import Any

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
MISSING_MESSAGE = (
    "headless Chromium is needed for the HTML report tests and was not found "
    "(tried: {}). Install it: apt-get install -y chromium"
)


def find_chromium() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        path = name if os.path.isabs(name) and os.access(name, os.X_OK) else shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """One headless browser with one page. Collects console errors and uncaught
    exceptions of everything the page runs."""

    def __init__(self, width: int = 1280, height: int = 2000, timeout: float = 30.0) -> None:
        exe = find_chromium()
        if exe is None:
            raise RuntimeError(MISSING_MESSAGE.format(", ".join(CHROMIUM_CANDIDATES)))
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="ld-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire_fds() -> None:  # in the child, before it closes the fds not kept
            # Copies first, so neither dup2 clobbers the other's source.
            read_end, write_end = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--disable-extensions",
             "--remote-debugging-pipe", f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire_fds, pass_fds=(3, 4),
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.errors: list[str] = []
        try:
            self._open_page(width, height)
        except BaseException:
            self.close()
            raise

    # --- protocol ----------------------------------------------------------------------

    def _send(self, method: str, params: dict[str, Any] | None = None,
              session: str | None = None) -> int:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        return self._next_id

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe (it crashed?)")
                self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        msg: dict[str, Any] = json.loads(raw)
        if "method" in msg:
            self._note_event(msg)
        return msg

    def _note_event(self, msg: dict[str, Any]) -> None:
        self.events.append(msg)
        method, params = msg["method"], msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text")
            self.errors.append(f"uncaught: {text}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in
                            params.get("args", []))
            self.errors.append(f"console.{params['type']}: {args}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}")

    def call(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = "page") -> dict[str, Any]:
        sid = self.session if session == "page" else session
        wanted = self._send(method, params, sid)
        deadline = time.monotonic() + self.timeout
        while True:
            msg = self._read_message(deadline)
            if msg.get("id") == wanted:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg.get("result", {})
                return result

    def wait_event(self, method: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        for msg in self.events:
            if msg["method"] == method:
                self.events.remove(msg)
                return msg
        while True:
            msg = self._read_message(deadline)
            if msg.get("method") == method:
                self.events.remove(msg)
                return msg

    def _open_page(self, width: int, height: int) -> None:
        self.session = None
        targets = self.call("Target.getTargets", session=None)["targetInfos"]
        page = next((t for t in targets if t["type"] == "page"), None)
        target_id = (page["targetId"] if page else
                     self.call("Target.createTarget", {"url": "about:blank"},
                               session=None)["targetId"])
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": target_id, "flatten": True},
                                 session=None)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    # --- what tests use ------------------------------------------------------------------

    def load(self, path: Path) -> float:
        """Open a file and wait for its load event; seconds from navigation to load."""
        self.events.clear()
        started = time.perf_counter()
        self.call("Page.navigate", {"url": Path(path).resolve().as_uri()})
        self.wait_event("Page.loadEventFired")
        return time.perf_counter() - started

    def evaluate(self, expression: str, await_promise: bool = False) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True,
                                                "awaitPromise": await_promise})
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluate failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def after_paint(self) -> float:
        """Wait until a frame has been painted; the page's clock (ms) at that moment."""
        value = self.evaluate(
            "new Promise(r => requestAnimationFrame(() => requestAnimationFrame("
            "() => r(performance.now()))))", await_promise=True)
        return float(value)

    def screenshot(self, scale: float = 1.0) -> bytes:
        """The viewport as PNG; a scale below 1 gives a small image that is quick to
        decode in pure Python."""
        params: dict[str, Any] = {"format": "png"}
        if scale != 1.0:
            size = self.evaluate("[innerWidth, innerHeight, scrollX, scrollY]")
            params["clip"] = {"x": size[2], "y": size[3], "width": size[0],
                              "height": size[1], "scale": scale}
        data = self.call("Page.captureScreenshot", params)["data"]
        return base64.b64decode(data)

    def drain(self, seconds: float = 0.2) -> None:
        """Read the events that arrived since the last call (late console errors)."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self._read_message(deadline)
        except TimeoutError:
            pass

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self._send("Browser.close")
                    self.proc.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    self.proc.kill()
                    self.proc.wait(timeout=5)
        finally:
            for fd in (self._to_child, self._from_child):
                with contextlib.suppress(OSError):
                    os.close(fd)
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def png_distinct_colors(png: bytes, sample_stride: int = 3) -> int:
    """How many distinct RGB colours an 8-bit RGB/RGBA PNG holds (a blank page has 1)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        data = png[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color_type = struct.unpack(">IIBB", data[:10])
            if depth != 8 or color_type not in (2, 6):
                raise ValueError(f"unsupported PNG (depth {depth}, colour type {color_type})")
            channels = 3 if color_type == 2 else 4
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    prev = bytearray(stride)
    colors: set[bytes] = set()
    for y in range(height):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        cur = _unfilter(line[0], bytearray(line[1:]), prev, channels)
        if y % sample_stride == 0:
            for x in range(0, stride, channels * sample_stride):
                colors.add(bytes(cur[x:x + 3]))
        prev = cur
    return len(colors)


def _unfilter(kind: int, cur: bytearray, prev: bytearray, bpp: int) -> bytearray:
    if kind == 0:
        return cur
    for i in range(len(cur)):
        a = cur[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        if kind == 1:
            cur[i] = (cur[i] + a) & 0xFF
        elif kind == 2:
            cur[i] = (cur[i] + b) & 0xFF
        elif kind == 3:
            cur[i] = (cur[i] + (a + b) // 2) & 0xFF
        elif kind == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[i] = (cur[i] + pred) & 0xFF
    return cur
