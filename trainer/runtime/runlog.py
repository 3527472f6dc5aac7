"""The event log of one trainer process (ARCHITECTURE.md section 3), for folds and stages.

`RunLog` writes `start` on entry and exactly one `end` on exit, mapping what happened to
the contract's status and exit code: UserError -> its code (2/3), out of memory -> 75,
anything else -> 1 with the traceback's last lines. The caller returns `log.exit_code`.
"""

from __future__ import annotations

import os
import socket
import traceback
from pathlib import Path
from typing import Any

from contracts import exitcodes
from contracts.errors import UserError
from contracts.jsonio import EventWriter


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA (or CPU allocator) out of memory, recognised without importing torch."""
    name = type(exc).__name__
    text = str(exc)
    return name == "OutOfMemoryError" or "out of memory" in text.lower() or isinstance(exc, MemoryError)


class RunLog:
    """Context manager around one attempt of a run; `with RunLog(...) as log:`."""

    def __init__(self, run_dir: str | Path, **start_fields: Any) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.writer = EventWriter(self.run_dir / "metrics.jsonl")
        self.start_fields = start_fields
        self.exit_code: int | None = None
        self.status: str | None = None

    def __enter__(self) -> "RunLog":
        self.writer.write("start", pid=os.getpid(), host=socket.gethostname(), **self.start_fields)
        return self

    def event(self, event: str, **fields: Any) -> dict:
        return self.writer.write(event, **fields)

    def progress(self, stage: str, done: int, total: int, **fields: Any) -> None:
        self.writer.write("progress", stage=stage, done=done, total=total, **fields)

    def stopped(self) -> None:
        """Mark this attempt as stopped on request (exit 0 with status 'stopped')."""
        self.status = "stopped"

    def __exit__(self, exc_type, exc, tb) -> bool:
        error = None
        if exc is None:
            status, code = self.status or "completed", exitcodes.OK
        elif isinstance(exc, UserError):
            status, code, error = "failed", exc.exit_code, str(exc)
        elif isinstance(exc, KeyboardInterrupt):
            status, code, error = "stopped", 130, "interrupted"
        elif is_out_of_memory(exc):
            status, code, error = "failed", exitcodes.TRANSIENT, f"out of memory: {exc}"
        else:
            lines = traceback.format_exception(exc_type, exc, tb)
            status, code, error = "failed", exitcodes.FAILED, "".join(lines)[-4000:]
        self.status, self.exit_code = status, code
        self.writer.write("end", status=status, error=error, exit_code=code)
        self.writer.close()
        if exc is not None and code != exitcodes.FAILED:
            # Known failures: the message goes to stderr without a traceback.
            import sys
            print(f"error: {error}", file=sys.stderr)
            return True
        return False
