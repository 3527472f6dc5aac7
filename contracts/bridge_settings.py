"""The experiment's `export:`, `notify:` and `metrics:` sections: what the bridges feed
(docs/pictures.md, docs/metrics.md).

pydantic only: the notification URLs are checked for their shape here and masked in every
message; whether Apprise can use them is checked before anything starts by
console/bridges/notify_urls.py (Apprise is too slow to import on every load).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_serializer, field_validator
from pydantic_core import PydanticCustomError

from .redact import mask_url
from .strict import Strict


class Wandb(Strict):
    """export.wandb as a mapping; `true` means all defaults (docs/pictures.md)."""
    mode: Literal["online", "offline"] = "offline"   # online: `wandb login` done, W&B reachable
    project: Annotated[str, Field(min_length=1)] | None = None   # default: the experiment name


class Export(Strict):
    """Optional bridges fed from the metric log; off by default (extras `tensorboard`, `wandb`).
    With trainer: nnunetv2, W&B is nnU-Net's own logger (docs/trainers.md)."""
    tensorboard: bool = False
    wandb: Wandb | None = None

    @field_validator("wandb", mode="before")
    @classmethod
    def _switch(cls, v):
        if v is True:
            return Wandb()
        if v is False or v is None:
            return None
        if not isinstance(v, (dict, Wandb)):
            raise ValueError("expected true, false or a mapping such as {mode: offline, "
                             "project: NAME}")
        return v

    @field_serializer("wandb")
    def _as_written(self, v):
        return False if v is None else v.model_dump()


def _notify_url(v):
    """One notify.urls entry: Apprise's SERVICE://... shape (the service's own check, which
    needs Apprise, runs before anything starts: console/bridges/notify_urls.py)."""
    if not isinstance(v, str):
        raise PydanticCustomError("notify_url", "expected a URL such as ntfy://ntfy.sh/TOPIC, "
                                  "got {kind}", {"kind": type(v).__name__})
    if not SERVICE_URL.match(v.strip()):
        raise PydanticCustomError(
            "notify_url", "{url} is not a notification URL: expected SERVICE://..., e.g. "
            "ntfy://ntfy.sh/TOPIC or tgram://BOT_TOKEN/CHAT_ID (Apprise's URL syntax; see "
            "README, Notifications)", {"url": repr(mask_url(v))})
    return v.strip()


SERVICE_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$")
NotifyUrl = Annotated[str, BeforeValidator(_notify_url)]


class Notify(Strict):
    """Where notifications go (docs/pictures.md): a user command run with each notification
    as JSON on stdin (an argument list, no shell) and/or Apprise URLs (chat, e-mail, push)."""
    command: list[Annotated[str, Field(min_length=1)]] | None = None
    urls: list[NotifyUrl] = []
    timeout_s: Annotated[float, Field(gt=0)] = 30
    disk_free_gb: Annotated[float, Field(ge=0)] = 5.0     # below this: a disk_low notification

    @field_validator("command")
    @classmethod
    def _not_empty(cls, v):
        if v is not None and not v:
            raise ValueError("expected a non-empty argument list, e.g. [curl, -d, '@-', URL]")
        return v

    @field_validator("urls", mode="before")
    @classmethod
    def _a_list(cls, v):
        # said without echoing the value: it may hold a token
        if isinstance(v, str):                          # `urls: ntfy://...`
            raise PydanticCustomError("notify_url", "expected a list of URLs: urls: [{url}]",
                                      {"url": repr(mask_url(v))})
        if v is not None and not isinstance(v, (list, tuple)):
            raise PydanticCustomError("notify_url", "expected a list of URLs, e.g. urls: "
                                      "[\"ntfy://ntfy.sh/TOPIC\"], got {kind}",
                                      {"kind": type(v).__name__})
        return [] if v is None else v


LISTEN = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:\[\]]+)):(?P<port>[0-9]{1,5})$")


def split_listen(value: str) -> tuple[str, int]:
    """'HOST:PORT' or '[IPv6]:PORT' -> (host, port); ValueError saying what was expected."""
    m = LISTEN.match(value.strip()) if isinstance(value, str) else None
    if m is None:
        raise ValueError("expected HOST:PORT, e.g. \"127.0.0.1:9464\" (an IPv6 address in "
                         "brackets: \"[::1]:9464\")")
    port = int(m["port"])
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range: expected 1-65535, e.g. "
                         "\"127.0.0.1:9464\"")
    return m["v6"] or m["host"], port


class Metrics(Strict):
    """Prometheus metrics served by the supervisor (docs/metrics.md); off unless `listen` is
    set. Another host than 127.0.0.1 / ::1 / localhost exposes them to that network."""
    listen: str | None = None           # "127.0.0.1:9464"

    @field_validator("listen", mode="before")
    @classmethod
    def _host_port(cls, v):
        if v is None:
            return v
        if not isinstance(v, str):      # `listen: 9464`: YAML made it a number
            raise ValueError(f"expected a quoted \"HOST:PORT\" such as \"127.0.0.1:{v}\"")
        split_listen(v)
        return v.strip()

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) to listen on, or None when metrics are off."""
        return None if self.listen is None else split_listen(self.listen)
