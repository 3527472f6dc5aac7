"""The event log of one trainer process (ARCHITECTURE.md section 3), for folds and stages.

`RunLog` takes the run folder's lock (contracts.runlock) before it writes anything, writes
`start`, and exactly one `end` on exit. `end` says what happened three ways: `exit_code` for
the watchdog, `reason` (one word) for programs and `message` (one clean text: what, where,
what to do) for people; `error` keeps the traceback tail of a crash. The caller returns
`log.exit_code`. A second process for the same folder gets RunBusy (exit 73) from
`__enter__` and writes nothing into the holder's log.
"""

from __future__ import annotations

import os
import socket
import sys
import traceback
from pathlib import Path
from typing import Any

from contracts import exitcodes
from contracts.errors import NoSpaceError, UserError
from contracts.jsonio import EventWriter
from contracts.layout import METRICS_FILE
from contracts.runlock import RunLock

from trainer.runtime.folders import folder_error, free_bytes, make_folder, no_space_cause

REASON_BY_CODE = {exitcodes.USAGE: "usage", exitcodes.DATASET: "dataset",
                  exitcodes.BUSY: "busy", exitcodes.NO_SPACE: "no_space",
                  exitcodes.TRANSIENT: "oom"}


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA (or CPU allocator) out of memory, recognised without importing torch."""
    name = type(exc).__name__
    text = str(exc)
    return name == "OutOfMemoryError" or "out of memory" in text.lower() or isinstance(exc, MemoryError)


def describe_failure(exc: BaseException, tb, run_dir: Path) -> dict:
    """status, exit_code, reason, message and error of an exception that ended a run."""
    cause = None if isinstance(exc, UserError) else no_space_cause(exc)
    if cause is not None:           # a result write hit a full disk
        where = Path(cause.filename) if cause.filename else run_dir
        exc = NoSpaceError(where, free_bytes(where))
    if isinstance(exc, UserError):
        code = exc.exit_code
        return dict(status="failed", exit_code=code, reason=REASON_BY_CODE.get(code, "usage"),
                    message=str(exc), error=str(exc))
    if isinstance(exc, KeyboardInterrupt):
        return dict(status="stopped", exit_code=exitcodes.INTERRUPTED, reason="interrupted", error="interrupted",
                    message="interrupted (Ctrl-C); --resume continues from the last checkpoint")
    if is_out_of_memory(exc):
        text = f"out of memory: {exc}"
        return dict(status="failed", exit_code=exitcodes.TRANSIENT, reason="oom", error=text,
                    message=f"{text.splitlines()[0]}; the watchdog restarts the run (with a "
                            "smaller batch when auto_fit_on_oom is on), or lower batch_size")
    lines = traceback.format_exception(type(exc), exc, tb)
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return dict(status="failed", exit_code=exitcodes.FAILED, reason="crash",
                error="".join(lines)[-4000:],
                message=f"unexpected {type(exc).__name__}: {first} (a bug or a broken "
                        f"environment; the traceback is in {run_dir / 'stderr.log'}); "
                        "the watchdog restarts the run from its last checkpoint")


class RunLog:
    """Context manager around one attempt of a run; `with RunLog(...) as log:`.

    `defer_start=True`: the caller writes `start` itself with `log.begin(**more)` once it
    knows everything (train: where it resumes); a failure before that still writes `start`
    (with the fields given here) and `end`, so every attempt has both.
    """

    def __init__(self, run_dir: str | Path, *, role: str | None = None,
                 defer_start: bool = False, **start_fields: Any) -> None:
        self.run_dir = Path(run_dir)
        self.start_fields = start_fields
        self.role = role or start_fields.get("stage") or "train"
        self.defer_start = defer_start
        self.writer: EventWriter | None = None
        self.lock: RunLock | None = None
        self.started = False
        self.exit_code: int | None = None
        self.status: str | None = None
        self.stop_cause: str | None = None

    def __enter__(self) -> "RunLog":
        make_folder(self.run_dir)
        record = {k: self.start_fields[k] for k in ("configuration", "fold", "stage")
                  if k in self.start_fields}
        self.lock = RunLock(self.run_dir, role=self.role, **record)
        try:
            self.lock.acquire()  # RunBusy (exit 73) before anything is written
            self.writer = EventWriter(self.run_dir / METRICS_FILE)
            if not self.defer_start:
                self.begin()
        except OSError as e:     # a read-only or full results disk, no permission
            self._close()
            raise folder_error(self.run_dir, e) from None
        except BaseException:
            self._close()
            raise
        return self

    def begin(self, **more: Any) -> None:
        """Write the `start` event (once)."""
        if not self.started:
            self.started = True
            self.writer.write("start", pid=os.getpid(), host=socket.gethostname(),
                              **{**self.start_fields, **more})

    def event(self, event: str, **fields: Any) -> dict:
        return self.writer.write(event, **fields)

    def progress(self, stage: str, done: int, total: int, **fields: Any) -> None:
        self.writer.write("progress", stage=stage, done=done, total=total, **fields)

    def stopped(self, cause: str | None = None) -> None:
        """Mark this attempt as stopped on request (exit 0, status and reason 'stopped')."""
        self.status, self.stop_cause = "stopped", cause

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            status = self.status or "completed"
            end = dict(status=status, exit_code=exitcodes.OK, reason=status, error=None,
                       message=None)
            if status == "stopped":
                end["stop_cause"] = self.stop_cause
                end["message"] = ("stopped on request" + (f" ({self.stop_cause})"
                                  if self.stop_cause else "") + "; --resume continues")
        else:
            end = describe_failure(exc, tb, self.run_dir)
        self.status, self.exit_code = end["status"], end["exit_code"]
        try:
            self.begin()
            self.writer.write("end", **end)
        except OSError as e:  # e.g. the disk filled up: the exit code still tells
            print(f"warning: could not write the end event to {self.run_dir}: {e}",
                  file=sys.stderr)
        finally:
            self._close()
        if exc is not None and end["reason"] != "crash":
            # Known failures: one clean message on stderr, no traceback.
            print(f"error: {end['message']}", file=sys.stderr)
            return True
        return False

    def _close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except OSError:
                pass
        if self.lock is not None:
            self.lock.release()
