"""The runs table for `foldwatch status` and the headless summary (rich), and its JSON form."""

from __future__ import annotations

import dataclasses
import time

from rich.markup import escape

from console.protocol.model import Snapshot
from console.protocol.vocabulary import COLUMNS, cells

STATE_STYLE = {"queued": "dim", "starting": "cyan", "running": "green", "stalled": "yellow",
               "backoff": "yellow", "waiting": "yellow", "completed": "bold green", "failed": "bold red",
               "stopped": "magenta"}


def _f(v, fmt="{:.3f}") -> str:
    return "-" if v is None else fmt.format(v)


def runs_table(snap: Snapshot, title: str | None = None):
    """The same columns, names and figures as the console's table (console.protocol.vocabulary)."""
    from rich.table import Table
    t = Table(title=title, expand=False, pad_edge=False)
    # One "run" column (2d/0, crossval-2d: greppable, what --run takes) for Config + Fold/stage.
    cols = [(k, h) for k, h, _ in COLUMNS if k not in ("config", "fold")]
    t.add_column("run", no_wrap=True)
    for key, header in cols:
        t.add_column(header, no_wrap=key != "note", overflow="fold")
    for r in snap.runs:
        c = cells(r)
        c["state"] = f"[{STATE_STYLE.get(r.state, '')}]{r.state}[/]"
        t.add_row(escape(r.key), *(c[k] if k == "state" else escape(c[k]) for k, _ in cols))
    return t


def gpu_lines(snap: Snapshot) -> list[str]:
    if snap.cluster is not None:              # Slurm: the partition, not this machine's GPUs
        from console.backends.select import cluster_lines
        return cluster_lines(snap.cluster)
    if snap.cpu_mode or not snap.gpus:
        why = (snap.nvml_message or "").removesuffix(": CPU mode")
        return [f"CPU mode: {snap.cpu_slots} slots" + (f" ({why})" if why else "")]
    out = []
    for g in snap.gpus:
        if g.lost:
            out.append(f"gpu{g.index}: LOST")
            continue
        mem = ("n/a" if g.mem_used_mb is None else
               f"{g.mem_used_mb / 1024:.1f}/{(g.mem_total_mb or 0) / 1024:.1f} GiB")
        ours = [f"{p.run_key} {_f(p.used_mb and p.used_mb / 1024, '{:.1f}G')}"
                for p in g.processes if p.run_key]
        foreign = [f"{p.pid} {p.user or '?'} {_f(p.used_mb and p.used_mb / 1024, '{:.1f}G')}"
                   f" {p.command or ''}".rstrip() for p in g.processes if not p.run_key]
        out.append(f"gpu{g.index} {g.name or 'n/a'}: util {_f(g.util_pct, '{:.0f}%')} mem {mem} "
                   f"temp {_f(g.temp_c, '{:.0f}C')} power {_f(g.power_w, '{:.0f}W')}"
                   + (f" runs {', '.join(ours)}" if ours else "")
                   + (f" foreign: {'; '.join(foreign)}" if foreign else "")
                   + ("" if g.selected else " (not selected)"))
    return out


def snapshot_json(snap: Snapshot) -> dict:
    """Strict-JSON-ready dict of a snapshot (for `foldwatch status --json`)."""
    data = dataclasses.asdict(snap)
    data["wall_time"] = time.time()
    # the run fields' meaning, in the console's words (val_dice, ema_dice, best_dice = best EMA)
    data["columns"] = {k: {"header": h, "definition": d} for k, h, d in COLUMNS}
    return data
