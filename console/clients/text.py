"""The runs table for `foldwatch status` and the headless summary (rich), and its JSON form."""

from __future__ import annotations

import dataclasses
import time

from rich.markup import escape

from console.protocol.model import ResultsView, ScoreView, Snapshot
from console.protocol.vocabulary import COLUMNS, STATE_STYLE, cells



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


def results_lines(rv: ResultsView) -> list[str]:
    """The Results view as text (the console's Results screen and `foldwatch status`)."""
    out = [f"Results in {rv.root}"]
    if rv.empty:
        return out + ["  no results yet (cross-validation, find-best and predict write them)"]
    classes: list[str] = []
    for sv in [*rv.configurations, *rv.ensembles, *([rv.test] if rv.test else [])]:
        classes += [c for c in sv.per_class if c not in classes]
    width = max([len(s.name) for s in [*rv.configurations, *rv.ensembles]] + [10])
    head = f"  {'':{width}}  {'fg Dice':>7}" + "".join(f"  {c[:10]:>10}" for c in classes)

    def row(sv: ScoreView, mark: str = "") -> str:
        return (f"  {sv.name:{width}}  {_f(sv.foreground_dice):>7}"
                + "".join(f"  {_f(sv.per_class.get(c)):>10}" for c in classes)
                + (f"  {mark}" if mark else ""))
    chosen = "+".join(rv.chosen) if rv.chosen else None
    if rv.configurations:
        out += ["Cross-validation (every fold's validation cases, per configuration)", head]
        out += [row(s, "<- chosen" if s.name == chosen else "") for s in rv.configurations]
    if rv.ensembles:
        out += ["Ensembles"]
        out += [row(s, "<- chosen" if s.name == chosen else "") for s in rv.ensembles]
    if rv.chosen:
        out.append(f"Chosen model: {' + '.join(rv.chosen)} (fg Dice {_f(rv.chosen_dice)})")
    if rv.postprocessing:
        before, after = rv.postprocessing_dice or (None, None)
        out.append(f"Postprocessing: {rv.postprocessing} "
                   f"(fg Dice {_f(before)} -> {_f(after)})")
    if rv.predicted_cases:
        out.append(f"Test set: {rv.predicted_cases} cases predicted")
        if rv.test:
            out += [f"  {'':{width}}  {'fg Dice':>7}" + "".join(f"  {c[:10]:>10}" for c in classes),
                    row(rv.test)]
    out.append("Files")
    for label, path in (*((f"cross-validation {s.name}", s.path) for s in rv.configurations),
                        *((f"ensemble {s.name}", s.path) for s in rv.ensembles),
                        ("best configuration", rv.best_path), ("postprocessing", rv.postprocessing_path),
                        ("how to predict", rv.how_to_predict), ("predictions", rv.predictions_dir),
                        ("test summary", rv.test.path if rv.test else None)):
        if path:
            out.append(f"  {label}: {path}")
    return out


def results_bar(snap) -> str:
    """One line under the runs table once a stage has produced something ('' before)."""
    rv = snap.results
    if rv is None or rv.empty:
        return ""
    parts = []
    if rv.configurations:
        parts.append("crossval " + ", ".join(f"{s.name} {_f(s.foreground_dice)}"
                                             for s in rv.configurations))
    if rv.chosen:
        parts.append(f"chosen {' + '.join(rv.chosen)} {_f(rv.chosen_dice)}")
    if rv.postprocessing:
        parts.append(f"postprocessing: {rv.postprocessing}")
    if rv.predicted_cases:
        parts.append(f"test {rv.predicted_cases} cases"
                     + (f" {_f(rv.test.foreground_dice)}" if rv.test else ""))
    return "Results: " + " · ".join(parts) + " · v: details"


def supervisors_table(rows: list[dict]):
    """`foldwatch ls`: one row per experiment supervised on this host."""
    from rich.table import Table
    from console.protocol.fmt import duration
    t = Table(title="experiments supervised on this host", pad_edge=False)
    for header in ("experiment", "supervisor", "pid", "uptime", "running", "queued", "failed",
                   "done", "finished", "file"):
        t.add_column(header, no_wrap=header != "file", overflow="fold")
    for r in rows:
        t.add_row(escape(str(r["experiment"])), r["supervisor"], str(r["pid"] or "-"),
                  duration(r["uptime_s"]), str(r["running"]), str(r["queued"]),
                  str(r["failed"]), f"{r['completed']}/{r['runs']}",
                  "yes" if r["finished"] else "no", escape(str(r["file"])))
    if not rows:
        t.caption = "none: `foldwatch up EXP` starts one"
    return t


def cluster_lines(cluster: dict) -> list[str]:
    """The cluster header: partition, free GPUs and CPUs, and the last Slurm error."""
    def n(v):
        return "?" if v is None else str(v)
    line = (f"Slurm partition {cluster.get('partition')}: GPUs {n(cluster.get('gpus_free'))}/"
            f"{n(cluster.get('gpus_total'))} free, CPUs {n(cluster.get('cpus_idle'))}/"
            f"{n(cluster.get('cpus_total'))} idle, nodes {n(cluster.get('nodes_up'))}/"
            f"{n(cluster.get('nodes'))} up")
    out = [line]
    if cluster.get("error"):
        out.append(f"Slurm: {cluster['error']}")
    return out
