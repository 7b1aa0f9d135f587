"""The HTML pages and the form actions behind them; each page renders what the /api/v1 body holds."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from clew.audit import to_jsonable
from clew.errors import ConfigError
from clew.store import RUN_STATUSES
from clew.web import _model
from clew.web._actions import need_actor, parse_json
from clew.web._api import runs_query
from clew.web._graph import layout
from clew.web._inspector import inspector
from clew.web._security import CsrfError, csrf_ok
from clew.web._values import at


def runs_page(request: Request) -> Response:
    insp = inspector(request)
    query = runs_query(request)
    body = _model.list_runs(insp.store, **query)
    p = request.query_params
    keep = [(k, v) for k, v in p.multi_items() if k != "cursor" and v]
    return insp.render(
        request,
        "runs.html",
        body=body,
        filters={k: p.get(k, "") for k in ("agent", "status", "branch_status", "since", "until", "q")},
        labels=p.getlist("label"),
        statuses=RUN_STATUSES,
        next_url=("/?" + urlencode([*keep, ("cursor", body["next_cursor"])])) if body["next_cursor"] else None,
        first_url=("/?" + urlencode(keep)) if p.get("cursor") else None,
    )


def run_page(request: Request) -> Response:
    insp = inspector(request)
    body = _model.run_detail(insp.store, request.path_params["run_id"])
    graph = layout(body["checkpoints"], body["branches"])
    return insp.render(request, "run.html", body=body, graph=graph)


def checkpoint_page(request: Request) -> Response:
    insp = inspector(request)
    p = request.query_params
    path, raw = p.get("path", ""), p.get("offset") or "0"
    offset = int(raw) if raw.isdigit() else 0
    fragment = bool(request.headers.get("x-fragment"))  # the next items of a long list, for the page's script
    if fragment:
        rec = _model.get_checkpoint(insp.store, request.path_params["checkpoint_id"], p.get("run"))
        body: dict[str, Any] = {"state": to_jsonable(insp.store.load_state(rec.run_id, rec.checkpoint_id))}
        c = _model.ckpt_summary(rec)
    else:
        body = _model.checkpoint_detail(insp.store, request.path_params["checkpoint_id"], p.get("run"))
        c = body["checkpoint"]
    against = p.get("against") or None
    ids = f"{quote(c['checkpoint_id'], safe='')}?run={quote(c['run_id'], safe='')}"
    ctx: dict[str, Any] = {
        "body": body,
        "c": c,
        "path": path,
        "offset": offset,
        "focus": at(body["state"], path) if path else None,
        "page_url": f"/checkpoints/{ids}",
        "value_url": f"/api/v1/checkpoints/{ids.replace('?', '/value?', 1)}",
    }
    if fragment:
        return insp.render(request, "_state.html", **ctx)
    return insp.render(
        request,
        "checkpoint.html",
        **ctx,
        other=_model.diff(insp.store, c["checkpoint_id"], against, c["run_id"]) if against else None,
        against=against,
        all_checkpoints=_model.run_detail(insp.store, c["run_id"])["checkpoints"],
    )


def compare_page(request: Request) -> Response:
    insp = inspector(request)
    p = request.query_params
    a_run = p.get("run") or ""
    b_run = p.get("b_run") or a_run
    body = None
    if a_run and b_run and p.get("a") and p.get("b"):
        body = _model.compare(insp.store, a_run, p["a"], b_run, p["b"])
    branches = [b["name"] for b in _model.run_detail(insp.store, a_run)["branches"]] if a_run else []
    return insp.render(
        request, "compare.html", body=body, a_run=a_run, b_run=b_run, a=p.get("a", ""), b=p.get("b", ""), names=branches
    )


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    data = {k: v for k, v in form.items() if isinstance(v, str)}
    if not csrf_ok(request, data.get("csrf")):
        raise CsrfError("missing or stale CSRF token: reload the page and submit again")
    return data


def _back(run_id: str, note: str) -> Response:
    return RedirectResponse(f"/runs/{quote(run_id, safe='')}?{urlencode({'done': note})}", 303)


async def resume_action(request: Request) -> Response:
    f = await _form(request)
    answer = parse_json(f.get("answer"), "the answer")
    result = await run_in_threadpool(
        inspector(request).actions.resume,
        f.get("run_id", ""),
        branch=f.get("branch") or None,
        answer=answer,
        actor=need_actor(f.get("actor")),
    )
    return _back(result["run_id"], f"resumed {result['branch']}: now {result['status']}")


async def fork_action(request: Request) -> Response:
    f = await _form(request)
    update = parse_json(f.get("update"), "the state edit", obj=True)
    result = await run_in_threadpool(
        inspector(request).actions.fork,
        f.get("checkpoint_id", ""),
        run_id=f.get("run_id", ""),
        branch=f.get("branch", "").strip(),
        update=None if not isinstance(update, dict) else update,
        actor=need_actor(f.get("actor")),
        reason=f.get("reason") or None,
        run=f.get("run") == "on",
    )
    return _back(result["run_id"], f"forked {result['branch']}: now {result['status']}")


async def cancel_action(request: Request) -> Response:
    f = await _form(request)
    if not f.get("reason"):
        raise ConfigError("say why: the reason is recorded with the cancellation")
    result = await run_in_threadpool(
        inspector(request).actions.cancel,
        f.get("run_id", ""),
        branch=f.get("branch") or None,
        actor=need_actor(f.get("actor")),
        reason=f.get("reason"),
    )
    return _back(result["run_id"], f"cancelled {result['branch']}")


def routes() -> list[BaseRoute]:
    return [
        Route("/", runs_page),
        Route("/compare", compare_page),
        Route("/checkpoints/{checkpoint_id:path}", checkpoint_page),
        Route("/runs/{run_id:path}", run_page),
        Route("/actions/resume", resume_action, methods=["POST"]),
        Route("/actions/fork", fork_action, methods=["POST"]),
        Route("/actions/cancel", cancel_action, methods=["POST"]),
    ]
