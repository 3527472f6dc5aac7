"""The token in front of every route of `foldwatch serve`: the page, its assets, the websocket.

The URL that `foldwatch serve` prints carries the token once (`/?token=...`). The gate answers
it with an HttpOnly cookie and a redirect to the same address without the token (so it leaves
the address bar, the history and screenshots); the page's assets and websocket then carry the
cookie. Any request without the right token or cookie gets 403, as does a websocket opened
from another site's page.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from aiohttp import web

COOKIE_PREFIX = "foldwatch-"
REFUSED = ("403 Forbidden: foldwatch serve needs its token. Open the whole URL that "
           "`foldwatch serve` printed (it ends in ?token=...).\n")


class TokenGate:
    """A random token, the cookie that stands for it, and the middleware that checks both."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token or secrets.token_urlsafe(32)
        # Cookies ignore the port: a name per server keeps two servers on one host apart.
        self.cookie = COOKIE_PREFIX + secrets.token_hex(4)
        self.middleware = self._middleware()

    def accepts(self, given: str | None) -> bool:
        """Constant-time comparison, so response times say nothing about the token."""
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def _middleware(self):
        @web.middleware
        async def gate(request: web.Request, handler):
            if _is_websocket(request) and not _same_origin(request):
                return _refused("a websocket from another site's page")
            given = request.query.get("token")
            if given is not None:
                if not self.accepts(given):
                    return _refused("wrong token")
                if request.method == "GET" and request.path == "/" and not _is_websocket(request):
                    return self._admit(request)
                return await handler(request)
            if self.accepts(request.cookies.get(self.cookie)):
                return await handler(request)
            return _refused("no token")
        return gate

    def _admit(self, request: web.Request) -> web.Response:
        """The cookie, and the same page again without the token in its address."""
        query = request.query.copy()
        del query["token"]
        target = str(request.rel_url.with_query(query))
        resp = web.Response(status=303, headers={"Location": target, "Cache-Control": "no-store"})
        # Lax, not Strict: a link clicked in a chat or mail still logs in; other sites' pages
        # still cannot send it with their requests (frames, fetches, websockets).
        resp.set_cookie(self.cookie, self.token, httponly=True, samesite="Lax", path="/")
        return resp


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def _same_origin(request: web.Request) -> bool:
    """Browsers send Origin with a websocket; other clients may not (the token still holds)."""
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


def _refused(why: str) -> web.Response:
    return web.Response(status=403, text=REFUSED, headers={"Cache-Control": "no-store",
                                                           "X-Foldwatch-Refused": why})
