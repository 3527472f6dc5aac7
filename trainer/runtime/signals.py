"""Stop requests (SIGTERM, Slurm's SIGUSR2) turned into a flag the training loop polls."""

from __future__ import annotations

import signal


class StopRequest:
    """Set by SIGTERM/SIGUSR2; the loop finishes the iteration, saves latest.pt and exits 0."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR2)

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self.signal = signum

    @property
    def cause(self) -> str | None:
        """`end.stop_cause`: SIGUSR2 is Slurm's warning before the time limit."""
        if self.signal is None:
            return None
        return "timeout" if self.signal == signal.SIGUSR2 else "signal"

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def __enter__(self) -> "StopRequest":
        for s in self.SIGNALS:
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
