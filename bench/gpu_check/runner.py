"""The budget: each group of steps in a child process of its own (its own session), started
while the overall budget has time for it, killed at its own time limit; the report rewritten
after every group, and what a group left running ended before the next one starts."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

from .context import ROOT, Ctx, StepError, child_env, fw, killpg, tail
from .groups import BY_NAME, GROUPS, Group
from .report import blank, read_step, write_report, write_step


class Runner:
    """Runs the wanted groups within `budget` s from `t_start` (time.monotonic())."""

    def __init__(self, report: dict, state: dict, wanted: set[str], out: Path, *,
                 budget: float, t_start: float, parallel: int) -> None:
        self.report, self.state, self.wanted, self.out = report, state, wanted, out
        self.work = Path(state["work"])
        self.folder = self.work / "steps"
        self.budget, self.t_start, self.parallel = budget, t_start, parallel
        self.gpu = state["mode"] == "gpu"
        self.results: dict[str, list[dict]] = {}
        self.failed = False

    def run(self) -> bool:
        """Every group, in order; True when no step failed. On a GPU one at a time (their
        figures are timings); in the dry run `parallel` at once, whose figures are not; a
        group that reads the dataset starts once the dataset group has ended."""
        queue, running = list(GROUPS), []
        while queue or running:
            while queue and len(running) < self.parallel:
                group = queue[0]
                if group.needs_data and any(r["group"].name == "dataset" for r in running):
                    break
                queue.pop(0)
                started = self._start(group)
                if started is not None:
                    running.append(started)
                self.save()
            time.sleep(0.2)
            for run in list(running):
                end = None
                if run["child"].poll() is None:
                    if time.monotonic() - run["t0"] < run["cap"]:
                        continue
                    killpg(run["child"].pid)
                    run["child"].wait()
                    end = f"timed out after {run['cap']:.0f} s (its time limit)"
                running.remove(run)
                self._collect(run, end)
        self.save()
        return not self.failed

    def save(self) -> None:
        self.report["steps"] = [d for g in GROUPS for d in self.results.get(g.name, [])]
        self.report["elapsed_s"] = round(time.monotonic() - self.t_start, 1)
        write_report(self.report, self.out, self.work)

    def _start(self, group: Group) -> dict | None:
        left = self.budget - (time.monotonic() - self.t_start) - 5
        cap = min(group.cap(self.gpu), left)
        why = None
        if group.name not in self.wanted:
            why = "not selected (--steps)"
        elif cap < group.least:
            why = (f"budget: {max(left, 0):.0f} s left of {self.budget:.0f} s, this step needs "
                   f"about {group.least:.0f} s or more; run it alone: --steps {group.name}")
        if why:
            self.results[group.name] = [blank(n, "skipped", why) for n in group.steps]
            return None
        state = dict(self.state, deadline=time.time() + cap - 3)
        state_path = self.work / f"state-{group.name}.json"
        state_path.write_text(json.dumps(state))
        self.results[group.name] = [blank(n) for n in group.steps]
        with open(self.folder / f"{group.name}.log", "ab") as log:
            child = subprocess.Popen([sys.executable, "-m", __package__, "--run-group",
                                      group.name, "--state", str(state_path)], cwd=ROOT,
                                     stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return {"group": group, "child": child, "t0": time.monotonic(), "since": time.time(),
                "cap": cap}

    def _collect(self, run: dict, end: str | None) -> None:
        """The group's step results (a killed or crashed group's steps: failed, saying so)."""
        group, child = run["group"], run["child"]
        if end or child.returncode:
            self._put_down(group)
        left_over = cleanup(self.work / group.folder, run["since"])
        log_tail = tail((self.folder / f"{group.name}.log").read_text(errors="replace"))
        steps = []
        for n in group.steps:
            d = read_step(self.folder, n)
            if d.get("status") in (None, "running"):
                d["status"], d["why"] = "failed", end or (
                    f"ended (exit {child.returncode}) without a result: {log_tail}")
            if left_over:
                d["notes"].append(f"{len(left_over)} leftover processes ended after the step")
            d["wall_s"] = d.get("wall_s") or round(time.monotonic() - run["t0"], 1)
            steps.append(d)
            self.failed |= d["status"] == "failed"
            print(f"[{time.monotonic() - self.t_start:5.0f}s] {n}: {d['status']}"
                  + (f": {d['why']}" if d.get("why") else ""), flush=True)
        self.results[group.name] = steps
        self.save()


    def _put_down(self, group: Group) -> None:
        """A group killed or crashed before its steps ended their supervision: `foldwatch
        down` on its experiments, so that no later command starts their supervisors again."""
        env = child_env(self.state)
        for exp in sorted((self.work / group.folder).glob("*.yaml")):
            try:
                subprocess.run(fw("down", exp), cwd=ROOT, env=env, capture_output=True,
                               timeout=30)
            except subprocess.TimeoutExpired:
                pass


def run_group(name: str, state: dict) -> None:
    """In the child process: one group of steps, within its deadline."""
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")     # torch's indices = NVML's
    group = BY_NAME[name]
    folder = Path(state["work"]) / "steps"
    ctx = Ctx(state, folder, time.monotonic() + state["deadline"] - time.time())
    module, function = group.entry.split(":")
    try:
        if group.needs_data:
            ctx.need_data()
        getattr(importlib.import_module(f"{__package__}.{module}"), function)(ctx)
    except Exception as e:       # StepError: a reason for people; anything else: a bug to see
        why = str(e) if isinstance(e, StepError) else tail(traceback.format_exc(), 4)
        for n in group.steps:
            d = read_step(folder, n)
            if d.get("status") in (None, "running"):
                d.update(status="failed", why=why)
                write_step(folder, d)
        raise SystemExit(1)


def cleanup(folder: Path, since: float, grace: float = 5.0) -> list[int]:
    """Our leftovers, killed: processes started by this run whose command line or environment
    names the group's folder (supervisors, trainers, data workers, nnU-Net's workers, the
    foreign process) and that are still there after `grace` s (one that is exiting is not
    a leftover)."""
    import psutil
    me = psutil.Process()
    spared = {me.pid} | {p.pid for p in me.parents()}
    marker, victims = str(folder), []
    for p in psutil.process_iter(["pid", "cmdline", "create_time"]):
        try:
            if p.pid in spared or p.info["create_time"] < since - 1:
                continue
            hit = marker in " ".join(p.info["cmdline"] or [])
            if not hit:
                hit = any(marker in v for v in p.environ().values())
        except psutil.Error:
            continue
        if hit:
            victims.append(p)
    _, victims = psutil.wait_procs(victims, timeout=grace) if victims else ([], [])
    for p in victims:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(victims, timeout=10)
    return [p.pid for p in victims]
