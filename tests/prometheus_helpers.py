"""A real Prometheus server for the tests: Debian's `prometheus` package (installed when
missing and root), started on loopback with a scrape config of the test's making, queried
through its HTTP API."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from system_helpers import debian_program

DASHBOARD = Path(__file__).resolve().parents[1] / "configs" / "grafana" / "foldwatch.json"


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the Grafana dashboard (panels and template variables)."""
    data = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in data["panels"] for t in p.get("targets", [])]
    return exprs + [v["query"]["query"] for v in data["templating"]["list"]]


def install_prometheus() -> tuple[str | None, str]:
    """The prometheus binary, installing Debian's package when root; else (None, why not)."""
    return debian_program("prometheus")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """One prometheus process on 127.0.0.1 scraping `targets` every second."""

    def __init__(self, exe: str, folder: Path, targets: list[str]) -> None:
        self.exe, self.folder = exe, folder
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "prometheus.yml"
        self.config.write_text(json.dumps({        # JSON is YAML
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "foldwatch", "scrape_interval": "1s",
                                "scrape_timeout": "1s",
                                "static_configs": [{"targets": targets}]}]}))
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 120.0) -> None:
        """Start it and wait for /-/ready (its storage opened, the config loaded)."""
        for _ in range(3):                   # a port taken between free_port() and bind
            port = free_port()
            self.url = f"http://127.0.0.1:{port}"
            log = open(self.folder / "prometheus.log", "ab")
            self.proc = subprocess.Popen(
                [self.exe, f"--config.file={self.config}",
                 f"--storage.tsdb.path={self.folder / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
            log.close()
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                if self._ready():
                    return
                time.sleep(0.2)
            if self.proc.poll() is None:
                self.stop()
                raise AssertionError(f"prometheus not ready after {timeout:g}s: {self.log()}")
            if "address already in use" not in self.log():
                raise AssertionError(f"prometheus exited {self.proc.returncode}: {self.log()}")
        raise AssertionError(f"prometheus found no free port: {self.log()}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    def log(self, chars: int = 2000) -> str:
        try:
            return (self.folder / "prometheus.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def query(self, expr: str) -> list[dict]:
        """An instant query's result vector/matrix; AssertionError when Prometheus refuses it."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:
            body = json.loads(e.read() or b"{}")
        assert body.get("status") == "success", f"{expr}: {body}"
        return body["data"]["result"]

    def values(self, expr: str) -> list[float]:
        """The values of an instant vector query, one per series."""
        return [float(s["value"][1]) for s in self.query(expr)]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
