"""Short, fixed-width text for table cells and panels (no clocks: callers pass ages)."""

from __future__ import annotations

SPARKS = "▁▂▃▄▅▆▇█"


def num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def duration(seconds: float | None) -> str:
    """3s, 4m05s, 2h10m; '-' when unknown."""
    if seconds is None:
        return "-"
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def seconds(value: float | None) -> str:
    """An epoch time: 0.4s, 9.8s below ten seconds (short epochs must not read 0s), else as
    duration()."""
    if value is None:
        return "-"
    return f"{value:.1f}s" if value < 10 else duration(value)


def bar(fraction: float | None, width: int) -> str:
    """A text gauge like ████▌░░░ ('?' filled when unknown)."""
    if fraction is None:
        return "?" * width
    fraction = min(1.0, max(0.0, fraction))
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (" ▏▎▍▌▋▊▉"[part] if part and full < width else "")
    return text + "░" * (width - len(text))


def sparkline(values: list[float], width: int, top: float | None = None) -> str:
    """The last `width` values as block characters, scaled to `top` (default: their max)."""
    values = values[-width:]
    if not values:
        return " " * width
    hi = top if top else max(values) or 1.0
    chars = [SPARKS[min(7, max(0, int(v / hi * 7.999)))] for v in values]
    return "".join(chars).rjust(width)


def gigabytes(mb: float | None) -> str:
    return "n/a" if mb is None else f"{mb / 1024:.1f}G"
