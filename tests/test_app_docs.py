"""docs/console.md carries a text capture of the main screen; keep it in step with the app.

Regenerate with FOLDWATCH_UPDATE_DOCS=1 pytest tests/test_app_docs.py."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from console.clients.tui.app import FoldwatchApp
from console.clients.tui.keys import key_table
from console.clients.text import results_lines
from console.protocol.vocabulary import COLUMNS
from console.clients.tui.screentext import screen_text
from ui_engine import ScriptedEngine, results_view

DOC = Path(__file__).resolve().parents[1] / "docs" / "console.md"
README = DOC.parents[1] / "README.md"
README_BLOCK = re.compile(r"(<!-- capture:main from the app -->\n```text\n)(.*?)(```\n)", re.S)
BLOCK = re.compile(r"(<!-- capture:(\w+) -->\n```text\n)(.*?)(```\n)", re.S)


async def main_screen(size: tuple[int, int], **engine) -> str:
    app = FoldwatchApp(ScriptedEngine(**engine), title="foldwatch - demo", poll_interval=60)
    async with app.run_test(size=size) as pilot:
        for _ in range(200):
            if app.snapshot is not None:
                break
            await pilot.pause(0.05)
        for _ in range(100):            # the footer fills in a moment after the bindings
            await pilot.pause(0.05)
            main = screen_text(app)
            if "q Quit" in main:
                break
    return main


async def capture() -> dict[str, str]:
    vocab = "\n".join(f"{h:>10}  {d}" for _, h, d in COLUMNS) + "\n"
    return {"main": await main_screen((80, 24)), "finished": await main_screen((80, 30), finished=True),
            "keys": key_table() + "\n", "vocabulary": vocab,
            "results": "\n".join(results_lines(results_view())) + "\n"}


@pytest.mark.asyncio
async def test_docs_capture_matches_the_app():
    blocks = await capture()
    assert "gpu0" in blocks["main"] and "2d          0" in blocks["main"]
    assert "2d+3d_fullres  predict     completed  -       6 cases" in blocks["finished"]
    readme = README.read_text()
    new_readme = README_BLOCK.sub(lambda m: m.group(1) + blocks["main"] + m.group(3), readme)
    if os.environ.get("FOLDWATCH_UPDATE_DOCS"):
        README.write_text(new_readme)
    assert new_readme == readme, "README.md's console capture is stale: " \
                                 "FOLDWATCH_UPDATE_DOCS=1 pytest tests/test_app_docs.py"
    text = DOC.read_text()
    new = BLOCK.sub(lambda m: m.group(1) + blocks[m.group(2)] + m.group(4), text)
    if os.environ.get("FOLDWATCH_UPDATE_DOCS"):
        DOC.write_text(new)
    assert {m.group(2) for m in BLOCK.finditer(text)} == set(blocks)
    assert new == text, "docs/console.md is stale: FOLDWATCH_UPDATE_DOCS=1 pytest " \
                        "tests/test_app_docs.py"
