"""A scripted stand-in for `python -m trainer` (same command line, contract events).

Point the console at it with FOLDWATCH_TRAINER="python tests/fake_trainer.py". Behaviour per
run and attempt comes from the JSON file in FAKE_TRAINER_SCRIPT:
  {"2d/0": [{"then": "sigkill", "at": 2}, {}], "*": {"rate": 0.02}}
a list gives one spec per attempt (the last repeats); a spec's keys:
  epochs (default: the experiment's), rate (s per epoch, default 0.02), iters (iter lines
  per epoch, default 2), at (epoch before which `then` happens, default: after the last),
  then: finish | crash (exit 1 with end) | sigkill (vanish without end) | exit (with `code`,
        and `message` for end.message; `no_end`: true = only stderr says why) |
        oom (exit 75) | nospace (exit 74, end.reason no_space; `wait_full`: once the disk is full) |
        hang (stop writing; SIGTERM honoured unless ignore_term),
  ignore_term: true = SIGTERM ignored.
Like the real trainer it holds the run folder's lock (contracts.runlock) for its whole life:
a second copy for the same run exits 73 (BUSY) at once, writing nothing but
<run dir>/fake_busy.jsonl. Every invocation that got the lock appends {argv, env, pid,
create_time} to <run dir>/fake_calls.jsonl. Checkpoint, then `checkpoint`, then `epoch`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contracts import exitcodes  # noqa: E402
from contracts.experiment import load_experiment  # noqa: E402
from contracts.jsonio import EventWriter, atomic_write_bytes  # noqa: E402
from contracts.runlock import RunBusy, RunLock  # noqa: E402


def _arg(argv: list[str], name: str, default=None):
    return argv[argv.index(name) + 1] if name in argv else default


def _ct() -> float | None:
    try:
        import psutil
        return psutil.Process().create_time()
    except Exception:
        return None


def main() -> int:
    # A trainer that is slow to start (the real one imports torch for seconds): nothing
    # holds the run folder yet, only the launch token in the environment says it exists
    time.sleep(float(os.environ.get("FAKE_TRAINER_STARTUP_S") or 0))
    argv = sys.argv[1:]
    command = argv[0]
    exp = load_experiment(_arg(argv, "--experiment"))
    cfg = _arg(argv, "--configuration")
    lay = exp.layout
    if command == "train":
        fold = int(_arg(argv, "--fold"))
        key, run_dir = f"{cfg}/{fold}", lay.fold_dir(cfg, fold)
    else:
        key = {"preprocess": f"preprocess-{cfg}", "crossval": f"crossval-{cfg}"}.get(command, command)
        run_dir = lay.stage_dir(key)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir, role=command)
    try:
        lock.acquire()          # held until the process dies, however it dies
    except RunBusy as e:
        with open(run_dir / "fake_busy.jsonl", "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "holder": e.holder}) + "\n")
        print(str(e), file=sys.stderr)
        return exitcodes.BUSY
    calls = run_dir / "fake_calls.jsonl"
    attempt = sum(1 for _ in open(calls)) if calls.exists() else 0
    with open(calls, "a") as f:
        f.write(json.dumps({"argv": argv, "pid": os.getpid(), "create_time": _ct(),
                            "t": time.time(), "env": {
            k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "SLURM_JOB_ID",
                                           "FOLDWATCH_CPU_THREADS", "FOLDWATCH_HEARTBEAT_S")}}) + "\n")
    script = {}
    if os.environ.get("FAKE_TRAINER_SCRIPT"):
        script = json.loads(Path(os.environ["FAKE_TRAINER_SCRIPT"]).read_text())
    spec = script.get(key, script.get("*", {}))
    if isinstance(spec, list):
        spec = spec[min(attempt, len(spec) - 1)] if spec else {}
    log = EventWriter(run_dir / "metrics.jsonl")
    then = spec.get("then", "finish")
    stop = {"flag": False, "cause": None}

    def on_term(signum, frame):
        stop["flag"] = True
        # Slurm's pre-walltime signal is SIGUSR2 (sbatch --signal), like the real trainer's.
        stop["cause"] = "timeout" if signum == signal.SIGUSR2 else "signal"

    signal.signal(signal.SIGTERM, signal.SIG_IGN if spec.get("ignore_term") else on_term)
    signal.signal(signal.SIGUSR2, on_term)

    def finish(status: str, code: int, error=None, message=None, reason=None) -> int:
        extra = {"stop_cause": stop["cause"]} if status == "stopped" else {}
        log.write("end", status=status, error=error, exit_code=code, message=message,
                  reason=reason, **extra)
        return code

    def act(where: str) -> int | None:
        if then == "crash":
            return finish("failed", 1, f"Traceback: scripted crash {where}")
        if then == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if then == "exit":
            code = int(spec.get("code", 1))
            if spec.get("no_end"):
                print(f"Traceback (most recent call last):\n  File \"x.py\"\n"
                      f"error: scripted exit {code} ({spec.get('message', 'stderr only')})",
                      file=sys.stderr)
                return code
            return finish("failed", code, f"Traceback:\nerror: scripted exit {code}",
                          spec.get("message"))
        if then == "nospace":
            # wait_full: carry on until the disk really is full (the test fills it), like a
            # trainer whose checkpoint save meets ENOSPC; the `end` event may not fit either
            while spec.get("wait_full") and shutil.disk_usage(run_dir).free > 16384:
                time.sleep(0.05)
            try:
                finish("failed", exitcodes.NO_SPACE, "OSError: [Errno 28] No space left",
                       f"no space left on {run_dir}: scripted", "no_space")
            except OSError:
                pass
            return exitcodes.NO_SPACE
        if then == "oom":
            return finish("failed", 75, "out of memory: CUDA out of memory (scripted)")
        if then == "hang":
            while True:
                if stop["flag"]:
                    return finish("stopped", 0)
                time.sleep(0.05)
        return None

    rate = float(spec.get("rate", 0.02))
    if command != "train":
        log.write("start", stage=key, pid=os.getpid(), host=socket.gethostname())
        if spec.get("at", 1) == 0:
            code = act("at start")
            if code is not None:
                return code
        for i in range(2):
            time.sleep(rate)
            log.write("progress", stage=key, done=i + 1, total=2)
        code = act("at end") if then != "finish" else None
        return code if code is not None else finish("completed", 0)

    conf = exp.configurations[cfg]
    epochs = int(spec.get("epochs", conf.epochs))
    iters = int(spec.get("iters", 2))
    ckpt = run_dir / "checkpoints" / "latest.pt"
    start_epoch = 0
    if "--resume" in argv and ckpt.exists():
        start_epoch = int(ckpt.read_text())
    batch = int(_arg(argv, "--batch-size", conf.batch_size))
    log.write("start", configuration=cfg, fold=int(_arg(argv, "--fold")), pid=os.getpid(),
              host=socket.gethostname(), device="cpu", attempt=attempt + 1,
              resumed_from=start_epoch if "--resume" in argv else None, epochs=epochs,
              iterations_per_epoch=iters, batch_size=batch,
              grad_accumulation=int(_arg(argv, "--grad-accumulation", conf.grad_accumulation)))
    at = int(spec.get("at", epochs))
    for e in range(start_epoch, epochs):
        if e >= at:
            code = act(f"at epoch {e}")
            if code is not None:
                return code
        for i in range(iters):
            time.sleep(rate / (iters + 1))
            if stop["flag"]:
                atomic_write_bytes(ckpt, str(e).encode())
                return finish("stopped", 0)
            log.write("iter", epoch=e, iter=i + 1, loss=1.0 / (e + 1), lr=0.01,
                      samples_per_s=10.0)
        time.sleep(rate / (iters + 1))
        dice = 1 - 1.0 / (e + 2)
        atomic_write_bytes(ckpt, str(e + 1).encode())        # checkpoint, then announce
        log.write("checkpoint", kind="latest", epoch=e, path=str(ckpt))
        log.write("epoch", epoch=e, train_loss=1.0 / (e + 1), val_loss=1.0 / (e + 1),
                  val_dice=dice, val_dice_per_class={"1": dice}, ema_dice=dice, lr=0.01,
                  epoch_s=rate, data_wait_frac=0.0, peak_mem_mb=1.0)
    if at >= epochs and then != "finish":
        code = act("after the last epoch")
        if code is not None:
            return code
    return finish("completed", 0)


if __name__ == "__main__":
    sys.exit(main())
