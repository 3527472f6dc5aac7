"""One browser tab's console: a `foldwatch up EXP` process spoken to in textual-serve's protocol.

textual-serve's AppService frames stdin/stdout packets for Textual's web driver; two of its
habits are replaced here. It starts the command through a shell (create_subprocess_shell);
a tab starts an argument list instead, so nothing in `foldwatch serve` runs a shell. Its
stop waits for the app however long it takes; a tab asks, then SIGTERMs, then SIGKILLs. And
a console that ends without saying so closes its page instead of leaving it blank.
"""

from __future__ import annotations

import asyncio
import shlex
import signal
from asyncio.subprocess import PIPE, Process

from textual_serve.app_service import AppService

QUIT_GRACE_S = 5.0      # the console quits on the "quit" packet in well under a second
TERM_GRACE_S = 3.0


class ConsoleTab(AppService):
    """The console process behind one websocket."""

    def __init__(self, argv: list[str], **kw) -> None:
        super().__init__(shlex.join(argv), **kw)     # the string is only shown in logs
        self.argv = list(argv)

    @property
    def process(self) -> Process | None:
        return self._process

    async def _open_app_process(self, width: int = 80, height: int = 24) -> Process:
        # COLUMNS/ROWS in the environment give the first size; the page sends resizes later.
        env = self._build_environment(width=width, height=height)
        # A session of its own: Ctrl-C in the server's terminal reaches the server alone, which
        # then ends its tabs in order (stop) instead of racing them.
        self._process = await asyncio.create_subprocess_exec(
            *self.argv, stdin=PIPE, stdout=PIPE, stderr=PIPE, env=env, start_new_session=True)
        self._stdin = self._process.stdin
        return self._process

    async def run(self) -> None:
        """textual-serve's packet loop, then the page is told the session ended: upstream
        leaves it open and blank when the console ends without its exit packet (it could not
        start, or was killed). Why it ended is in the server's output (its stderr)."""
        await super().run()
        await self.remote_close()

    async def stop(self) -> None:
        """End the console: the quit packet, then SIGTERM, then SIGKILL. Idempotent."""
        task, self._task = self._task, None
        proc = self._process
        if task is None or proc is None:
            return
        await self._download_manager.cancel_app_downloads(app_service_id=self.app_service_id)
        if proc.returncode is None:
            await self.send_meta({"type": "quit"})
            for sig, grace in ((signal.SIGTERM, QUIT_GRACE_S), (signal.SIGKILL, TERM_GRACE_S)):
                if await _exited(proc, grace):
                    break
                try:
                    proc.send_signal(sig)
                except ProcessLookupError:
                    break
            await proc.wait()
        try:
            # The reader ends at end of output; a child that kept the console's stdout open
            # must not keep this tab (or the server's shutdown) waiting.
            await asyncio.wait_for(task, 2.0)
        except asyncio.TimeoutError:
            pass


async def _exited(proc: Process, timeout: float) -> bool:
    try:
        await asyncio.wait_for(proc.wait(), timeout)
        return True
    except asyncio.TimeoutError:
        return False
