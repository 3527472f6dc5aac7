"""Telling the experiment's supervisors about an import (the supervisor owns state.json; an
import never writes it behind its back).

Before the folds are put in place, a supervisor that has one of them queued is asked to take it
out of the queue (`stop`), so it does not start training a fold that is arriving; afterwards
every live supervisor of the experiment (the main one, or each team member's) gets the
`imported` request, which re-reads those fold folders and marks them completed with their
origin. With none alive, the next `foldwatch up` finds them at start-up.
"""

from __future__ import annotations

from contracts.errors import UserError
from contracts.experiment import Experiment
from contracts.layout import SupervisorHome
from contracts.runlock import probe

from console.protocol import presence as pr
from console.protocol.client import SupervisorClient
from console.protocol.snapshots import SnapshotReader

QUEUED = ("queued", "backoff", "waiting")
ACTIVE = ("starting", "running", "stalled")


def live_homes(exp: Experiment) -> list[SupervisorHome]:
    lay = exp.layout
    homes = [lay.supervisor_home()]
    homes += [SupervisorHome(p) for p in sorted((lay.console_dir / "consoles").glob("*"))
              if p.is_dir()]
    return [h for h in homes if pr.presence(h).alive]


def states(home: SupervisorHome) -> dict[str, str]:
    snap = SnapshotReader(home.snapshot).read().snapshot
    return {r.key: r.state for r in snap.runs} if snap is not None else {}


def _client(exp: Experiment, home: SupervisorHome) -> SupervisorClient:
    return SupervisorClient(exp.source, home, kind="import", restart=False)


def active_here(exp: Experiment, keys: list[str]) -> dict[str, str]:
    """key -> 'running under the supervisor pid N' for folds a live supervisor runs."""
    out = {}
    for home in live_homes(exp):
        pid = pr.presence(home).pid
        for key, state in states(home).items():
            if key in keys and state in ACTIVE:
                out[key] = f"{state} under the supervisor (pid {pid})"
    return out


def _owns(exp: Experiment, home: SupervisorHome, key: str) -> bool:
    """The main supervisor runs every fold; a team member only those it claimed."""
    if home.dir.parent.name != "consoles":
        return True
    holder = probe(exp.layout.claim(key)) or {}
    return holder.get("console") == home.dir.name


def hold_queued(exp: Experiment, keys: list[str]) -> list[str]:
    """Ask live supervisors to take the arriving folds out of their queues; what they said."""
    said = []
    for home in live_homes(exp):
        for key, state in states(home).items():
            if key in keys and state in QUEUED and _owns(exp, home, key):
                try:
                    said.append(str(_client(exp, home).request("stop", {"key": key,
                                                                         "final": True})))
                except UserError as e:
                    said.append(f"{key}: {e}")
    return said


def announce(exp: Experiment, keys: list[str]) -> list[str]:
    """The `imported` request to every live supervisor; lines for the user."""
    homes = live_homes(exp)
    if not homes:
        return ["no supervisor is running: the next `foldwatch up` picks the imported folds up"]
    out = []
    for home in homes:
        try:
            out.append(str(_client(exp, home).request("imported", {"keys": keys})))
        except UserError as e:
            out.append(f"the supervisor (pid {pr.presence(home).pid}) did not take the import: "
                       f"{e}. `foldwatch down` then `foldwatch up` picks the folds up")
    return out
