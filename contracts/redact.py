"""Secrets out of what foldwatch prints: notification URLs with their tokens masked.

Apprise URLs carry the credentials in the URL itself (`tgram://BOT_TOKEN/CHAT`,
`mailto://user:PASSWORD@host`), and an error message that names the URL must not leak them
into a terminal, a log or a chat. Standard library only: the experiment loader masks with it
before Apprise is even imported, and also URLs that Apprise cannot parse.
"""

from __future__ import annotations

import re

SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.S)
# a query key whose value is a credential whatever it looks like
SECRET_KEYS = re.compile(r"pass|pwd|token|key|secret|auth|sig|apikey|webhook", re.I)
HOSTNAME = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$|^\d{1,3}(\.\d{1,3}){3}$")
WORDS = re.compile(r"^#?[a-z]+([-_.][a-z]+)*$")     # a channel or topic name, not a key
SEPARATORS = re.compile(r"([/:@?&=#,;+\s]+)")


def _looks_secret(token: str) -> bool:
    """Tokens, ids and keys: long, or mixed with digits; not a host name or a plain word."""
    if HOSTNAME.match(token) or re.fullmatch(r"\d{1,5}", token) or WORDS.match(token):
        return False                          # ntfy.sh, 127.0.0.1, a port, #general
    return len(token) >= 12 or (len(token) >= 6 and any(c.isdigit() for c in token))


def secrets_of(url: str) -> dict[str, str]:
    """What `mask_url` hides in `url`, each with what it shows instead (`1...9`, `****`)."""
    m = SCHEME.match(url.strip())
    rest = m.group(2) if m else url.strip()
    found: dict[str, str] = {}
    for token in SEPARATORS.split(rest):
        if token and not SEPARATORS.fullmatch(token) and _looks_secret(token):
            found[token] = f"{token[0]}...{token[-1]}"     # Apprise's own way of masking
    # passwords and credential parameters are hidden whole, whatever they look like; with
    # their delimiters, so that a short one does not mask the same letters elsewhere
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    userinfo, at, _ = authority.rpartition("@")
    if at and ":" in userinfo:
        found[f":{userinfo.split(':', 1)[1]}@"] = ":****@"      # user:PASSWORD@host
    for pair in rest.partition("?")[2].split("&"):
        key, eq, value = pair.partition("=")
        if eq and value and SECRET_KEYS.search(key):
            found[f"{key}={value}"] = f"{key}=****"
    found.pop("", None)
    return dict(sorted(found.items(), key=lambda kv: len(kv[0]), reverse=True))


def mask_url(url: str) -> str:
    """`url` with passwords, tokens and keys masked; scheme, hosts and names kept."""
    return scrub(url.strip(), url)


def scrub(text: str, url: str) -> str:
    """`text` (e.g. a library's error message) with every secret of `url` masked."""
    for secret, shown in secrets_of(url).items():
        text = text.replace(secret, shown)
    return text
