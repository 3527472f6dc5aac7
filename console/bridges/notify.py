"""Notifications when nobody is watching: `notify.command` (event JSON on stdin) and
`notify.urls` (chat, e-mail, push through Apprise: console/bridges/notify_urls.py).

A thread of its own (never the console's tick) reads console/events.jsonl from a persisted
cursor, watches the results disk and console/state.json, and delivers each notification to
every target: the command (an argument list, never a shell, with a timeout), then each URL.
Exactly once per target across console restarts: a notification is first saved in the
outbox of console/notify.json (together with the cursor that produced it); each target
delivered is recorded there before the next is tried, and the notification moves to the
sent list after the last. Every attempt is logged in console/notify.jsonl with its target
(failures included, with the command's or the service's error; never retried).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from console.store.statefile import load_state
from console.store.tailer import Tailer
from contracts.jsonio import EventWriter, atomic_write_json
from contracts.redact import mask_url, scrub

# decision action (console/events.jsonl) -> notification event
DECISIONS = {"fail": "run_failed", "give_up": "watchdog_gave_up",
             "wait": "disk_full"}      # a trainer exited 74: waiting for disk space
FINAL = {"completed", "failed", "stopped"}
KEEP_SENT = 500
REARM = 1.2          # disk_low is sent again only after free space rose above 1.2 x threshold


def _id(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


class Notifier:
    def __init__(self, exp, *, console_dir: Path | None = None, interval_s: float = 2.0,
                 clock=time.time) -> None:
        """`console_dir`: the console's own folder (a team-split console has one of its own
        with its state.json and events.jsonl); default results/<exp>/console."""
        self.exp, self.layout, self.cfg = exp, exp.layout, exp.notify
        self.interval_s, self.clock = interval_s, clock
        own = Path(console_dir) if console_dir else self.layout.console_dir
        self.console_state = own / self.layout.state.name
        self.state_path = own / self.layout.notify_state.name
        self.log_path = own / self.layout.notify_log.name
        s = self._load()
        self._saved: str | None = None
        self.outbox: list[dict] = s.get("outbox") or []
        self.sent: list[str] = s.get("sent") or []
        # notification id -> the targets it reached already (a restart skips those)
        self.delivered: dict[str, list[str]] = s.get("delivered") or {}
        self.disk_low = bool(s.get("disk_low"))
        self.finished = s.get("finished")          # signature of the run states last reported
        self.tailer = Tailer(own / self.layout.console_events.name)
        self.tailer.offset = int(s.get("offset") or 0)
        self.tailer.inode = s.get("inode")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- persistence ---------------------------------------------------------------------
    def _load(self) -> dict:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save(self) -> None:
        """Written (fsync'd) only when something changed: a tick every 2 s costs no disk I/O."""
        data = {"offset": self.tailer.offset - len(self.tailer.partial),
                "inode": self.tailer.inode, "outbox": self.outbox,
                "sent": self.sent[-KEEP_SENT:], "delivered": self.delivered,
                "disk_low": self.disk_low,
                "finished": self.finished}
        text = json.dumps(data, sort_keys=True)
        if text != self._saved:
            atomic_write_json(self.state_path, data)
            self._saved = text

    # -- what to notify ------------------------------------------------------------------
    def _base(self, event: str, **fields) -> dict:
        return {"event": event, "experiment": self.exp.experiment, "host": socket.gethostname(),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.clock())),
                "results": str(self.layout.root), **fields}

    def _queue(self, note: dict) -> None:
        if note["id"] not in self.sent and all(n["id"] != note["id"] for n in self.outbox):
            self.outbox.append(note)

    def scan(self) -> None:
        """New notifications into the outbox (saved before anything is sent)."""
        def decision(ev: dict) -> None:
            kind = DECISIONS.get(ev.get("action"))
            if ev.get("event") == "decision" and kind:
                self._queue(self._base(kind, run=ev.get("run"), reason=ev.get("reason"),
                                       id=_id(kind, ev.get("run"), ev.get("t"), ev.get("reason"))))
        self.tailer.read_each(decision)
        self._disk()
        self._finished()
        self._save()

    def _disk(self) -> None:
        try:
            usage = shutil.disk_usage(self.layout.root if self.layout.root.exists()
                                      else self.layout.root.parent)
        except OSError:
            return
        free_gb, limit = usage.free / 2**30, self.cfg.disk_free_gb
        if not self.disk_low and free_gb < limit:
            self.disk_low = True
            self._queue(self._base("disk_low", free_gb=round(free_gb, 2), threshold_gb=limit,
                                   reason=f"{free_gb:.1f} GB free on the results disk "
                                          f"(notify.disk_free_gb: {limit:g})",
                                   id=_id("disk_low", self.clock())))
        elif self.disk_low and free_gb > limit * REARM:
            self.disk_low = False

    def _finished(self) -> None:
        runs = load_state(self.console_state).data["runs"]
        states = {k: (r or {}).get("state") for k, r in runs.items()}
        done = bool(states) and all(s in FINAL for s in states.values())
        if not done:
            self.finished = None                   # runs again: the next finish is news
            return
        signature = _id(sorted(states.items()))
        if signature == self.finished:
            return
        self.finished = signature
        failed = sorted(k for k, s in states.items() if s != "completed")
        self._queue(self._base("experiment_finished", runs=states, failed=failed,
                               summary=self._results(), id=_id("finished", signature)))

    def _results(self) -> dict:
        """The experiment's headline numbers, from the files the pipeline stages wrote."""
        out: dict = {}
        lay = self.layout
        for cfg in self.exp.configurations:
            d = _dice(lay.crossval(cfg) / "summary.json")
            if d is not None:
                out[f"crossval {cfg} foreground Dice"] = d
        try:
            out["best"] = json.loads(lay.best_configuration.read_text())
        except (OSError, ValueError):
            pass
        d = _dice(lay.predictions / "summary.json")
        if d is not None:
            out["test foreground Dice"] = d
        return out

    # -- sending -------------------------------------------------------------------------
    def targets(self) -> list[tuple[str, str, object]]:
        """(key, label for the log, deliver(note) -> outcome) of each destination."""
        out: list[tuple[str, str, object]] = []
        if self.cfg.command:
            out.append(("command", "notify.command", self._run))
        for i, url in enumerate(self.cfg.urls):
            out.append((f"url:{_id(url)}", f"notify.urls[{i}] {mask_url(url)}",
                        lambda note, url=url: self._post(url, note)))
        return out

    def deliver(self) -> None:
        while self.outbox and not self._stop.is_set():
            note = self.outbox[0]
            done = self.delivered.setdefault(note["id"], [])
            targets = self.targets() or [("none", None, lambda n: {
                "status": "skipped", "error": "neither notify.command nor notify.urls is set"})]
            for key, label, send in targets:
                if key in done:
                    continue
                if self._stop.is_set():
                    return                       # the rest on the next pass, or after a restart
                outcome = send(note)
                done.append(key)
                self._save()
                with EventWriter(self.log_path) as log:
                    log.write("notify", id=note["id"], kind=note["event"], run=note.get("run"),
                              target=label, **outcome)
            self.outbox.pop(0)
            self.sent.append(note["id"])
            self.delivered.pop(note["id"], None)
            self._save()

    def _run(self, note: dict) -> dict:
        cmd = self.cfg.command
        try:
            r = subprocess.run(list(cmd), input=json.dumps(note).encode(), capture_output=True,
                               timeout=self.cfg.timeout_s, cwd=self.layout.root
                               if self.layout.root.exists() else None)
        except subprocess.TimeoutExpired:
            return {"status": "failed", "error": f"timed out after {self.cfg.timeout_s:g}s"}
        except OSError as e:
            return {"status": "failed", "error": f"{cmd[0]}: {e.strerror or e}"}
        if r.returncode != 0:
            tail = r.stderr.decode(errors="replace").strip()[-500:]
            return {"status": "failed", "error": f"exit code {r.returncode}: {tail}"}
        return {"status": "sent"}

    def _post(self, url: str, note: dict) -> dict:
        from console.bridges.notify_urls import send     # Apprise: only when there is news
        try:
            return send(url, note, self.cfg.timeout_s)
        except Exception as e:                  # e.g. apprise missing: said, not retried
            return {"status": "failed", "error": scrub(f"{type(e).__name__}: {e}", url)}

    # -- the thread ----------------------------------------------------------------------
    def tick(self) -> None:
        self.scan()
        self.deliver()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="foldwatch-notify", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as e:                 # notifications must never end the console
                with EventWriter(self.log_path) as log:
                    log.write("notify_error", error=f"{type(e).__name__}: {e}")
            self._stop.wait(self.interval_s)

    def close(self, timeout: float = 5.0) -> None:
        """One last pass (a failure seen just before quitting), then stop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._stop.clear()
        try:
            self.tick()                  # e.g. headless quits right after the last run ended
        except Exception:
            pass
        self._stop.set()


def _dice(path: Path) -> float | None:
    try:
        d = json.loads(path.read_text())["foreground_mean"]["Dice"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return d if isinstance(d, (int, float)) else None
