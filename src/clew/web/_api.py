"""The JSON API under /api/v1 (described by openapi.json beside this module)."""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from clew.audit import to_jsonable
from clew.errors import ConfigError
from clew.web import _model
from clew.web._actions import NO_ANSWER, need_actor
from clew.web._inspector import HERE, inspector
from clew.web._security import CsrfError, csrf_ok
from clew.web._values import at

PREFIX = "/api/v1"


def _int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a whole number") from None


def runs_query(request: Request) -> dict[str, Any]:
    """The runs filters from a query string (shared with the runs page)."""
    p = request.query_params
    return {
        "agent": p.get("agent") or None,
        "status": p.get("status") or None,
        "branch_status": p.get("branch_status") or None,
        "labels": _model.parse_labels(p.getlist("label")),
        "since": _model.parse_time("since", p.get("since")),
        "until": _model.parse_time("until", p.get("until")),
        "q": (p.get("q") or "").strip() or None,
        "limit": _int(request, "limit", 50),
        "cursor": p.get("cursor") or None,
    }


def runs(request: Request) -> Response:
    return JSONResponse(_model.list_runs(inspector(request).store, **runs_query(request)))


def run(request: Request) -> Response:
    return JSONResponse(_model.run_detail(inspector(request).store, request.path_params["run_id"]))


def checkpoint(request: Request) -> Response:
    body = _model.checkpoint_detail(
        inspector(request).store, request.path_params["checkpoint_id"], request.query_params.get("run")
    )
    return JSONResponse(body)


def value(request: Request) -> Response:
    insp = inspector(request)
    c = _model.get_checkpoint(insp.store, request.path_params["checkpoint_id"], request.query_params.get("run"))
    state = to_jsonable(insp.store.load_state(c.run_id, c.checkpoint_id))
    pointer = request.query_params.get("path", "")
    v = at(state, pointer)
    offset, limit = _int(request, "offset", 0), _int(request, "limit", 0)
    total = len(v) if isinstance(v, list | str) else None
    if isinstance(v, list) and limit > 0:
        v = v[offset : offset + limit]
    return JSONResponse({"path": pointer, "total": total, "offset": offset, "value": v})


def diff(request: Request) -> Response:
    body = _model.diff(
        inspector(request).store,
        request.path_params["checkpoint_id"],
        request.query_params.get("against") or None,
        request.query_params.get("run"),
    )
    return JSONResponse(body)


def compare(request: Request) -> Response:
    p = request.query_params
    a_run = p.get("run")
    b_run = p.get("b_run") or a_run
    if not a_run or not b_run or not p.get("a") or not p.get("b"):
        raise ConfigError("compare needs run, a and b (the branches to compare), and b_run to compare two runs")
    return JSONResponse(_model.compare(inspector(request).store, a_run, p["a"], b_run, p["b"]))


def verify(request: Request) -> Response:
    report = inspector(request).store.verify(request.path_params["run_id"])
    return JSONResponse(
        {
            "run_id": report.run_id,
            "ok": report.ok,
            "checkpoints": report.checkpoints,
            "blobs": report.blobs,
            "journal_entries": report.journal_entries,
            "problems": [{"kind": p.kind, "id": p.ident, "message": p.message} for p in report.problems],
        }
    )


def info(request: Request) -> Response:
    return JSONResponse(inspector(request).actions.info())


def openapi(request: Request) -> Response:
    return Response((HERE / "openapi.json").read_bytes(), media_type="application/json")


async def _body(request: Request) -> dict[str, Any]:
    if not csrf_ok(request, None):
        raise CsrfError("missing or wrong CSRF token: send the clew_csrf cookie's value in X-CSRF-Token")
    try:
        body = json.loads(await request.body() or b"{}")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"the request body is not valid JSON: {exc.msg}") from None
    if not isinstance(body, dict):
        raise ConfigError("the request body must be a JSON object")
    return body


async def resume(request: Request) -> Response:
    b = await _body(request)
    acts = inspector(request).actions
    result = await run_in_threadpool(
        acts.resume,
        str(b.get("run_id") or ""),
        branch=b.get("branch"),
        answer=b.get("answer", NO_ANSWER),
        actor=need_actor(b.get("actor")),
    )
    return JSONResponse(result)


async def fork(request: Request) -> Response:
    b = await _body(request)
    update = b.get("update")
    if update is not None and not isinstance(update, dict):
        raise ConfigError("update must be a JSON object of field names to new values")
    acts = inspector(request).actions
    result = await run_in_threadpool(
        acts.fork,
        str(b.get("checkpoint_id") or ""),
        run_id=str(b.get("run_id") or ""),
        branch=str(b.get("branch") or ""),
        update=update,
        actor=need_actor(b.get("actor")),
        reason=b.get("reason"),
        run=bool(b.get("run", True)),
    )
    return JSONResponse(result)


async def cancel(request: Request) -> Response:
    b = await _body(request)
    acts = inspector(request).actions
    result = await run_in_threadpool(
        acts.cancel,
        str(b.get("run_id") or ""),
        branch=b.get("branch"),
        actor=need_actor(b.get("actor")),
        reason=b.get("reason"),
    )
    return JSONResponse(result)


def routes() -> list[BaseRoute]:
    return [
        Route(f"{PREFIX}/openapi.json", openapi),
        Route(f"{PREFIX}/info", info),
        Route(f"{PREFIX}/runs", runs),
        Route(f"{PREFIX}/compare", compare),
        Route(f"{PREFIX}/checkpoints/{{checkpoint_id:path}}/diff", diff),
        Route(f"{PREFIX}/checkpoints/{{checkpoint_id:path}}/value", value),
        Route(f"{PREFIX}/checkpoints/{{checkpoint_id:path}}", checkpoint),
        Route(f"{PREFIX}/verify/{{run_id:path}}", verify),
        Route(f"{PREFIX}/runs/{{run_id:path}}", run),
        Route(f"{PREFIX}/actions/resume", resume, methods=["POST"]),
        Route(f"{PREFIX}/actions/fork", fork, methods=["POST"]),
        Route(f"{PREFIX}/actions/cancel", cancel, methods=["POST"]),
    ]
