"""``clew ui``: the web inspector (needs the ui extra)."""

from __future__ import annotations

import contextlib
from typing import Annotated
from urllib.parse import quote

import typer

from clew.cli._common import DbOpt, StoreOpt, open_store, out


def ui(
    store: StoreOpt = None,
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="Address to bind; beyond 127.0.0.1 a token is required.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    token: Annotated[
        str | None, typer.Option(envvar="CLEW_UI_TOKEN", help="Access token (made and printed if needed).")
    ] = None,
    agent: Annotated[
        str | None,
        typer.Option(
            metavar="MODULE:AGENT",
            help="The agent whose steps resume and fork runs: an Agent, or a function making one "
            "(from the store, if it takes one). Also path/to/file.py:NAME. Without it, actions are off.",
        ),
    ] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="Turn every action off.")] = False,
    run_id: Annotated[str | None, typer.Option("--run", help="Print the address of this run's page.")] = None,
) -> None:
    """Serve the web inspector: runs, checkpoint trees, diffs, comparisons, and actions with --agent."""
    from clew.web import load_agent, serve

    with contextlib.ExitStack() as stack:
        reads = stack.enter_context(open_store(store, db, read_only=True))  # the pages never write
        # Actions write through the agent, on a store of their own (or the agent's).
        found = load_agent(agent, stack.enter_context(open_store(store, db))) if agent and not read_only else None
        serve(
            reads,
            host=host,
            port=port,
            token=token,
            read_only=read_only,
            agent=found,
            open_path=f"/runs/{quote(run_id, safe='')}" if run_id else "/",
            echo=out.print,
        )
