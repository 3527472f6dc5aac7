"""`foldwatch serve` in a real browser: Debian's headless chromium opens the URL, the runs
table appears, keys typed in the page reach the console; without the token the page is
refused; a read-only view refuses to act. Skipped, saying why, where chromium cannot be
installed (as root on Debian the session fixture installs it: about 1.5 min, once)."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image, ImageChops

from browser import SCREEN, Chromium, Page, install_chromium
from engine_helpers import REPO, write_experiment
from web_helpers import NO_STAGES, run_record, served, wait_for  # noqa: F401  (a fixture)


@pytest.fixture(scope="session")
def chromium(tmp_path_factory):
    t0 = time.monotonic()
    exe, why = install_chromium()
    if exe is None:
        pytest.skip(f"no headless chromium: {why}")
    print(f"chromium: {why} ({time.monotonic() - t0:.1f} s)")
    browser = Chromium(exe, tmp_path_factory.mktemp("chromium-profile"))
    yield browser
    browser.close()


def _row(fold: int, state: str):
    """A runs-table row as the terminal shows it: `2d  0  running ...`."""
    pattern = re.compile(rf"^\s*2d\s+{fold}\s+{state}\b", re.M)
    return lambda screen: bool(screen) and pattern.search(screen) is not None


def _colours(png: bytes) -> int:
    return len(Image.open(io.BytesIO(png)).convert("RGB").getcolors(1 << 20) or ())


@pytest.mark.asyncio
async def test_the_console_in_a_browser_and_keys_reach_it(chromium, served, tmp_path):
    s = served(epochs=1000, folds=(0, 1))
    page = await Page.open(chromium)
    try:
        await page.goto(s.url)
        await page.wait_screen("Fold/stage")                          # the runs table
        await page.wait_for(SCREEN, _row(0, "running"), 120, "2d/0 running")
        # The token left the address bar; the cookie that replaced it is not readable by JS.
        assert await page.evaluate("location.search") == ""
        assert await page.evaluate("document.cookie") == ""
        # Offline: everything the page asked for came from this server.
        assert s.base + "/static/js/textual.js" in page.requests
        assert s.base + "/static/fonts/RobotoMono-VariableFont_wght.ttf" in page.requests
        ws = s.base.replace("http", "ws", 1) + "/ws?width="
        assert ws in " ".join(page.requests)
        assert not [u for u in page.requests
                    if not u.startswith((s.base + "/", ws, "data:"))], page.requests
        runs_png = await page.screenshot(tmp_path / "runs.png")

        await page.press("?")
        await page.wait_screen("Toggle the watchdog")                 # the help screen
        help_png = await page.screenshot(tmp_path / "help.png")
        # The canvas really painted both (not only xterm.js's buffer): many colours, and
        # the help box changed the picture.
        assert _colours(runs_png) > 20 and _colours(help_png) > 20
        assert ImageChops.difference(Image.open(io.BytesIO(runs_png)).convert("RGB"),
                                     Image.open(io.BytesIO(help_png)).convert("RGB")).getbbox()

        await page.press("Escape")
        await page.wait_for(SCREEN, lambda t: t and "Toggle the watchdog" not in t, 30,
                            "the help screen to close")
        for key in ("j", "j", "s"):                                   # plan, preprocess, 2d/0
            await page.press(key)
        screen = await page.wait_screen("Stop 2d/0?")                 # this view can act
        await page.press("Escape")
        await page.wait_for(SCREEN, lambda t: t and "Stop 2d/0?" not in t, 30, "no dialog")
        assert run_record(tmp_path / "exp.yaml")["state"] == "running", screen
        assert len(s.tabs()) == 1
    finally:
        await page.close()
    wait_for(lambda: s.tabs() == [], 30, what="the closed tab's console to end")


@pytest.mark.asyncio
async def test_the_browser_without_the_token_is_refused(chromium, served):
    s = served()
    page = await Page.open(chromium)
    try:
        for url in (s.base + "/", f"{s.base}/?token=not-{s.token}",
                    s.base + "/static/js/textual.js"):
            await page.goto(url)
            seen = await page.wait_for(
                "[location.href, document.body ? document.body.innerText : '']",
                lambda v: v and v[0] == url and "403 Forbidden" in v[1], 30, f"403 at {url}")
            assert "needs its token" in seen[1]
            assert await page.evaluate("window.__foldwatchTerminal === undefined")
    finally:
        await page.close()
    assert s.tabs() == []


@pytest.mark.asyncio
async def test_a_read_only_view_cannot_act(chromium, served, tmp_path):
    exp = write_experiment(tmp_path, folds=(0,), epochs=1000, pipeline=NO_STAGES)
    s = None
    with open(tmp_path / "control.log", "w") as log:
        # A supervisor runs the experiment; the shared view only watches it.
        control = subprocess.Popen([sys.executable, "-m", "console.clients.cli", "up", str(exp),
                                    "--headless"], cwd=REPO, env=dict(os.environ), stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: run_record(exp).get("state") == "running", 120, what="2d/0 running")
        pid = run_record(exp)["pid"]
        s = served("--read-only", exp=exp)
        page = await Page.open(chromium)
        try:
            await page.goto(s.url)
            await page.wait_for(SCREEN, _row(0, "running"), 120, "2d/0 running")
            (tab,) = s.tabs()
            assert tab.cmdline()[-2:] == [str(exp), "--read-only"]
            for key in ("j", "j", "s"):
                await page.press(key)
            screen = await page.wait_screen("read-only: this view only watches")
            assert "Stop 2d/0?" not in screen
            await page.press("?")                   # the view itself still answers keys
            await page.wait_screen("Toggle the watchdog")
        finally:
            await page.close()
        assert run_record(exp)["state"] == "running" and run_record(exp)["pid"] == pid
    finally:
        control.send_signal(signal.SIGINT)
        control.wait(60)
