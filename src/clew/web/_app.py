"""``create_app``: the inspector as an ASGI application over one store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clew._extras import require

require("starlette", "ui", "clew ui")
require("jinja2", "ui", "clew ui")
require("python_multipart", "ui", "clew ui")  # the forms of the actions

from starlette.applications import Starlette  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402
from starlette.routing import Mount  # noqa: E402
from starlette.staticfiles import StaticFiles  # noqa: E402

from clew import errors  # noqa: E402
from clew.runtime import Agent  # noqa: E402
from clew.store import Store  # noqa: E402
from clew.web import _api, _pages  # noqa: E402
from clew.web._actions import Actions  # noqa: E402
from clew.web._inspector import HERE, Inspector, status_of, templates  # noqa: E402
from clew.web._security import Guard  # noqa: E402


def create_app(
    store: Store,
    *,
    read_only: bool = False,
    token: str | None = None,
    agent: Agent[Any] | Callable[[Store], Agent[Any]] | None = None,
) -> Starlette:
    """The inspector over ``store`` as an ASGI app (serve it with uvicorn).

    Args:
        store: the store to inspect (``clew.open(url)``).
        read_only: turn every action off.
        token: require this access token (``?token=``, a cookie, or ``Authorization: Bearer``).
        agent: the agent whose steps resume and fork runs: an :class:`~clew.Agent`, or a
            function that makes one from ``store``. Without it those actions are off.
    """
    if agent is not None and not isinstance(agent, Agent):
        agent = agent(store)
    insp = Inspector(store, Actions(agent, read_only), templates())

    async def on_error(request: Request, exc: Exception) -> Response:
        status = status_of(exc)
        body = {"error": {"type": type(exc).__name__, "message": str(exc), "status": status}}
        if request.url.path.startswith("/api/"):
            return JSONResponse(body, status)
        return insp.render(request, "error.html", status, error=body["error"])

    app = Starlette(
        routes=[
            *_api.routes(),
            *_pages.routes(),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=[Middleware(Guard, token=token)],
        exception_handlers={errors.ClewError: on_error, ValueError: on_error},
    )
    app.state.inspector = insp
    return app
