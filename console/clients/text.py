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


def score_table(rows: list[tuple[ScoreView, bool]], classes: list[str], width: int,
                name_w: int = 8) -> list[str]:
    """Score rows (name, fg Dice, Dice per class) under a header, the chosen one marked `*` in
    its indent. Every column is as wide as its class name, never cut; when the classes do not
    fit in `width`, they go on in further blocks under their own headers, names repeated."""
    name_w = max([len(sv.name) for sv, _ in rows] + [name_w])
    col_w = {c: max(len(c), 5) for c in classes}
    blocks: list[list[str]] = [[]]
    used = 2 + name_w + 2 + 7
    for c in classes:
        if blocks[-1] and used + 2 + col_w[c] > width:
            blocks.append([])
            used = 2 + name_w
        blocks[-1].append(c)
        used += 2 + col_w[c]
    out = []
    for i, block in enumerate(blocks):
        fg = i == 0
        out.append((f"  {'':{name_w}}" + (f"  {'fg Dice':>7}" if fg else "")
                    + "".join(f"  {c:>{col_w[c]}}" for c in block)).rstrip())
        for sv, chosen in rows:
            out.append(("* " if chosen else "  ") + f"{sv.name:{name_w}}"
                       + (f"  {_f(sv.foreground_dice):>7}" if fg else "")
                       + "".join(f"  {_f(sv.per_class.get(c)):>{col_w[c]}}" for c in block))
    return out


def results_lines(rv: ResultsView, width: int = 80) -> list[str]:
    """The Results view as text (the console's Results screen and `foldwatch status`); its
    tables fit in `width` columns where they can, class names whole."""
    out = [f"Results in {rv.root}"]
    if rv.empty:
        return out + ["  no results yet (cross-validation, find-best and predict write them)"]
    classes: list[str] = []
    scores = [*rv.configurations, *rv.ensembles, *([rv.test] if rv.test else [])]
    for sv in scores:
        classes += [c for c in sv.per_class if c not in classes]
    name_w = max([len(sv.name) for sv in scores] + [8])    # the tables line up
    chosen = "+".join(rv.chosen) if rv.chosen else None

    def mark(sv: ScoreView) -> bool:
        return sv.name == chosen
    if rv.configurations:
        out.append("Cross-validation (every fold's validation cases, per configuration)")
        out += score_table([(s, mark(s)) for s in rv.configurations], classes, width,
                           name_w)
    if rv.ensembles:
        out.append("Ensembles")
        out += score_table([(s, mark(s)) for s in rv.ensembles], classes, width, name_w)
    if rv.chosen:
        mark = "; * above" if chosen in {s.name for s in [*rv.configurations, *rv.ensembles]} \
            else ""
        out.append(f"Chosen model: {' + '.join(rv.chosen)} (fg Dice {_f(rv.chosen_dice)}{mark})")
    if rv.postprocessing:
        before, after = rv.postprocessing_dice or (None, None)
        out.append(f"Postprocessing: {rv.postprocessing} "
                   f"(fg Dice {_f(before)} -> {_f(after)})")
    if rv.predicted_cases:
        out.append(f"Test set: {rv.predicted_cases} cases predicted"
                   + (f", {rv.test.cases} evaluated against their labels"
                      if rv.test and rv.test.cases is not None else ""))
        if rv.test:
            out += score_table([(rv.test, False)], classes, width, name_w)
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
    """The line (two at 80 columns) under the runs table once a stage has produced something
    ('' before): the figures first, the postprocessing words last, where a cut costs least."""
    rv = snap.results
    if rv is None or rv.empty:
        return ""
    parts = []
    if rv.configurations:
        parts.append("crossval " + ", ".join(f"{s.name} {_f(s.foreground_dice)}"
                                             for s in rv.configurations))
    if rv.chosen:
        parts.append(f"chosen {'+'.join(rv.chosen)} {_f(rv.chosen_dice)}")
    if rv.predicted_cases:
        parts.append(f"test {_f(rv.test.foreground_dice)} ({rv.predicted_cases} cases)"
                     if rv.test else f"test {rv.predicted_cases} cases predicted")
    if rv.postprocessing:
        parts.append(f"postprocessing: {rv.postprocessing}")
    return "Results (v): " + " · ".join(parts)


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
