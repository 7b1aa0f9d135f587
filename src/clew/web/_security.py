"""Safe defaults: an access token when bound beyond localhost, CSRF tokens on actions, same-origin posts."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode, urlsplit

from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from clew.errors import ConfigError


class CsrfError(ConfigError):
    """A state-changing request without the CSRF token of the page that sent it."""


TOKEN_COOKIE = "clew_token"  # noqa: S105 - a cookie name, not a secret
CSRF_COOKIE = "clew_csrf"
CSRF_HEADER = "x-csrf-token"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]", "testserver")


def new_token() -> str:
    """A random access token for the inspector."""
    return secrets.token_urlsafe(24)


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and hmac.compare_digest(a.encode(), b.encode())


def csrf_token(request: Request) -> str:
    """This browser's CSRF token (set as a cookie on the way out if new)."""
    tok = getattr(request.state, "csrf", None)
    if not isinstance(tok, str):
        tok = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        request.state.csrf = tok
    return tok


def csrf_ok(request: Request, submitted: str | None) -> bool:
    """A form's or header's CSRF token matches the cookie; a bearer token needs none (no browser sends it)."""
    if getattr(request.state, "bearer", False):
        return True
    return _same(request.cookies.get(CSRF_COOKIE), submitted or request.headers.get(CSRF_HEADER))


def _hostname(header: str) -> str:
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0]


class Guard(BaseHTTPMiddleware):
    """Checks the access token and the Host and Origin of each request; hands out the CSRF cookie."""

    def __init__(self, app: object, *, token: str | None) -> None:
        super().__init__(app)  # type: ignore[arg-type]  # any ASGI app
        self.token = token

    async def dispatch(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        host = _hostname(request.headers.get("host") or "")
        if self.token is None and host not in LOCAL_HOSTS:
            # Without a token the inspector answers only to localhost names (no DNS rebinding).
            return PlainTextResponse(f"host {host!r} refused: without a token clew ui serves localhost only", 403)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("origin")
            if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
                return PlainTextResponse("cross-origin request refused", 403)
        request.state.bearer = False
        if self.token is not None:
            auth = request.headers.get("authorization", "")
            if auth.lower().startswith("bearer ") and _same(auth[7:].strip(), self.token):
                request.state.bearer = True
            elif _same(request.query_params.get("token"), self.token):
                rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                target = request.url.path + ("?" + urlencode(rest) if rest else "")
                resp: Response = RedirectResponse(target, 303)
                resp.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
                return resp
            elif not _same(request.cookies.get(TOKEN_COOKIE), self.token):
                return PlainTextResponse(
                    "clew ui needs its access token: open the URL it printed (…/?token=…) "
                    "or send Authorization: Bearer <token>",
                    401,
                )
        resp = await call_next(request)
        if CSRF_COOKIE not in request.cookies:
            resp.set_cookie(CSRF_COOKIE, csrf_token(request), httponly=True, samesite="strict")
        return resp
