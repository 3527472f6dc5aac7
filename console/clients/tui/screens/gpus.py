"""GPU detail (g): per GPU the model, gauges with the longer history, and every process on it
with its memory, owner and command (ours named by run)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from console.protocol.model import GpuView, Snapshot
from console.protocol.fmt import gigabytes, sparkline

WIDTH = 60


def squeeze(values: list[float], width: int) -> list[float]:
    """At most `width` points: means of equal runs of samples (the whole history shown)."""
    if len(values) <= width:
        return list(values)
    step = len(values) / width
    return [sum(chunk) / len(chunk) for chunk in
            (values[int(i * step):max(int(i * step) + 1, int((i + 1) * step))]
             for i in range(width))]


def gpu_block(g: GpuView) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(f"gpu{g.index}  {g.name or 'unknown model'}", style="bold")
    if g.lost:
        t.append("  LOST (fell off the bus or an Xid error): its runs are rescheduled\n",
                 style="bold red")
        return t
    if not g.selected:
        t.append("  (not used by this experiment)", style="dim")
    t.append("\n")
    util = "n/a" if g.util_pct is None else f"{g.util_pct:.0f}%"
    span = f"  (last {len(g.util_history)} samples)" if g.util_history else ""
    t.append(f"  util   {util:>5}  {sparkline(squeeze(g.util_history, WIDTH), WIDTH, top=100.0)}"
             f"{span}\n", style="green")
    used = "n/a" if g.mem_used_mb is None else f"{gigabytes(g.mem_used_mb)}/{gigabytes(g.mem_total_mb)}"
    t.append(f"  memory {used:>5}  {sparkline(squeeze(g.mem_history, WIDTH), WIDTH, top=100.0)}\n",
             style="cyan")
    temp = "n/a" if g.temp_c is None else f"{g.temp_c:.0f}°C"
    power = "n/a" if g.power_w is None else f"{g.power_w:.0f}W"
    limit = "" if g.power_limit_w is None else f" of {g.power_limit_w:.0f}W"
    t.append(f"  temperature {temp}  power {power}{limit}\n")
    if not g.processes:
        t.append("  no processes\n", style="dim")
    else:
        t.append(f"  {'pid':>8}  {'memory':>7}  {'run / user':<14}  command\n", style="bold")
    for p in g.processes:
        who = p.run_key or (p.user or "?")
        style = "" if p.run_key else "yellow"
        t.append(f"  {p.pid:>8}  {gigabytes(p.used_mb):>7}  {who:<14}  "
                 f"{p.command or ('foreign process' if not p.run_key else '')}\n", style=style)
    return t


def gpus_text(snap: Snapshot | None) -> Text:
    if snap is None:
        return Text("waiting for the engine…")
    if snap.cpu_mode or not snap.gpus:
        t = Text(f"CPU mode: {snap.cpu_slots} slots, no NVIDIA GPU")
        if snap.nvml_message:
            t.append(f" ({snap.nvml_message})")
        return t
    out = Text("\n").join(gpu_block(g) for g in snap.gpus)
    if snap.nvml_message:
        out.append(f"\n{snap.nvml_message}", style="yellow")
    if snap.nvml_problems:        # logged once each; here so nobody has to read the log
        out.append("\nNVML calls that failed (shown as n/a):\n", style="bold")
        out.append("\n".join(f"  {p}" for p in snap.nvml_problems), style="yellow")
    return out


class GpuScreen(Screen):
    BINDINGS = [Binding("escape,q,g", "app.pop_screen", "Back", id="back")]

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="≡")
        with VerticalScroll(id="results-box"):
            yield Static(id="gpu-text")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "GPUs"
        self.refresh_data()

    def refresh_data(self) -> None:
        self.query_one("#gpu-text", Static).update(gpus_text(self.app.snapshot))
