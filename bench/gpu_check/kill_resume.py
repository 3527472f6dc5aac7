"""The kill_resume step: a fold SIGKILLed mid-epoch (its whole process group: the trainer and
its data workers), restarted by the supervisor's watchdog on the same device from its last
checkpoint; how many epochs it lost and how long it took."""

from __future__ import annotations

import time
from pathlib import Path

from .context import Ctx, StepError, events, killpg, proc_env, read_jsonl
from .report import Step
from .session import Supervised, folds_of


def kill_and_resume(ctx: Ctx, kr: Step, session: Supervised, key: str, run: dict) -> None:
    run_dir, old_pid = run.get("run_dir"), run["pid"]

    def mid_epoch() -> tuple[float, list[dict]] | None:
        """At an `iter` event after the last `epoch` event: the kill, at once."""
        ev = read_jsonl(Path(run_dir) / "metrics.jsonl")
        epochs = [e for e in ev if e.get("event") == "epoch"]
        last_epoch_t = epochs[-1]["t"] if epochs else 0
        iters = [e for e in ev if e.get("event") == "iter" and e.get("t", 0) > last_epoch_t]
        if not (epochs and iters):
            return None
        t = time.time()
        killpg(old_pid)              # the run's session: trainer and its data workers
        return t, iters
    t_kill, iters = ctx.wait(f"{key}: an iteration after an epoch", mid_epoch, 60, every=0.05,
                             reserve=60)
    # what was announced before the kill (an epoch may have ended between reading and killing)
    epochs = [e for e in events(run_dir, "epoch") if e["t"] <= t_kill]
    iters = [e for e in events(run_dir, "iter", epochs[-1]["t"]) if e["t"] <= t_kill] or iters
    done = max(e["epoch"] for e in epochs) + 1
    kr.fact("killed", f"{key}, pid {old_pid}, SIGKILL to its process group, in epoch {done} "
            f"(0-based) after iteration {iters[-1]['iter']}", "this script")

    def restarted() -> dict | None:
        starts = events(run_dir, "start", t_kill)
        return starts[0] if starts else None
    start = ctx.wait(f"{key} restarted after the kill", restarted, 120 if ctx.gpu else 90,
                     reserve=30)
    first = None
    try:
        first = ctx.wait(f"{key}: an epoch after the resume",
                         lambda: next(iter(events(run_dir, "epoch", start["t"])), None),
                         120 if ctx.gpu else 90, reserve=30)
    except StepError:
        pass                         # reported by the check below
    resumed = start.get("resumed_from")
    kr.figure("epochs completed before the kill", done, "epochs", "metrics.jsonl epoch events")
    kr.figure("iterations of the epoch in progress at the kill", iters[-1]["iter"], "iterations",
              "the last `iter` event before the kill (a lower bound); redone after the resume")
    kr.figure("resumed from", resumed, "epochs", "metrics.jsonl start.resumed_from of the restart")
    if resumed is not None:
        kr.figure("epochs lost", max(0, done - resumed), "epochs",
                  "epochs announced before the kill - resumed_from (a checkpoint saved but not "
                  "yet announced counts as kept)")
    kr.figure("kill to restart", round(start["t"] - t_kill, 1), "s",
              "SIGKILL to the restarted trainer's start event (watchdog backoff 1 s included)")
    if first is not None:
        kr.figure("kill to the first epoch after the resume", round(first["t"] - t_kill, 1), "s",
                  "SIGKILL to the restarted trainer's first epoch event")
    kr.check("resumed at the epoch the kill interrupted (no epoch lost)",
             resumed is not None and resumed >= done,
             f"resumed_from {resumed}, epochs done {done}")
    kr.check("an epoch completed after the resume", first is not None)
    new = folds_of(session.status())[key]
    kr.fact("after the restart", f"device {new.get('device')}, pid {new.get('pid')}, "
            f"restarts {new.get('restarts')}", "foldwatch status --json")
    kr.check("the supervisor's watchdog restarted it (pid changed, restarts counted)",
             new.get("pid") not in (None, old_pid) and (new.get("restarts") or 0) >= 1,
             f"pid {old_pid} -> {new.get('pid')}, restarts {new.get('restarts')}")
    if ctx.gpu:
        env = proc_env(new["pid"]) if new.get("pid") else None
        kr.check(f"restarted on the same GPU (gpu{ctx.index}, CUDA_VISIBLE_DEVICES={ctx.index})",
                 new.get("device") == f"gpu{ctx.index}" and (env or {}).get(
                     "CUDA_VISIBLE_DEVICES") == str(ctx.index),
                 f"device {new.get('device')}, CUDA_VISIBLE_DEVICES "
                 f"{(env or {}).get('CUDA_VISIBLE_DEVICES')}")
    else:
        kr.note(f"Dry run ({ctx.skip_why}): killed and resumed on a CPU slot; on a GPU the same "
                "code also checks that the restart lands on the same GPU.")
    kr.finish()
