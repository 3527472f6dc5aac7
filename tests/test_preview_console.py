"""The console's in-terminal preview: PPM decoding, half-block rendering, detail snapshot."""

from __future__ import annotations

import numpy as np
import pytest

from console.clients.tui.app import FoldwatchApp
from console.clients.tui.preview_files import load_previews, read_ppm
from console.clients.tui.widgets.preview import UPPER_HALF, PreviewPane, halfblock
from contracts.layout import Layout
from test_app_snapshots import _detail
from trainer.reporting.previews import GT_RGB, PRED_RGB, Preview, write_ppm, write_previews
from ui_engine import ScriptedEngine


def test_ppm_written_by_the_trainer_reads_back_exactly(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    thumb = read_ppm(write_ppm(rgb, tmp_path / "t.ppm"))
    assert (thumb.width, thumb.height) == (7, 5)
    assert all(thumb.pixel(x, y) == tuple(rgb[y, x]) for y in range(5) for x in range(7))
    (tmp_path / "bad.ppm").write_bytes(b"P6\n7 5\n255\n" + bytes(10))
    with pytest.raises(ValueError, match="truncated"):
        read_ppm(tmp_path / "bad.ppm")


def test_halfblock_puts_upper_pixel_in_fg_and_lower_in_bg(tmp_path):
    rgb = np.zeros((4, 2, 3), np.uint8)
    rgb[0], rgb[1], rgb[2], rgb[3] = GT_RGB, PRED_RGB, (10, 20, 30), (200, 100, 50)
    text = halfblock(read_ppm(write_ppm(rgb, tmp_path / "t.ppm")), 10, 10)
    assert text.plain == UPPER_HALF * 2 + "\n" + UPPER_HALF * 2
    styles = {sp.start: sp.style for sp in text.spans}
    styles = [styles[0], styles[3]]
    assert styles[0].color.triplet == GT_RGB and styles[0].bgcolor.triplet == PRED_RGB
    assert styles[1].color.triplet == (10, 20, 30) and styles[1].bgcolor.triplet == (200, 100, 50)
    small = halfblock(read_ppm(write_ppm(np.zeros((40, 80, 3), np.uint8), tmp_path / "b.ppm")),
                      20, 5)                                     # fits 20 columns, 5 rows
    lines = small.plain.split("\n")
    assert len(lines) <= 5 and max(map(len, lines)) <= 20


def _fake_previews(folder):
    """Two cases drawn by the trainer's own writer: a disc with a shifted prediction."""
    yy, xx = np.mgrid[:48, :48]
    items = []
    for i, (case, shift) in enumerate((("case_001", 3), ("case_004", 9))):
        truth = (((yy - 24) ** 2 + (xx - 22) ** 2) < 100).astype(np.int16)
        pred = (((yy - 24) ** 2 + (xx - 22 - shift) ** 2) < 100).astype(np.int16)
        image = (yy + xx).astype(np.float32) + 40 * truth
        items.append(Preview(case, "fixed" if i == 0 else "worst", image, truth, pred,
                             dice=0.9 - 0.3 * i, slice_index=12))
    write_previews(items, folder, 7, "epoch")


class PreviewEngine(ScriptedEngine):
    def __init__(self, root, **kw):
        super().__init__(**kw)
        for r in self.runs:    # the runs' folders, relative to `root` (the test's cwd)
            if r.kind == "fold":
                r.run_dir = f"exp/{r.configuration}/fold_{r.fold}"


def test_latest_previews_load_for_a_fold(tmp_path):
    lay = Layout(tmp_path)
    _fake_previews(lay.previews("2d", 0))
    heading, items = load_previews(lay.previews("2d", 0))
    assert heading == "epoch 7" and [i.case for i in items] == ["case_001", "case_004"]
    assert items[1].role == "worst" and items[1].thumb.width == 48


def test_detail_shows_preview_and_pages_cases(snap_compare, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)              # the folder shown stays the same in every run
    _fake_previews(Layout(tmp_path / "exp").previews("2d", 0))
    app = FoldwatchApp(PreviewEngine(tmp_path), title="foldwatch - demo", poll_interval=60)

    async def open_and_page(pilot):
        await _detail(pilot)
        pane = pilot.app.screen.query_one(PreviewPane)
        for _ in range(200):
            if pane.items:
                break
            await pilot.pause(0.05)
        await pilot.press("right_square_bracket")
        assert pane.items[pane.index].case == "case_004"
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(120, 36), run_before=open_and_page)
