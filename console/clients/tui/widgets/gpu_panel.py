"""The GPU panel: one line per GPU (gauges, history, temperature, power, processes)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from console.protocol.model import GpuView, Snapshot
from console.protocol.fmt import bar, gigabytes, sparkline


def gpu_line(g: GpuView, model: bool = True) -> Text:
    """`gpu0 ███▎░  45% ▂▅▇ ██░░░ 12.0/80G ▃▅ 63°C 210W 2d/0 foreign:991(2.0G)`"""
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(f"gpu{g.index} ", style="bold")
    if model:                     # at 80 columns the model is in the GPU detail (g) only
        t.append(f"{short_model(g.name)} ", style="dim")
    if g.lost:
        t.append("LOST", style="bold red")
        t.append(f" {g.name} -" if g.name else "")
        t.append(" its runs are rescheduled elsewhere")
        return t
    if not g.selected:
        t.append("(not used) ", style="dim")
    util = g.util_pct
    t.append(bar(None if util is None else util / 100, 5), style="green")
    t.append("  n/a " if util is None else f"{util:4.0f}% ")
    t.append(sparkline(g.util_history, 6, top=100.0), style="green")
    frac = (g.mem_used_mb / g.mem_total_mb
            if g.mem_used_mb is not None and g.mem_total_mb else None)
    t.append(" ")
    t.append(bar(frac, 5), style="cyan")
    total = "n/a" if g.mem_total_mb is None else f"{g.mem_total_mb / 1024:.0f}G"
    used = "n/a" if g.mem_used_mb is None else f"{g.mem_used_mb / 1024:.1f}"
    t.append(f" {used}/{total} ")
    t.append(sparkline(g.mem_history, 6, top=g.mem_total_mb), style="cyan")
    t.append(" n/a" if g.temp_c is None else f" {g.temp_c:.0f}°C")
    t.append(" n/a" if g.power_w is None else f" {g.power_w:.0f}W")
    ours = [p for p in g.processes if p.run_key]
    foreign = [p for p in g.processes if not p.run_key]
    if ours:
        t.append(" " + " ".join(f"{p.run_key}({gigabytes(p.used_mb)})" for p in ours))
    if foreign:
        t.append(" foreign:", style="yellow")
        t.append(" ".join(f"{p.user + ':' if p.user else ''}{p.pid}({gigabytes(p.used_mb)})"
                          for p in foreign), style="yellow")
    return t


def short_model(name: str | None) -> str:
    """'NVIDIA A100-SXM4-80GB' -> 'A100-SXM4-80GB', at most 14 characters."""
    if not name:
        return "?"
    for prefix in ("NVIDIA ", "Tesla ", "GeForce "):
        name = name.removeprefix(prefix)
    return name[:14]


def panel_text(snap: Snapshot, width: int = 160) -> Text:
    if snap.cluster is not None:              # Slurm: the partition view replaces NVML gauges
        from console.clients.text import cluster_lines
        lines = cluster_lines(snap.cluster)
        text = Text(lines[0], style="bold")
        for extra in lines[1:]:
            text.append(f"\n{extra}", style="yellow")
        return text
    if snap.cpu_mode or not snap.gpus:
        busy = sum(1 for r in snap.runs if r.device and r.device.startswith("cpu")
                   and r.state in ("starting", "running", "stalled"))
        line = Text(f"CPU mode: {snap.cpu_slots} slots ({busy} busy)", style="bold")
        if snap.nvml_message:         # "CPU mode" is said once
            why = snap.nvml_message.removesuffix(": CPU mode").removesuffix("; CPU mode")
            line.append(f"  {why}", style="dim")
        return line
    text = Text("\n").join(gpu_line(g, model=width >= 110) for g in snap.gpus)
    if snap.nvml_message:
        text.append(f"\n{snap.nvml_message}", style="yellow")
    text.no_wrap, text.overflow = True, "ellipsis"     # one line per GPU, even at 80 columns
    return text


class GpuPanel(Static):
    """Rebuilt from each snapshot and on a resize (the model shows from 110 columns); a
    Static renders one Text, cheap at 2 Hz."""

    _snap: Snapshot | None = None

    def show(self, snap: Snapshot) -> None:
        self._snap = snap
        self.update(panel_text(snap, self.app.size.width))

    def on_resize(self) -> None:
        if self._snap is not None:
            self.update(panel_text(self._snap, self.app.size.width))
