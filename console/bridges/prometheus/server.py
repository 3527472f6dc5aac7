"""The supervisor's Prometheus endpoint (`metrics.listen`): an HTTP server in a thread of its
own that answers /metrics from the latest snapshot (console.bridges.prometheus.collector).

A port it cannot have does not stop supervision: the supervisor says so in supervisor.log and
in a notice every view shows, and tries again every RETRY_S (a supervisor that just ended
may hold the port for a moment longer).
"""

from __future__ import annotations

import errno
import socket
import time

from console.bridges.prometheus.collector import SnapshotCollector
from console.protocol.model import Snapshot

RETRY_S = 10.0
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class MetricsServer:
    def __init__(self, exp, *, team_split: bool = False) -> None:
        self.host, self.port = exp.metrics.address
        self.listen = exp.metrics.listen
        self.source = exp.source
        # every run of a local supervisor runs on this host, except a team's other members'
        local = socket.gethostname() if exp.backend == "local" and not team_split else None
        self.collector = SnapshotCollector(exp.experiment, local_host=local)
        self.error: str | None = None        # why it does not listen, for the notice
        self._httpd = self._thread = None
        self._next_try = 0.0
        self._start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    @property
    def notice(self) -> str | None:
        return None if self.error is None else f"metrics: {self.error}"

    def tick(self, snap: Snapshot) -> None:
        """The supervisor ticked: the next scrape shows `snap`."""
        self.collector.update(snap, time.time())
        if self._httpd is None and time.monotonic() >= self._next_try:
            self._start()

    def _start(self) -> None:
        from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.collector)
        ProcessCollector(registry=registry)      # the supervisor's own CPU, memory, start time
        try:
            self._httpd, self._thread = start_http_server(self.port, addr=self.host,
                                                          registry=registry)
        except OSError as e:
            self._next_try = time.monotonic() + RETRY_S
            why = self._why(e)
            if why != self.error:
                _say(f"metrics: {why}; supervision goes on without them, trying again every "
                     f"{RETRY_S:g}s")
            self.error = why
            return
        self.error = None
        where = "" if self.host in LOOPBACK else (
            " (not loopback: anyone who reaches this host can read them)")
        _say(f"metrics: Prometheus metrics at {self.url}{where}")

    def _why(self, e: OSError) -> str:
        change = f"choose another in metrics.listen ({self.source}), then `foldwatch down` " \
                 "and `foldwatch up`"
        if isinstance(e, socket.gaierror):
            return f"{self.listen}: unknown host {self.host!r} ({e.strerror}); {change}"
        if e.errno == errno.EADDRINUSE:
            return f"{self.listen} is in use (another program listens there, perhaps " \
                   f"another experiment's supervisor); {change}"
        if e.errno == errno.EADDRNOTAVAIL:
            return f"{self.listen}: {self.host} is not an address of this host; {change}"
        if e.errno == errno.EACCES:
            return f"{self.listen}: permission denied (ports below 1024 need root); {change}"
        return f"cannot listen on {self.listen}: {e.strerror or e}; {change}"

    def close(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(10)
            self._httpd = self._thread = None


def _say(text: str) -> None:
    # the supervisor's stdout is supervisor.log; the same line format as its own lines
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}", flush=True)
