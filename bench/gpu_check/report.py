"""The results: one JSON file per step while it runs, and the whole report (gpu-check.json,
gpu-check.md and the logs packed beside them) rewritten after every step."""

from __future__ import annotations

import json
import os
import tarfile
import time
from pathlib import Path

from .groups import TITLES


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def blank(name: str, status: str = "running", why: str | None = None) -> dict:
    """A step's record before (or without) any result."""
    return {"name": name, "title": TITLES[name], "status": status, "why": why, "wall_s": 0,
            "figures": [], "checks": [], "facts": [], "notes": []}


def read_step(folder: Path, name: str) -> dict:
    """What a step saved of itself, or a blank record when it saved nothing."""
    path = folder / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return blank(name)


def write_step(folder: Path, d: dict) -> None:
    atomic_write(folder / f"{d['name']}.json", json.dumps(d, indent=1, default=str))


class Step:
    """One step's result, saved after every change (a killed step keeps what it measured)."""

    def __init__(self, name: str, folder: Path) -> None:
        self.folder = folder
        self.d = blank(name)
        self.t0 = time.monotonic()
        self.save()

    @property
    def running(self) -> bool:
        return self.d["status"] == "running"

    def save(self) -> None:
        self.d["wall_s"] = round(time.monotonic() - self.t0, 1)
        write_step(self.folder, self.d)

    def figure(self, name: str, value, unit: str, method: str) -> None:
        if isinstance(value, float):
            value = float(f"{value:.4g}")
        self.d["figures"].append({"name": name, "value": value, "unit": unit, "method": method})
        self.save()

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.d["checks"].append({"name": name, "pass": bool(ok), "detail": detail})
        self.save()
        return bool(ok)

    def fact(self, name: str, value, source: str) -> None:
        self.d["facts"].append({"name": name, "value": value, "source": source})
        self.save()

    def note(self, text: str) -> None:
        self.d["notes"].append(text)
        self.save()

    def finish(self, status: str = "ok", why: str | None = None) -> None:
        failed = [c["name"] for c in self.d["checks"] if not c["pass"]]
        if status == "ok" and failed:
            status, why = "failed", "check failed: " + "; ".join(failed)
        self.d["status"], self.d["why"] = status, why
        self.save()


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: dict) -> str:
    """The short report: a table of the steps, then each step's figures, checks and notes."""
    L = [f"# foldwatch GPU check ({report['mode']})", ""]
    m = report["machine"]
    L.append(f"{report['started']}, {m.get('gpu') or 'no GPU'}, {m.get('cores')} cores; "
             f"budget {report['budget_s']} s, took {report.get('elapsed_s', '?')} s.")
    if report.get("mode_reason"):
        L.append(f"Mode: {report['mode_reason']}.")
    if report.get("install_s") is not None:
        L.append(f"Missing packages installed from the carried wheels in {report['install_s']} s.")
    L += ["", "| step | status | s | why |", "|---|---|---:|---|"]
    for s in report["steps"]:
        L.append(f"| {s['name']} | {s['status']} | {s.get('wall_s') or ''} | "
                 f"{_cell(s.get('why') or '')} |")
    for s in report["steps"]:
        L += ["", f"## {s['name']}: {s['title']}", "", f"**{s['status']}**"
              + (f": {s['why']}" if s.get("why") else "")]
        if s.get("facts"):
            L += [""] + [f"- {f['name']}: {f['value']} ({f['source']})" for f in s["facts"]]
        if s.get("figures"):
            L += ["", "| figure | value | unit | how measured |", "|---|---:|---|---|"]
            L += ["| " + " | ".join(_cell(f[k]) for k in ("name", "value", "unit", "method")) + " |"
                  for f in s["figures"]]
        if s.get("checks"):
            L += [""] + [f"- [{'x' if c['pass'] else ' '}] {c['name']}"
                         + (f": {c['detail']}" if c.get("detail") else "") for c in s["checks"]]
        if s.get("notes"):
            L += [""] + [f"> {n}" for n in s["notes"]]
    return "\n".join(L) + "\n"


def write_report(report: dict, out: Path, work: Path) -> None:
    atomic_write(out / "gpu-check.json", json.dumps(report, indent=1, default=str))
    atomic_write(out / "gpu-check.md", render_markdown(report))
    try:
        pack_logs(work, out / "gpu-check-logs.tar.gz")
    except OSError as e:
        print(f"logs not packed: {e}", flush=True)


def pack_logs(work: Path, target: Path, limit: int = 8 * 2**20) -> None:
    """The steps' and the runs' logs in one archive beside the report (a failure's whole
    story comes back from a machine that is gone by the time anyone reads it)."""
    tmp = target.with_name(target.name + ".tmp")
    total = 0
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(work.rglob("*.log")):
            size = path.stat().st_size
            if total + size > limit:
                continue
            total += size
            tar.add(path, arcname=str(path.relative_to(work)))
    os.replace(tmp, target)
