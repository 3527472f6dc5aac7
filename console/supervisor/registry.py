"""Which experiments are supervised on this host, for `foldwatch ls`.

Each supervisor leaves one small file in `$XDG_STATE_HOME/foldwatch/supervisors/` (default
`~/.local/state/foldwatch/supervisors/`): the experiment, its file and its supervisor's
folder. What is alive, and how its runs are doing, is read from that folder when listed.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path

from contracts.jsonio import atomic_write_json
from contracts.layout import SupervisorHome


def folder() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(base) / "foldwatch" / "supervisors"


def _entry(home: SupervisorHome) -> Path:
    digest = hashlib.sha1(str(home.dir.resolve()).encode()).hexdigest()[:16]
    return folder() / f"{socket.gethostname()}-{digest}.json"


def register(home: SupervisorHome, exp) -> None:
    """Note this supervisor (best effort: a read-only home only loses it from `ls`)."""
    try:
        atomic_write_json(_entry(home), {"experiment": exp.experiment, "file": str(exp.source),
                                         "home": str(home.dir.resolve()),
                                         "host": socket.gethostname(), "t": time.time()})
    except OSError:
        pass


def entries() -> list[dict]:
    """This host's entries whose supervisor folder still exists, newest first."""
    out = []
    host = socket.gethostname()
    try:
        files = sorted(folder().glob("*.json"))
    except OSError:
        return []
    for f in files:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or data.get("host") != host:
            continue
        if not Path(str(data.get("home"))).is_dir():
            try:
                f.unlink()               # the results folder is gone: forget it
            except OSError:
                pass
            continue
        out.append(data)
    return sorted(out, key=lambda d: -float(d.get("t") or 0))
