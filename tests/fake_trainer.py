"""A scripted stand-in for `python -m trainer` (same command line, contract events).

Point the console at it with FOLDWATCH_TRAINER="python tests/fake_trainer.py". Behaviour per
run and attempt comes from the JSON file in FAKE_TRAINER_SCRIPT:
  {"2d/0": [{"then": "sigkill", "at": 2}, {}], "*": {"rate": 0.02}}
a list gives one spec per attempt (the last repeats); a spec's keys:
  epochs (default: the experiment's), rate (s per epoch, default 0.02), iters (iter lines
  per epoch, default 2), at (epoch before which `then` happens, default: after the last),
  then: finish | crash (exit 1 with end) | sigkill (vanish without end) | exit (with `code`) |
        oom (exit 75) | hang (stop writing; SIGTERM honoured unless ignore_term),
  ignore_term: true = SIGTERM ignored.
Every invocation appends {argv, env} to <run dir>/fake_calls.jsonl.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contracts.experiment import load_experiment  # noqa: E402
from contracts.jsonio import EventWriter, atomic_write_bytes  # noqa: E402


def _arg(argv: list[str], name: str, default=None):
    return argv[argv.index(name) + 1] if name in argv else default


def main() -> int:
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
    calls = run_dir / "fake_calls.jsonl"
    attempt = sum(1 for _ in open(calls)) if calls.exists() else 0
    with open(calls, "a") as f:
        f.write(json.dumps({"argv": argv, "pid": os.getpid(), "env": {
            k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "SLURM_JOB_ID",
                                           "FOLDWATCH_CPU_THREADS")}}) + "\n")
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

    def finish(status: str, code: int, error=None) -> int:
        extra = {"stop_cause": stop["cause"]} if status == "stopped" else {}
        log.write("end", status=status, error=error, exit_code=code, **extra)
        return code

    def act(where: str) -> int | None:
        if then == "crash":
            return finish("failed", 1, f"Traceback: scripted crash {where}")
        if then == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if then == "exit":
            code = int(spec.get("code", 1))
            return finish("failed", code, f"error: scripted exit {code}")
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
        log.write("epoch", epoch=e, train_loss=1.0 / (e + 1), val_loss=1.0 / (e + 1),
                  val_dice=dice, val_dice_per_class={"1": dice}, ema_dice=dice, lr=0.01,
                  epoch_s=rate, data_wait_frac=0.0, peak_mem_mb=1.0)
        atomic_write_bytes(ckpt, str(e + 1).encode())
        log.write("checkpoint", kind="latest", epoch=e, path=str(ckpt))
    if at >= epochs and then != "finish":
        code = act("after the last epoch")
        if code is not None:
            return code
    return finish("completed", 0)


if __name__ == "__main__":
    sys.exit(main())
