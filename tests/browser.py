"""Debian's headless Chromium, driven over the Chrome DevTools Protocol.

Why CDP and not Selenium/Playwright: the protocol is chromium's own (no driver binary whose
version must match the browser, nothing downloaded at run time), and its client is a
websocket, which aiohttp (already installed for `foldwatch serve`) speaks.

textual-serve draws the terminal with xterm.js on a canvas, so the page's DOM holds no text.
HOOK, run before the page's scripts, keeps a reference to the xterm.js Terminal when
textual.js sets up its renderer, and SCREEN reads the rows xterm.js shows from its buffer.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import subprocess
import time
from pathlib import Path

import aiohttp

from system_helpers import debian_program

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-unsafe-swiftshader",      # software WebGL for xterm.js's renderer
         "--window-size=1400,900", "--remote-debugging-port=0", "about:blank"]

HOOK = """
Object.defineProperty(Object.prototype, "webglAddon", {
  configurable: true,
  set(value) {
    Object.defineProperty(this, "webglAddon", {value, writable: true, configurable: true});
    if (this.terminal && this.terminal.buffer) window.__foldwatchTerminal = this.terminal;
  },
});
"""

SCREEN = """(() => {
  const t = window.__foldwatchTerminal;
  if (!t) return null;
  const b = t.buffer.active, rows = [];
  for (let i = 0; i < t.rows; i++) {
    const line = b.getLine(b.viewportY + i);
    rows.push(line ? line.translateToString(true) : "");
  }
  return rows.join("\\n");
})()"""

# Key name -> (key, code, Windows virtual key code, modifiers: 8 = Shift), as a US keyboard.
KEYS = {"?": ("?", "Slash", 191, 8), "s": ("s", "KeyS", 83, 0), "j": ("j", "KeyJ", 74, 0),
        "Escape": ("Escape", "Escape", 27, 0)}


def install_chromium() -> tuple[str | None, str]:
    """The chromium binary, installing Debian's package when root; else (None, why not)."""
    return debian_program("chromium")


class Chromium:
    """A headless chromium process with a fresh profile; `devtools` is its browser endpoint."""

    def __init__(self, exe: str, profile: Path, timeout: float = 60.0) -> None:
        self.proc = subprocess.Popen([exe, f"--user-data-dir={profile}", *FLAGS],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"chromium did not open its DevTools port ({port_file})")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        self.devtools = f"ws://127.0.0.1:{port}{path}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Page:
    """One tab in a browser context of its own (its own cookies), over one CDP connection."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: aiohttp.ClientSession):
        self._ws, self._http = ws, session
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self._reader = asyncio.create_task(self._read())
        self._session_id: str | None = None
        self._context: str | None = None
        self.requests: list[str] = []           # every URL the tab asked for, in order

    @classmethod
    async def open(cls, browser: Chromium) -> "Page":
        http = aiohttp.ClientSession()
        page = cls(await http.ws_connect(browser.devtools, max_msg_size=0), http)
        ctx = (await page.send("Target.createBrowserContext"))["browserContextId"]
        target = (await page.send("Target.createTarget", url="about:blank",
                                  browserContextId=ctx))["targetId"]
        page._context = ctx
        page._session_id = (await page.send("Target.attachToTarget", targetId=target,
                                             flatten=True))["sessionId"]
        await page.send("Page.enable")
        await page.send("Network.enable")
        await page.send("Page.addScriptToEvaluateOnNewDocument", source=HOOK)
        return page

    async def _read(self) -> None:
        async for msg in self._ws:
            data = json.loads(msg.data)
            method = data.get("method")
            if method == "Network.requestWillBeSent":
                self.requests.append(data["params"]["request"]["url"])
            elif method == "Network.webSocketCreated":
                self.requests.append(data["params"]["url"])
            fut = self._waiting.pop(data.get("id"), None)
            if fut is not None and not fut.done():
                fut.set_result(data)

    async def send(self, method: str, **params) -> dict:
        n = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._waiting[n] = fut
        msg = {"id": n, "method": method, "params": params}
        if self._session_id and not method.startswith("Target."):
            msg["sessionId"] = self._session_id
        await self._ws.send_str(json.dumps(msg))
        reply = await asyncio.wait_for(fut, 60)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)

    async def evaluate(self, expression: str):
        r = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression[:60]}: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def wait_for(self, expression: str, predicate, timeout: float = 60.0,
                       what: str = "condition"):
        """Evaluate `expression` until predicate(value) holds; the last value on timeout."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            try:
                value = await self.evaluate(expression)
            except RuntimeError:          # mid-navigation: the context is being replaced
                value = None
            if predicate(value):
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; "
                             f"last: {value!r}")

    async def screen(self) -> str | None:
        return await self.evaluate(SCREEN)

    async def wait_screen(self, needle: str, timeout: float = 60.0) -> str:
        return await self.wait_for(SCREEN, lambda s: bool(s) and needle in s, timeout,
                                   what=f"{needle!r} on the terminal")

    async def press(self, name: str) -> None:
        """A real key event into the page, as typed on a US keyboard."""
        key, code, vk, mods = KEYS[name]
        text = key if len(key) == 1 else ""
        await self.evaluate("window.__foldwatchTerminal.focus()")
        for kind in ("keyDown", "keyUp"):
            await self.send("Input.dispatchKeyEvent", type=kind, key=key, code=code,
                            windowsVirtualKeyCode=vk, modifiers=mods,
                            **({"text": text} if kind == "keyDown" and text else {}))

    async def screenshot(self, path: Path) -> bytes:
        png = base64.b64decode((await self.send("Page.captureScreenshot", format="png"))["data"])
        path.write_bytes(png)
        return png

    async def close(self) -> None:
        """Closes the tab (its websocket with it) and forgets the context's cookies."""
        try:
            await self.send("Target.disposeBrowserContext", browserContextId=self._context)
        except (RuntimeError, asyncio.TimeoutError):
            pass
        self._reader.cancel()
        await self._ws.close()
        await self._http.close()
