"""`foldwatch serve`: the token gate on every route, loopback by default, no shell, a tab's
console process started and ended with its websocket, Ctrl-C. A real server process and
aiohttp's client; the browser itself is in test_web_browser.py."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time

import aiohttp
import psutil

from engine_helpers import REPO, write_experiment
from web_helpers import run_record, served, wait_for  # noqa: F401  (served: a fixture)


async def _status(session, url, **kw) -> tuple[int, str]:
    async with session.get(url, allow_redirects=False, **kw) as r:
        return r.status, r.headers.get("X-Foldwatch-Refused", "")


async def _ws_status(session, url, **kw) -> int:
    try:
        async with session.ws_connect(url, **kw):
            return 101
    except aiohttp.WSServerHandshakeError as e:
        return e.status


def test_every_route_refuses_without_the_right_token(served):
    s = served()
    base = s.base

    async def check():
        async with aiohttp.ClientSession() as http:
            for path in ("/", "/static/js/textual.js", "/static/css/xterm.css", "/nothing",
                         "/ws?width=80&height=24"):
                assert await _status(http, base + path) == (403, "no token"), path
                assert await _status(http, base + path, cookies={"foldwatch-x": s.token}) \
                    == (403, "no token"), f"{path}: a cookie of another name"
            assert await _status(http, base + "/?token=" + s.token[:-1] + "x") == \
                (403, "wrong token")
            assert await _status(http, base + "/static/js/textual.js?token=nope") == \
                (403, "wrong token")
            assert await _ws_status(http, base.replace("http", "ws") + "/ws") == 403
            assert await _ws_status(http, base.replace("http", "ws") + "/ws?token=nope") == 403
            async with http.get(base + "/") as r:
                body = await r.text()
            assert "needs its token" in body and s.token not in body
    asyncio.run(check())
    assert s.tabs() == [], "a refused websocket started a console"


def test_the_token_opens_the_page_its_assets_and_a_console(served):
    s = served()

    async def check():
        async with aiohttp.ClientSession() as http:
            async with http.get(s.url + "&fontsize=14", allow_redirects=False) as r:
                assert r.status == 303
                assert r.headers["Location"] == "/?fontsize=14"    # the token leaves the URL
                cookie = r.headers["Set-Cookie"]
            name, value = cookie.split(";")[0].split("=", 1)
            assert value == s.token and "HttpOnly" in cookie and "SameSite=Lax" in cookie
            jar = {name: value}
            async with http.get(s.base + "/?fontsize=14", cookies=jar) as r:
                assert r.status == 200 and r.headers["X-Frame-Options"] == "DENY"
                page = await r.text()
            # Offline: every asset the page names is served here, none from the internet.
            assets = re.findall(r'(?:href|src)="([^"]+)"|url\("([^"]+)"\)', page)
            assets = [a or b for a, b in assets]
            assert "/static/js/textual.js" in assets and len(assets) >= 5
            assert not [a for a in assets if not a.startswith("/static/")], assets
            assert "googleapis" not in page and 'data-font-size="14"' in page
            assert f'data-session-websocket-url="ws://{s.base[7:]}/ws"' in page
            for a in set(assets):
                async with http.get(s.base + a, cookies=jar) as r:
                    assert r.status == 200 and len(await r.read()) > 100, a
            ws_url = s.base.replace("http", "ws") + "/ws?width=160&height=40"
            cookie_header = {"Cookie": f"{name}={value}"}
            assert await _ws_status(http, ws_url, headers=cookie_header,
                                    origin="http://evil.example") == 403
            assert s.tabs() == []
            drawn = b""
            async with http.ws_connect(ws_url, headers=cookie_header, origin=s.base) as ws:
                deadline = time.monotonic() + 60
                while b"Fold/stage" not in drawn:            # the runs table's header
                    assert time.monotonic() < deadline, f"no runs table: {drawn[-400:]!r}"
                    msg = await ws.receive(timeout=deadline - time.monotonic())
                    assert msg.type == aiohttp.WSMsgType.BINARY, msg
                    drawn += msg.data
                await ws.send_json(["ping", "42"])
                while (msg := await ws.receive(timeout=30)).type != aiohttp.WSMsgType.TEXT:
                    pass
                assert msg.json() == ["pong", "42"]
                assert len(s.tabs()) == 1
            # Closing the tab ends its console, and only that.
            wait_for(lambda: s.tabs() == [], 30, what="the tab's console to end")
    asyncio.run(check())
    assert s.proc.poll() is None


def test_loopback_only_and_no_shell_between_server_and_console(served, tmp_path):
    # A folder name a shell would act on: with no shell in between it stays a name.
    s = served(folder=tmp_path / "x $(touch PWNED) `touch PWNED2`; touch PWNED3")
    listening = [c.laddr for c in psutil.Process(s.proc.pid).net_connections("inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listening and all(a.ip == "127.0.0.1" for a in listening), listening
    server = psutil.Process(s.proc.pid)
    cpu = sum(server.cpu_times()[:2])
    maps = "".join(m.path for m in server.memory_maps())
    assert "torch" not in maps and "numpy" not in maps
    print(f"foldwatch serve: URL printed {s.url_s:.2f} s after start ({cpu:.2f} s of CPU)")
    # CPU, not wall time, so a busy machine does not fail it; torch alone would take more.
    assert cpu < 1.0

    async def open_tab():
        async with aiohttp.ClientSession() as http:
            ws_url = s.base.replace("http", "ws") + "/ws?token=" + s.token
            async with http.ws_connect(ws_url) as ws:
                assert (await ws.receive(timeout=60)).type == aiohttp.WSMsgType.BINARY
                (tab,) = s.tabs()
                return tab.cmdline(), tab.ppid()
    cmdline, parent = asyncio.run(open_tab())
    exp = str(tmp_path / "x $(touch PWNED) `touch PWNED2`; touch PWNED3" / "exp.yaml")
    assert cmdline == [sys.executable, "-m", "console.clients.cli", "up", exp]
    assert parent == s.proc.pid                       # started directly, not by /bin/sh
    assert not list(REPO.glob("PWNED*")) and not list(tmp_path.rglob("PWNED*"))


def test_ctrl_c_ends_the_consoles_not_the_runs(served, tmp_path):
    s = served(epochs=1000)
    exp = tmp_path / "exp.yaml"

    async def tab_then_ctrl_c():
        async with aiohttp.ClientSession() as http:
            ws_url = s.base.replace("http", "ws") + "/ws?token=" + s.token
            async with http.ws_connect(ws_url) as ws:
                (tab,) = wait_for(s.tabs, 60, what="the tab's console")
                deadline = time.monotonic() + 120
                while run_record(exp).get("state") != "running":   # the console launched it
                    assert time.monotonic() < deadline, run_record(exp)
                    await ws.receive(timeout=deadline - time.monotonic())
                run_pid = run_record(exp)["pid"]
                t0 = time.monotonic()
                s.proc.send_signal(signal.SIGINT)
                while (await ws.receive(timeout=60)).type not in (
                        aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    pass
                return tab, run_pid, time.monotonic() - t0
    tab, run_pid, closed_s = asyncio.run(tab_then_ctrl_c())
    assert s.proc.wait(30) == 0
    assert "stopping" in s.output and "Traceback" not in s.output, s.output
    assert not tab.is_running(), "the tab's console outlived the server"
    assert psutil.pid_exists(run_pid) and run_record(exp)["state"] == "running"
    print(f"Ctrl-C to the tab's websocket closed: {closed_s:.2f} s")


def test_defaults_bad_experiment_and_busy_port(tmp_path):
    from console.clients.cli.main import _parser
    args = _parser().parse_args(["serve", "exp.yaml"])
    assert (args.host, args.port, args.read_only, args.max_tabs) == \
        ("127.0.0.1", 8000, False, 8)
    env = {**os.environ, "FOLDWATCH_NO_NVML": "1"}
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "console.clients.cli", "serve", "--help"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    print(f"foldwatch serve --help: {time.monotonic() - t0:.2f} s")
    assert out.returncode == 0 and "--read-only" in out.stdout and "--host" in out.stdout
    out = subprocess.run([sys.executable, "-m", "console.clients.cli", "serve",
                          str(tmp_path / "missing.yaml")], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "not found" in out.stderr
    exp = write_experiment(tmp_path, folds=(0,))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "console.clients.cli", "serve", str(exp),
                              "--port", str(port)], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr and "--port" in out.stderr


def test_a_console_that_cannot_start_ends_its_tab_not_the_server(served, tmp_path):
    s = served()
    (tmp_path / "exp.yaml").rename(tmp_path / "moved.yaml")    # each tab loads it anew

    async def open_tab():
        async with aiohttp.ClientSession() as http:
            ws_url = s.base.replace("http", "ws") + "/ws?token=" + s.token
            async with http.ws_connect(ws_url) as ws:
                while (msg := await ws.receive(timeout=60)).type == aiohttp.WSMsgType.BINARY:
                    pass
                return msg.type
    assert asyncio.run(open_tab()) in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    wait_for(lambda: "not found" in s.output, 30, what="the console's error in the server output")
    wait_for(lambda: s.tabs() == [], 30, what="the failed console's process to end")
    assert s.proc.poll() is None
    (tmp_path / "moved.yaml").rename(tmp_path / "exp.yaml")


def test_tabs_past_max_tabs_are_refused_until_one_closes(served):
    """Each tab is a console process: past --max-tabs the page and the websocket answer 503
    saying why, and start nothing; once a tab closes, the next one opens."""
    s = served("--max-tabs", "1")

    async def check():
        async with aiohttp.ClientSession() as http:
            async with http.get(s.url, allow_redirects=False) as r:     # token -> cookie
                name, value = r.headers["Set-Cookie"].split(";")[0].split("=", 1)
            jar = {name: value}
            ws_url = s.base.replace("http", "ws") + "/ws?token=" + s.token
            async with http.ws_connect(ws_url) as ws:
                while b"Fold/stage" not in (await ws.receive(timeout=60)).data:
                    pass                                       # the first tab's console is up
                async with http.get(s.base + "/", cookies=jar) as r:
                    assert r.status == 503 and "--max-tabs 1" in await r.text()
                    assert r.headers["X-Foldwatch-Refused"] == "too many tabs"
                assert await _ws_status(http, ws_url) == 503
                assert len(s.tabs()) == 1
            deadline = time.monotonic() + 60
            while await _status(http, s.base + "/", cookies=jar) != (200, ""):
                assert time.monotonic() < deadline, "the page stayed refused"
                await asyncio.sleep(0.1)                       # the closed tab is let go
            async with http.ws_connect(ws_url) as ws:
                while b"Fold/stage" not in (await ws.receive(timeout=60)).data:
                    pass
    asyncio.run(check())
