"""The runs table for `foldwatch status` and the headless summary (rich), and its JSON form."""

from __future__ import annotations

import dataclasses
import time

from console.model import Snapshot

STATE_STYLE = {"queued": "dim", "starting": "cyan", "running": "green", "stalled": "yellow",
               "backoff": "yellow", "waiting": "yellow", "completed": "bold green", "failed": "bold red",
               "stopped": "magenta"}


def _f(v, fmt="{:.3f}") -> str:
    return "-" if v is None else fmt.format(v)


def _dur(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def runs_table(snap: Snapshot, title: str | None = None):
    from rich.table import Table
    t = Table(title=title, expand=False, pad_edge=False)
    for col in ("run", "state", "device", "epoch", "it/s", "loss", "dice", "best", "ETA",
                "restarts", "last", "note"):
        t.add_column(col, no_wrap=col != "note", overflow="fold")
    for r in snap.runs:
        if r.kind == "fold":
            ep = f"{r.epoch or 0}/{r.epochs}" if r.epochs else "-"
        else:
            ep = f"{r.progress[0]}/{r.progress[1]}" if r.progress else "-"
        t.add_row(r.label, f"[{STATE_STYLE.get(r.state, '')}]{r.state}[/]", r.device or "-", ep,
                  _f(r.samples_per_s, "{:.1f}"), _f(r.train_loss), _f(r.val_dice), _f(r.best_dice),
                  _dur(r.eta_s), str(r.restarts), _dur(r.last_event_age_s),
                  (r.message or "")[:80])
    return t


def gpu_lines(snap: Snapshot) -> list[str]:
    if snap.cluster is not None:              # Slurm: the partition, not this machine's GPUs
        from console.cluster import cluster_lines
        return cluster_lines(snap.cluster)
    if snap.cpu_mode or not snap.gpus:
        return [f"CPU mode: {snap.cpu_slots} slots" + (f" ({snap.nvml_message})"
                                                       if snap.nvml_message else "")]
    out = []
    for g in snap.gpus:
        if g.lost:
            out.append(f"gpu{g.index}: LOST")
            continue
        mem = ("n/a" if g.mem_used_mb is None else
               f"{g.mem_used_mb / 1024:.1f}/{(g.mem_total_mb or 0) / 1024:.1f} GiB")
        ours = [p.run_key for p in g.processes if p.run_key]
        foreign = [p.pid for p in g.processes if not p.run_key]
        out.append(f"gpu{g.index} {g.name or 'n/a'}: util {_f(g.util_pct, '{:.0f}%')} mem {mem} "
                   f"temp {_f(g.temp_c, '{:.0f}C')} power {_f(g.power_w, '{:.0f}W')}"
                   + (f" runs {', '.join(ours)}" if ours else "")
                   + (f" foreign pids {foreign}" if foreign else "")
                   + ("" if g.selected else " (not selected)"))
    return out


def snapshot_json(snap: Snapshot) -> dict:
    """Strict-JSON-ready dict of a snapshot (for `foldwatch status --json`)."""
    data = dataclasses.asdict(snap)
    data["wall_time"] = time.time()
    return data
