"""What the routes share: the store, the actions, the page renderer and error statuses."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from clew import errors
from clew.store import Store
from clew.web._actions import ActionRefused, Actions
from clew.web._security import CsrfError, csrf_token

LIST_PAGE = 50  # list items shown at once in a state tree
FOLD = 200  # strings longer than this are folded
MAX_STRING = 100_000  # and longer than this, cut (the API gives the whole value)

HERE = Path(__file__).parent

STATUS: list[tuple[type[BaseException], int]] = [
    (ActionRefused, 403),
    (CsrfError, 403),
    (errors.NotFoundError, 404),
    (errors.ConflictError, 409),
    (errors.LeaseError, 409),
    (errors.RunStatusError, 409),
    (errors.IntegrityError, 422),
    (errors.ConfigError, 400),
    (errors.InvalidStateError, 400),
    (errors.StoreUnavailableError, 503),
    (errors.ClewError, 500),
    (ValueError, 400),  # an update the state type rejects (Pydantic's ValidationError is one)
]


def status_of(exc: BaseException) -> int:
    return next((code for t, code in STATUS if isinstance(exc, t)), 500)


@dataclass(frozen=True, slots=True)
class Inspector:
    """What the routes share: the store, the actions and the page renderer."""

    store: Store
    actions: Actions
    templates: jinja2.Environment

    def render(self, request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        html = self.templates.get_template(name).render(
            request=request, csrf=csrf_token(request), info=self.actions.info(), **ctx
        )
        return HTMLResponse(html, status)


def inspector(request: Request) -> Inspector:
    insp = request.app.state.inspector
    assert isinstance(insp, Inspector)
    return insp


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every user string is escaped; nothing is marked safe
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["q"] = lambda s: quote(str(s), safe="")
    env.filters["when"] = _when
    env.filters["short"] = lambda s, n=13: (str(s)[:n] + "…") if s and len(str(s)) > n else (s or "")
    env.filters["js"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str)
    env.globals["LIST_PAGE"] = LIST_PAGE
    env.globals["FOLD"] = FOLD
    env.globals["MAX_STRING"] = MAX_STRING
    return env
