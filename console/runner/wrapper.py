"""Runs a training program that does not write foldwatch's log itself, and writes it for it.

`python -m console.runner --run-dir DIR [options] -- PROGRAM ARGS...`

The runner holds the run folder's lock (contracts.runlock), writes `start` and `end` to
`DIR/metrics.jsonl`, copies the program's output to its own stdout/stderr (the engine appends
those to stdout.log / stderr.log), turns the program's metrics into events (from nnU-Net's
training log, from a pattern over stdout, or not at all when the program uses the `foldwatch`
helper), passes SIGTERM/SIGUSR2 on, and maps known failures to exit codes with a message.
Torch-free: it only starts and reads processes and files.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

from console.runner.failures import WORKERS_DIED, recognise
from console.runner.replay import glob_missing, last_attempt, nnunet_missing
from console.runner.sources import (CheckpointGlob, NnunetLogSource, PatternSource, resolve,
                                    resumed_from)
from contracts import exitcodes
from contracts.jsonio import EventWriter
from contracts.runlock import RunBusy, RunLock

FORWARDED = (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m console.runner", allow_abbrev=False)
    p.add_argument("--run-dir", required=True, type=Path)
    p.add_argument("--stage", help="a pipeline stage (no fold): its name")
    p.add_argument("--configuration")
    p.add_argument("--fold", type=int)
    p.add_argument("--device", default="cpu")
    p.add_argument("--epochs", type=int)
    p.add_argument("--iterations", type=int, help="iterations per epoch, for the start event")
    p.add_argument("--batch-size", type=int, help="samples per iteration, for the start event "
                   "(samples/s = batch x iterations / epoch time)")
    p.add_argument("--metrics", choices=("jsonl", "pattern", "nnunet", "none"), default="none")
    p.add_argument("--pattern")
    p.add_argument("--first-epoch", type=int, default=0)
    p.add_argument("--nnunet-dir", help="nnU-Net's fold output folder (a glob is allowed)")
    p.add_argument("--checkpoints", help="glob of the program's checkpoints")
    p.add_argument("--cwd", type=Path)
    p.add_argument("--no-metrics-lines", type=int, default=400)
    p.add_argument("--no-metrics-s", type=float, default=900)
    p.add_argument("--heartbeat-s", type=float,
                   default=float(os.environ.get("FOLDWATCH_HEARTBEAT_S") or 60.0),
                   help="at most this often, a `heartbeat` event while the program prints "
                        "(default: $FOLDWATCH_HEARTBEAT_S, set by the console to a third of "
                        "the stall timeout, at most 60)")
    p.add_argument("--require", action="append", default=[], metavar="PATH=MESSAGE",
                   help="fail (exit 2) with MESSAGE when PATH does not exist")
    p.add_argument("--skip", metavar="MESSAGE", help="do nothing but complete, saying why")
    p.add_argument("--workers-env", help="env var of the augmentation workers (nnU-Net: "
                   "nnUNet_n_proc_DA), lowered when they die")
    p.add_argument("--retry-arg", action="append", default=[],
                   help="arguments added when retrying after the workers died (nnU-Net: --c)")
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    if not args.command and not args.skip:
        p.error("no program given after --")
    return args


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_dir: Path = args.run_dir
        self.stop_signal: int | None = None
        self.child: subprocess.Popen | None = None
        self.tail: deque[str] = deque(maxlen=200)
        self.lines = 0
        self.t0 = time.time()
        self.lock = threading.Lock()
        self.metrics_seen = False
        self.no_metrics: str | None = None
        self.last_epoch: int | None = None
        self.sources: list = []
        self.last_output = 0.0
        self.last_heartbeat = time.time()

    # -- events ------------------------------------------------------------------------------
    def emit(self, event: str, fields: dict) -> None:
        with self.lock:
            self.writer.write(event, **fields)
            if event in ("epoch", "iter"):
                self.metrics_seen = True
            if event == "epoch" and isinstance(fields.get("epoch"), int):
                self.last_epoch = fields["epoch"]

    def start_event(self, attempt: int, resumed: int | None) -> None:
        a = self.args
        if a.stage:
            self.emit("start", {"stage": a.stage, "pid": os.getpid(), "host": os.uname().nodename,
                                "attempt": attempt, "argv": a.command[:12]})
            return
        self.emit("start", {"configuration": a.configuration, "fold": a.fold, "pid": os.getpid(),
                            "host": os.uname().nodename, "device": a.device, "attempt": attempt,
                            "resumed_from": resumed, "epochs": a.epochs,
                            "iterations_per_epoch": a.iterations, "batch_size": a.batch_size,
                            "effective_batch": a.batch_size,
                            "program": a.command[:12]})

    # -- the program ---------------------------------------------------------------------------
    def _pump(self, stream, out, on_line) -> None:
        # Chunks, not lines: progress bars redraw with \r and no newline for minutes, and
        # that output still shows the program is alive (see `heartbeat`).
        partial = b""
        fd = stream.fileno()
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            out.buffer.write(chunk)
            out.buffer.flush()
            self.last_output = time.time()
            *lines, partial = (partial + chunk).split(b"\n")
            if len(partial) > 65536:           # a line that never ends: keep its tail only
                partial = partial[-4096:]
            for raw in lines:
                self._line(raw.decode("utf-8", "replace") + "\n", on_line)
        if partial:
            self._line(partial.decode("utf-8", "replace"), on_line)

    def _line(self, text: str, on_line) -> None:
        with self.lock:
            self.tail.append(text[-2000:])
            self.lines += 1
        if on_line:
            on_line(text)

    def heartbeat(self) -> None:
        """A quiet log but a talking program (planning, prediction, progress bars) is alive:
        say so every --heartbeat-s so the watchdog's stall timer sees activity."""
        now = time.time()
        if (self.last_output > self.last_heartbeat
                and now - self.last_heartbeat >= self.args.heartbeat_s):
            self.last_heartbeat = now
            self.emit("heartbeat", {"output_age_s": round(now - self.last_output, 1)})

    def run_once(self, env: dict, argv: list[str], on_stdout) -> int:
        self.child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, env=env, cwd=self.args.cwd)
        if self.stop_signal is not None:
            self.child.send_signal(self.stop_signal)
        pumps = [threading.Thread(target=self._pump, args=(self.child.stdout, sys.stdout,
                                                           on_stdout), daemon=True),
                 threading.Thread(target=self._pump, args=(self.child.stderr, sys.stderr, None),
                                  daemon=True)]
        for t in pumps:
            t.start()
        while True:
            try:
                code = self.child.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                self.poll_sources()
                self.check_metrics()
                self.heartbeat()
        # A grandchild (multiprocessing's resource tracker) may hold the pipes open after the
        # program exits: read what is there, do not wait for it.
        deadline = time.time() + 2.0
        for t in pumps:
            t.join(timeout=max(0.0, deadline - time.time()))
        self.poll_sources()
        return code

    def on_signal(self, signum, frame) -> None:
        self.stop_signal = signum
        if self.child is not None and self.child.poll() is None:
            try:
                self.child.send_signal(signum)
            except OSError:
                pass

    def check_metrics(self) -> None:
        """A stdout pattern that never matches: stop early and say so (a config mistake)."""
        a = self.args
        if a.metrics != "pattern" or self.metrics_seen or self.no_metrics:
            return
        waited = time.time() - self.t0
        if self.lines >= a.no_metrics_lines or (waited >= a.no_metrics_s and self.lines):
            self.no_metrics = (f"command.pattern matched none of the first {self.lines} output "
                               f"lines ({waited:.0f}s): no metrics could be read. Check the "
                               f"pattern against stdout.log in {self.run_dir} and fix "
                               "command.pattern in the experiment file")
            if self.child is not None and self.child.poll() is None:
                self.child.terminate()

    def replay(self) -> None:
        """Checkpoints a killed attempt saved but never announced, before this `start`
        (console/runner/replay.py): the same sources as the live ones below."""
        a = self.args
        if a.stage or a.skip:
            return
        last = last_attempt(self.run_dir / "metrics.jsonl")
        missing = []
        if a.metrics == "nnunet" and a.nnunet_dir:
            missing += nnunet_missing(last, a.nnunet_dir)
        if a.checkpoints and a.metrics != "jsonl":
            missing += glob_missing(last, resolve(a.checkpoints, a.cwd))
        for event, fields in missing:
            self.writer.write(event, **fields)

    def poll_sources(self) -> None:
        for src in self.sources:
            for event, fields in src.poll():
                self.emit(event, fields)

    # -- one whole run ------------------------------------------------------------------------
    def run(self) -> int:
        a = self.args
        self.writer = EventWriter(self.run_dir / "metrics.jsonl")
        self.replay()
        previous = resumed_from(self.run_dir / "metrics.jsonl")
        self.start_event(previous["attempt"], previous["epoch"])
        if a.skip:
            return self.end("completed", exitcodes.OK, None, a.skip, "completed")
        for req in a.require:
            path, _, message = req.partition("=")
            if not Path(path).exists():
                return self.end("failed", exitcodes.USAGE, None, message or f"{path} is missing",
                                "usage")
        for s in FORWARDED:
            signal.signal(s, self.on_signal)
        self.sources = []
        pattern_source = None
        if a.metrics == "nnunet" and a.nnunet_dir:
            source = NnunetLogSource(a.nnunet_dir)
            source.parser.ema = previous["ema"]
            self.sources.append(source)
        if a.metrics == "pattern":
            pattern_source = PatternSource(re.compile(a.pattern), a.first_epoch)
        if a.checkpoints and a.metrics != "jsonl":
            self.sources.append(CheckpointGlob(
                a.checkpoints, a.cwd, self.t0,
                lambda: None if self.last_epoch is None else self.last_epoch + 1))
        if a.cwd is not None and not a.cwd.is_dir():
            return self.end("failed", exitcodes.USAGE, None,
                            f"working folder {a.cwd} does not exist (command.cwd in the "
                            "experiment file)", "usage")
        env = dict(os.environ)
        env["FOLDWATCH_RUN_DIR"] = str(self.run_dir)
        argv = list(a.command)
        retries = 0
        while True:
            def on_stdout(line, src=pattern_source):
                if src is not None:
                    for event, fields in src.feed(line):
                        self.emit(event, fields)
            try:
                code = self.run_once(env, argv, on_stdout)
            except FileNotFoundError:
                return self.end("failed", exitcodes.USAGE, None,
                                f"program not found: {argv[0]!r} (is it installed and on PATH, "
                                "or is the path right? command.argv in the experiment file)",
                                "usage")
            except PermissionError:
                return self.end("failed", exitcodes.USAGE, None,
                                f"program {argv[0]!r} is not executable", "usage")
            output = "".join(self.tail)
            workers = current_workers(env, a.workers_env)
            if (code != 0 and self.stop_signal is None and WORKERS_DIED.search(output)
                    and a.workers_env and retries < 3 and workers > 0):
                fewer = workers // 2
                env[a.workers_env] = str(fewer)
                retries += 1
                argv = list(a.command) + [x for x in a.retry_arg if x not in a.command]
                # the new process writes a new training log; what the old one's log still
                # holds (its last epoch, if saved) is announced first, as at a run's end
                self.sources = [self.next_log(s) if isinstance(s, NnunetLogSource) else s
                                for s in self.sources]
                self.emit("warning", {"message": f"augmentation workers died; retrying with "
                                                 f"{a.workers_env}={fewer}"})
                self.tail.clear()
                continue
            break
        return self.finish(code)

    def next_log(self, old: NnunetLogSource) -> NnunetLogSource:
        for event, fields in old.finish():
            self.emit(event, fields)
        new = NnunetLogSource(self.args.nnunet_dir)
        new.parser.ema = old.parser.ema
        return new

    def finish(self, code: int) -> int:
        for src in self.sources:
            for event, fields in src.finish():
                self.emit(event, fields)
        output = "".join(self.tail)
        error_tail = output[-4000:] if code != 0 else None
        if self.no_metrics:
            return self.end("failed", exitcodes.USAGE, error_tail, self.no_metrics, "usage")
        if self.stop_signal is not None and (code == 0 or code < 0 or code == 128 + self.stop_signal):
            name = signal.Signals(self.stop_signal).name
            return self.end("stopped", exitcodes.OK, None, f"stopped on {name}", "stopped",
                            stop_cause="signal")
        if code == 0:
            return self.end("completed", exitcodes.OK, None, None, "completed")
        known = recognise(output, code)
        if known is not None:
            return self.end("failed", known.exit_code, error_tail, known.message, known.reason)
        if code < 0:
            return self.end("failed", exitcodes.FAILED, error_tail,
                            f"{Path(self.args.command[0]).name} was killed by signal {-code}",
                            "crash")
        last = next((ln.strip() for ln in reversed(self.tail) if ln.strip()), "")
        return self.end("failed", code if code in (exitcodes.USAGE, exitcodes.DATASET,
                                                   exitcodes.TRANSIENT) else exitcodes.FAILED,
                        error_tail, f"{Path(self.args.command[0]).name} exited with code {code}"
                        + (f": {last}" if last else ""), "crash")

    def end(self, status: str, code: int, error: str | None, message: str | None, reason: str,
            **more) -> int:
        self.emit("end", {"status": status, "error": error, "exit_code": code,
                          "message": message, "reason": reason, **more})
        self.writer.close()
        if message and status == "failed":
            print(f"foldwatch runner: {message}", file=sys.stderr)
        return code


def current_workers(env: dict, name: str | None) -> int:
    """The augmentation workers the program uses; unset = nnU-Net's default, 12 or the cores."""
    if not name:
        return 0
    try:
        return int(env[name])
    except (KeyError, ValueError):
        return min(12, os.cpu_count() or 1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        lock = RunLock(args.run_dir, role="runner", program=(args.command or ["-"])[0])
        lock.acquire()
    except RunBusy as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.BUSY
    try:
        return Runner(args).run()
    finally:
        lock.release()

