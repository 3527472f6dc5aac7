"""The web server of `foldwatch serve`: the page, textual-serve's assets, one websocket per tab.

Everything the page needs is served from here (the xterm.js bundle, its CSS and the font ship
inside textual-serve), so it works on a server without internet. No route starts anything
but the console's own argument list.
"""

from __future__ import annotations

import asyncio
import html
import signal
import socket
import sys
from pathlib import Path
from string import Template

import textual_serve
from aiohttp import WSMsgType, web
from textual_serve.download_manager import DownloadManager

from console.clients.web.gate import TokenGate
from console.clients.web.tabs import ConsoleTab
from contracts.errors import ConfigError

STATIC = Path(textual_serve.__file__).resolve().parent / "static"
PAGE = Template((Path(__file__).with_name("page.html")).read_text(encoding="utf-8"))
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MAX_TABS = 8            # each tab is a console process (about 50 MB resident); --max-tabs


def console_argv(exp_path: Path, *, read_only: bool) -> list[str]:
    """What one tab runs: the console as a client of the experiment's supervisor."""
    return [sys.executable, "-m", "console.clients.cli", "up", str(exp_path)] + (
        ["--read-only"] if read_only else [])


class WebConsole:
    """The aiohttp application: routes behind the gate, and the tabs it has started."""

    def __init__(self, argv: list[str], *, title: str, gate: TokenGate,
                 max_tabs: int = MAX_TABS) -> None:
        self.argv, self.title, self.gate, self.max_tabs = argv, title, gate, max_tabs
        self.tabs: dict[ConsoleTab, web.WebSocketResponse] = {}
        self.downloads = DownloadManager()      # required by the protocol; the console sends none

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.gate.middleware])
        # No /download route: the console delivers no files, so the route would only be surface.
        app.add_routes([web.get("/", self.page), web.get("/ws", self.websocket),
                        web.static("/static", STATIC)])
        app.on_shutdown.append(self._close_tabs)
        return app

    def _full(self) -> web.Response | None:
        """Past --max-tabs: refused with 503, saying so (a leaked URL or a reloading page
        cannot start consoles without end)."""
        if len(self.tabs) < self.max_tabs:
            return None
        text = (f"foldwatch serve: {len(self.tabs)} consoles are open, the most it starts "
                f"(--max-tabs {self.max_tabs}); close a tab and reload this page.")
        return web.Response(status=503, text=text, headers={
            "Cache-Control": "no-store", "Retry-After": "5",
            "X-Foldwatch-Refused": "too many tabs"})

    async def page(self, request: web.Request) -> web.Response:
        if (full := self._full()) is not None:
            return full
        # Built from the Host header the browser used, so `ssh -L 9000:localhost:8000` works.
        scheme = "wss" if request.secure else "ws"
        text = PAGE.substitute(title=html.escape(self.title), static="/static/",
                               websocket=html.escape(f"{scheme}://{request.host}/ws"),
                               font_size=_int(request.query.get("fontsize"), 16, 6, 64))
        return web.Response(text=text, content_type="text/html", headers={
            "Cache-Control": "no-store", "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer"})

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        if (full := self._full()) is not None:
            return full
        ws = web.WebSocketResponse(heartbeat=15)
        await ws.prepare(request)
        tab = ConsoleTab(self.argv, write_bytes=ws.send_bytes, write_str=ws.send_str,
                         close=ws.close, download_manager=self.downloads)
        self.tabs[tab] = ws
        try:
            await tab.start(_int(request.query.get("width"), 80, 10, 1000),
                            _int(request.query.get("height"), 24, 5, 500))
            await _relay(ws, tab)
        finally:
            await tab.stop()
            self.tabs.pop(tab, None)
        return ws

    async def _close_tabs(self, _app: web.Application) -> None:
        """Server shutdown: every tab's console quits (supervision goes on without them)."""
        tabs = list(self.tabs.items())
        await asyncio.gather(*(tab.stop() for tab, _ in tabs), return_exceptions=True)
        await asyncio.gather(*(ws.close() for _, ws in tabs), return_exceptions=True)


async def _relay(ws: web.WebSocketResponse, tab: ConsoleTab) -> None:
    """The page's messages to the console until the tab closes (textual.js's envelope)."""
    async for msg in ws:
        if msg.type != WSMsgType.TEXT:
            continue
        try:
            kind, *rest = msg.json()
            data = rest[0] if rest else None
            if kind == "stdin":
                await tab.send_bytes(str(data).encode("utf-8"))
            elif kind == "resize":
                await tab.set_terminal_size(_int(data["width"], 80, 10, 1000),
                                            _int(data["height"], 24, 5, 500))
            elif kind == "ping":
                await ws.send_json(["pong", data])
            elif kind == "blur":
                await tab.blur()
            elif kind == "focus":
                await tab.focus()
        except (ValueError, TypeError, KeyError):
            continue                       # a malformed message is dropped, not fatal


def _int(value, default: int, low: int, high: int) -> int:
    try:
        return min(high, max(low, int(value)))
    except (TypeError, ValueError):
        return default


def page_url(host: str, port: int, token: str) -> str:
    """The address to open; a wildcard bind is shown as this machine's name."""
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/?token={token}"


def serve(exp_path: Path, *, title: str, host: str = "127.0.0.1", port: int = 8000,
          read_only: bool = False, max_tabs: int = MAX_TABS, out=None) -> int:
    """Serve until Ctrl-C (or SIGTERM); returns the exit status."""
    console = WebConsole(console_argv(exp_path, read_only=read_only), title=title,
                         gate=TokenGate(), max_tabs=max_tabs)
    return asyncio.run(_run(console, host, port, read_only, out or sys.stdout))


async def _run(console: WebConsole, host: str, port: int, read_only: bool, out) -> int:
    runner = web.AppRunner(console.app(), handle_signals=False, access_log=None,
                           shutdown_timeout=5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except OSError as e:
        await runner.cleanup()
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror or e}); "
                          "pick another port with --port (or --port 0 for any free one)"
                          ) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bound = runner.addresses[0][1]
    _announce(out, page_url(host, bound, console.gate.token), host, bound, read_only)
    try:
        await stop.wait()
    finally:
        print("foldwatch serve: stopping (the browser consoles quit; supervision goes on)",
              file=out, flush=True)
        await runner.cleanup()
    return 0


def _announce(out, url: str, host: str, port: int, read_only: bool) -> None:
    what = "a read-only view of the console" if read_only else "the console"
    lines = [f"foldwatch serve: {what} at", f"  {url}"]
    if host in LOOPBACK:
        lines.append(f"From your machine: ssh -N -L {port}:localhost:{port} "
                     f"{socket.gethostname()}, then open the URL above there.")
    else:
        lines.append(f"Listening on {host}: anyone who can reach port {port} and has the URL "
                     "can use it.")
    lines.append("Each browser tab is a console of its own; Ctrl-C stops the server.")
    print("\n".join(lines), file=out, flush=True)
