"""notify.urls through Apprise: each URL checked before anything starts, each message sent.

Apprise speaks to 100+ services (ntfy, Telegram, Slack, e-mail, Matrix, Discord, ...) from
one URL syntax. It is imported here only, by the check `foldwatch up` runs after loading
the experiment and on the notifier's own thread: with its plugins it costs ~0.4 s, which
neither `foldwatch --help` nor the console's start may pay. Whatever is printed or logged
names a URL with its tokens masked (contracts.redact).
"""

from __future__ import annotations

import logging

from contracts.errors import ConfigError
from contracts.redact import mask_url, scrub

# notification event -> Apprise's notify type (the colour / icon a service shows)
TYPES = {"run_failed": "failure", "watchdog_gave_up": "failure", "disk_full": "warning",
         "disk_low": "warning"}


def _apprise():
    try:
        import apprise
    except ImportError:
        raise ConfigError("notify.urls needs the apprise package, a dependency of foldwatch: "
                          "reinstall foldwatch (pip install -e .) or pip install "
                          "'apprise>=2.2'") from None
    return apprise


def _load(apprise, url: str):
    """Apprise's plugin for `url`, or None and Apprise's own reason (secrets masked)."""
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as log:
        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    reason = "; ".join(line.strip() for line in log.getvalue().splitlines() if line.strip())
    return plugin, scrub(reason, url)


def check_urls(exp) -> None:
    """ConfigError naming the file, notify.urls[i] and the masked URL of every URL Apprise
    cannot use (unknown service, missing token, malformed address); sends nothing."""
    if not exp.notify.urls:
        return
    apprise = _apprise()
    problems = []
    for i, url in enumerate(exp.notify.urls):
        plugin, reason = _load(apprise, url)
        if plugin is None:
            problems.append(f"  notify.urls[{i}]: Apprise cannot use {mask_url(url)!r}"
                            + (f" ({reason})" if reason else "")
                            + "; compare it with the service's page of Apprise's URL "
                              "documentation (README, Notifications)")
    if problems:
        raise ConfigError(f"{exp.source}: invalid experiment file:\n" + "\n".join(problems))


def message(note: dict) -> tuple[str, str, str]:
    """(title, body, Apprise notify type) of a notification (console/bridges/notify.py)."""
    exp, kind, run = note.get("experiment"), note.get("event"), note.get("run")
    reason = note.get("reason") or ""
    if kind == "experiment_finished":
        failed = note.get("failed") or []
        title = (f"foldwatch {exp}: finished, {len(failed)} run(s) not completed" if failed
                 else f"foldwatch {exp}: finished")
        lines = [f"not completed: {', '.join(failed)}"] if failed else []
        lines += [f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}"
                  for k, v in (note.get("summary") or {}).items() if k != "best"]
        kind_type = "warning" if failed else "success"
    else:
        title = {"run_failed": f"foldwatch {exp}: {run} failed",
                 "watchdog_gave_up": f"foldwatch {exp}: watchdog gave up on {run}",
                 "disk_full": f"foldwatch {exp}: {run} waits for disk space",
                 "disk_low": f"foldwatch {exp}: results disk nearly full"}.get(
                     kind, f"foldwatch {exp}: {kind}")
        lines = [reason] if reason else []
        kind_type = TYPES.get(kind, "info")
    lines.append(f"{note.get('host')} · {note.get('time')} · {note.get('results')}")
    return title, "\n".join(lines), kind_type


def send(url: str, note: dict, timeout_s: float) -> dict:
    """Deliver one notification to one URL: {"status": "sent"} or {"status": "failed",
    "error": the service's answer as Apprise reports it, secrets masked}."""
    apprise = _apprise()
    plugin, reason = _load(apprise, url)
    if plugin is None:
        return {"status": "failed", "error": f"Apprise cannot use this URL ({reason})"}
    # Apprise's defaults are 4 s to connect and 4 s per read; never more than notify.timeout_s
    plugin.socket_connect_timeout = min(plugin.socket_connect_timeout, timeout_s)
    plugin.socket_read_timeout = min(plugin.socket_read_timeout, timeout_s)
    title, body, kind = message(note)
    sender = apprise.Apprise()
    sender.add(plugin)
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as log:
        try:
            ok = sender.notify(body=body, title=title, notify_type=kind)
        except Exception as e:              # a plugin bug must not stop the other targets
            ok, log_extra = False, f"{type(e).__name__}: {e}"
        else:
            log_extra = ""
    if ok:
        return {"status": "sent"}
    said = "; ".join(x.strip() for x in log.getvalue().splitlines() if x.strip())
    return {"status": "failed",
            "error": scrub("; ".join(x for x in (said, log_extra) if x)
                           or "the service did not accept the notification", url)}
