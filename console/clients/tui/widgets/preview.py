"""The latest prediction preview inside the terminal: two pixels per cell with '▀'.

The upper pixel is the foreground colour and the lower one the background colour of an
upper-half-block character: truecolor works in tmux over SSH (and Rich downgrades it on
256-colour terminals), no graphics protocol needed. `[` / `]` page through the cases.
"""

from __future__ import annotations

from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual import work
from textual.widget import Widget

from console.clients.tui.preview_files import PreviewItem, Thumb, load_previews, previews_dir

UPPER_HALF = "▀"


def _vivid(thumb: Thumb, x0: int, x1: int, y0: int, y1: int) -> tuple[int, int, int]:
    """The block's most saturated pixel: a thin outline survives the downscale, grey does not
    win over it; an all-grey block gives its first pixel."""
    best, best_sat = thumb.pixel(x0, y0), -1
    for y in range(y0, max(y1, y0 + 1)):
        for x in range(x0, max(x1, x0 + 1)):
            p = thumb.pixel(x, y)
            sat = max(p) - min(p)
            if sat > best_sat:
                best, best_sat = p, sat
    return best


def halfblock(thumb: Thumb, max_cols: int, max_rows: int) -> Text:
    """The thumbnail scaled (aspect kept, outlines kept) into max_cols x max_rows cells."""
    f = min(max_cols / thumb.width, 2 * max_rows / thumb.height, 1.0)
    w, h = max(1, int(thumb.width * f)), max(2, int(thumb.height * f) // 2 * 2)
    xs = [min(thumb.width - 1, int(x / f)) for x in range(w + 1)]
    ys = [min(thumb.height - 1, int(y / f)) for y in range(h + 1)]
    xs[-1], ys[-1] = thumb.width, thumb.height
    out = Text(no_wrap=True, overflow="crop")
    styles: dict[tuple, Style] = {}
    for r in range(0, h, 2):
        for c in range(w):
            top = _vivid(thumb, xs[c], xs[c + 1], ys[r], ys[r + 1])
            bottom = _vivid(thumb, xs[c], xs[c + 1], ys[r + 1], ys[r + 2])
            style = styles.get((top, bottom))
            if style is None:
                style = styles[(top, bottom)] = Style(color=Color.from_rgb(*top),
                                                      bgcolor=Color.from_rgb(*bottom))
            out.append(UPPER_HALF, style)
        if r + 2 < h:
            out.append("\n")
    return out


def caption(heading: str, item: PreviewItem, index: int, count: int) -> Text:
    d = "-" if item.dice is None else f"{item.dice:.3f}"
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(item.case, style="bold")
    t.append(f"  {item.role}  Dice {d}\n{heading}  case {index + 1}/{count}  [ ] page\n")
    t.append("■", style="rgb(0,230,0)")
    t.append(" truth ")
    t.append("■", style="rgb(255,40,40)")
    t.append(" prediction ")
    t.append("■", style="rgb(255,230,0)")
    t.append(" both")
    return t


class PreviewPane(Widget):
    """Re-reads the run's previews every few seconds off the event loop."""

    DEFAULT_CSS = "PreviewPane { width: 36; height: 1fr; padding: 0 1; }"
    RELOAD_S = 3.0

    def __init__(self, key: str, **kw) -> None:
        super().__init__(**kw)
        self.key = key
        self.heading = ""
        self.items: list[PreviewItem] = []
        self.index = 0

    def on_mount(self) -> None:
        self.display = False             # no room taken until there is something to show
        self.reload()
        self.set_interval(self.RELOAD_S, self.reload)

    def reload(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def _load(self) -> None:
        snap = self.app.snapshot
        run = next((r for r in snap.runs if r.key == self.key), None) if snap else None
        folder = previews_dir(run, snap.results if snap else None)
        heading, items = load_previews(folder)
        self.app.call_from_thread(self._show, heading, items)

    def _show(self, heading: str, items: list[PreviewItem]) -> None:
        if (heading, items) == (self.heading, self.items):
            return
        current = self.items[self.index].case if self.items else None
        had = bool(self.items)
        self.heading, self.items = heading, items
        cases = [i.case for i in items]
        self.index = cases.index(current) if current in cases else 0
        self.display = bool(items)
        if had != bool(items):
            self.screen.refresh_bindings()      # the paging keys appear in the footer
        self.refresh()

    def page(self, step: int) -> None:
        if self.items:
            self.index = (self.index + step) % len(self.items)
            self.refresh()

    def render(self) -> Text:
        if not self.items:
            return Text("Preview\n", style="bold") + Text("no previews yet", style="dim")
        item = self.items[self.index]
        text = caption(self.heading, item, self.index, len(self.items))
        if item.thumb is None:
            return text + Text("\n(thumbnail missing)", style="dim")
        rows = max(1, self.size.height - 3)          # below the three caption lines
        cols = max(1, self.size.width)
        return text + Text("\n") + halfblock(item.thumb, cols, rows)
